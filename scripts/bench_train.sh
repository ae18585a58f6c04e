#!/usr/bin/env bash
# Train-step benchmark (issue "Training graphs"): steps/s, img/s and peak RSS
# of ortrain's train-step graph in ONNX Runtime (fp32 and fp16) against
# PyTorch (Debian's 1.13, eager, fp32) doing the same step, in one run, in
# interleaved rounds.
#
#   scripts/bench_train.sh [MODEL] [BATCH] [ITERS] [ROUNDS]   (default resnet50 16 8 2)
#
# Needs scripts/setup.sh first (ONNX Runtime, python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet50}
batch=${2:-16}
iters=${3:-8}
rounds=${4:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/ortrain" ./cmd/ortrain
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $model, batch $batch at 224, $iters timed steps after 2 warm-up steps"
imgs() { sed -n 's/.* \([0-9.]*\) img\/s.*/\1/p'; }
ratios=()
run_ours() { "$work/ortrain" bench-step --model "$model" --batch "$batch" --iters "$iters" --warmup 2 "$@"; }
run_peer() { /usr/bin/python3 scripts/bench/torch_train.py --arch "$model" --batch "$batch" --iters "$iters" --warmup 2; }
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  # Who goes first alternates, so that a drift of the machine's speed
  # during a round favours neither side over the run.
  if [ $((r % 2)) = 1 ]; then
    ours=$(run_ours); echo "$ours"
    peer=$(run_peer); echo "$peer"
  else
    peer=$(run_peer); echo "$peer"
    ours=$(run_ours); echo "$ours"
  fi
  run_ours --fp16
  ratios+=("$(echo "$ours" | imgs) $(echo "$peer" | imgs)")
done
# The machine's speed drifts between processes (memory-bound kernels take
# up to twice as long at times, independently of what runs here: likely
# other tenants of this virtual machine's host), so the comparison is made
# round by round (ours and PyTorch back to back), then summarized.
printf '%s\n' "${ratios[@]}" | awk '{ r = $1 / $2; s += r; sl += log(r); n++; printf "round %d: ortrain fp32 / PyTorch = %.3f\n", n, r
  if (n == 1 || r < lo) lo = r; if (n == 1 || r > hi) hi = r }
  END { printf "ratio over %d rounds: mean %.3f, geometric mean %.3f, range %.3f-%.3f\n", n, s / n, exp(sl / n), lo, hi }'
