#!/usr/bin/env bash
# Train-step benchmark (issue "Training graphs"): steps/s, img/s and peak RSS
# of ortrain's train-step graph in ONNX Runtime (fp32 and fp16) against
# PyTorch (Debian's 1.13, eager, fp32) doing the same step, in one run:
# in each round the two run in lockstep, one step each in turn; the fp16
# step is then measured alone.
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
run_peer() { /usr/bin/python3 scripts/bench/torch_train.py --arch "$model" --batch "$batch" --iters "$iters" --warmup 2 "$@"; }
# lockstep LEADER runs ortrain and PyTorch at the same time, taking turns
# step by step through two FIFOs (the leader, "ours" or "peer", steps
# first), so that each step of one is timed right after a step of the
# other: the machine's speed drifts by 10 to 20% from one minute to the
# next, which separate processes one after the other measured as much as
# the difference between the two (docs/benchmarks.md). The FIFOs are held
# open read-write here so that no open blocks, and the first turn is
# written before either starts.
lockstep() {
  rm -f "$work/a" "$work/b"
  mkfifo "$work/a" "$work/b"
  exec 3<>"$work/a" 4<>"$work/b"
  printf . >&3
  local first=(--turn-in "$work/a" --turn-out "$work/b") second=(--turn-in "$work/b" --turn-out "$work/a")
  if [ "$1" = ours ]; then
    run_ours "${first[@]}" >"$work/ours.out" & p1=$!
    run_peer "${second[@]}" >"$work/peer.out" & p2=$!
  else
    run_peer "${first[@]}" >"$work/peer.out" & p1=$!
    run_ours "${second[@]}" >"$work/ours.out" & p2=$!
  fi
  local rc=0
  wait "$p1" || rc=$?
  wait "$p2" || rc=$?
  exec 3>&- 4>&-
  return "$rc"
}
for r in $(seq 1 "$rounds"); do
  # Who steps first alternates between rounds.
  if [ $((r % 2)) = 1 ]; then lead=ours; else lead=peer; fi
  echo "## round $r (lockstep, $lead first)"
  lockstep "$lead"
  ours=$(cat "$work/ours.out"); echo "$ours"
  peer=$(cat "$work/peer.out"); echo "$peer"
  run_ours --fp16
  ratios+=("$(echo "$ours" | imgs) $(echo "$peer" | imgs)")
done
# Each round's ratio compares steps taken in alternation; the rounds are
# then summarized.
printf '%s\n' "${ratios[@]}" | awk '{ r = $1 / $2; s += r; sl += log(r); n++; printf "round %d: ortrain fp32 / PyTorch = %.3f\n", n, r
  if (n == 1 || r < lo) lo = r; if (n == 1 || r > hi) hi = r }
  END { printf "ratio over %d rounds: mean %.3f, geometric mean %.3f, range %.3f-%.3f\n", n, s / n, exp(sl / n), lo, hi }'
