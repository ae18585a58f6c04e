#!/usr/bin/env bash
# Train-step benchmark (issue "Training graphs"): steps/s, img/s and peak RSS
# of ortrain's train-step graph in ONNX Runtime (fp32 and fp16) against
# PyTorch (Debian's 1.13, eager, fp32) doing the same step, in one run of
# several rounds.
#
#   scripts/bench_train.sh [MODEL] [BATCH] [ITERS] [ROUNDS] [MODE]
#       defaults: resnet50 16 8 2 sequential
#
# MODE sequential: in each round ortrain and PyTorch run one after the
# other, each alone on the machine, who goes first alternating between
# rounds. MODE lockstep: the two run at the same time and take turns step
# by step (see lockstep below); on this machine that slows PyTorch's steps
# by about a tenth and not ours (docs/results/bench/history.md), so the reported
# comparison is the sequential one. The fp16 step is then measured alone.
#
# PEER_BLAS=openblas runs PyTorch with OpenBLAS instead of the system's
# libblas.so.3 (scripts/bench/peer_blas.sh): its fully connected layer runs
# on that BLAS (the convolutions on oneDNN), and Debian's reference
# libblas3, which setup.sh leaves in place, takes about 45 ms of its step
# where OpenBLAS takes about 1 (docs/results/bench/history.md). PyTorch's
# result line names the BLAS it loaded.
#
# Needs scripts/setup.sh first (ONNX Runtime, python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet50}
batch=${2:-16}
iters=${3:-8}
rounds=${4:-2}
mode=${5:-sequential}
case "$mode" in
  sequential|lockstep) ;;
  *) echo "bench_train: MODE must be sequential or lockstep, got $mode" >&2; exit 2 ;;
esac
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
bench_header "$model, batch $batch at 224, $iters timed steps after 2 warm-up steps, $mode, PyTorch's BLAS: ${PEER_BLAS:-system}"
# num UNIT prints the number before UNIT in a result line (UNIT as a sed
# pattern: 'img\/s', 'ms\/step').
num() { sed -n "s/.* \([0-9.]*\) $1.*/\1/p"; }
ratios=()
ours_cmd=("$work/ortrain" bench-step --model "$model" --batch "$batch" --iters "$iters" --warmup 2)
peer_cmd=(/usr/bin/python3 scripts/bench/torch_train.py --arch "$model" --batch "$batch" --iters "$iters" --warmup 2)
# shellcheck source=bench/peer_blas.sh
. scripts/bench/peer_blas.sh
peer_blas "$work" bench_train
peer_cmd=(${peer_env[@]+"${peer_env[@]}"} "${peer_cmd[@]}")
# shellcheck source=bench/lockstep.sh
. scripts/bench/lockstep.sh
# lockstep LEADER runs ortrain and PyTorch at the same time, taking turns
# step by step (the leader, "ours" or "peer", steps first), so that each
# step of one is timed right after a step of the other, under the same
# state of the machine; it fails if either does.
lockstep() {
  lockstep_fifos "$work"
  local first=(--turn-in "$work/a" --turn-out "$work/b") second=(--turn-in "$work/b" --turn-out "$work/a")
  if [ "$1" = ours ]; then
    "${ours_cmd[@]}" "${first[@]}" >"$work/ours.out" 3>&- 4>&- & p1=$!
    "${peer_cmd[@]}" "${second[@]}" >"$work/peer.out" 3>&- 4>&- & p2=$!
  else
    "${peer_cmd[@]}" "${first[@]}" >"$work/peer.out" 3>&- 4>&- & p1=$!
    "${ours_cmd[@]}" "${second[@]}" >"$work/ours.out" 3>&- 4>&- & p2=$!
  fi
  trap 'kill "$p1" "$p2" 2>/dev/null || true; rm -rf "$work"' EXIT
  lockstep_wait "$p1" "$p2"
}
for r in $(seq 1 "$rounds"); do
  # Who goes first alternates between rounds, so that a drift of the
  # machine's speed favours neither side over the run.
  if [ $((r % 2)) = 1 ]; then lead=ours; else lead=peer; fi
  echo "## round $r ($mode, $lead first)"
  if [ "$mode" = lockstep ]; then
    lockstep "$lead"
  elif [ "$lead" = ours ]; then
    "${ours_cmd[@]}" >"$work/ours.out"
    "${peer_cmd[@]}" >"$work/peer.out"
  else
    "${peer_cmd[@]}" >"$work/peer.out"
    "${ours_cmd[@]}" >"$work/ours.out"
  fi
  ours=$(cat "$work/ours.out"); echo "$ours"
  peer=$(cat "$work/peer.out"); echo "$peer"
  "${ours_cmd[@]}" --fp16
  ratios+=("$(echo "$ours" | num 'img\/s') $(echo "$peer" | num 'img\/s') $(echo "$ours" | num 'ms\/step') $(echo "$peer" | num 'ms\/step')")
done
# The machine's speed drifts between processes and from one minute to the
# next (docs/results/bench/history.md), so the comparison is made round by round,
# then summarized, with two ratios per round: of img/s (the batch over the
# mean step, which a single slow step moves) and of the median step
# (peer's over ours, which it does not); both above 1 mean ours is faster.
printf '%s\n' "${ratios[@]}" | awk '{ r = $1 / $2; m = $4 / $3; s += r; sl += log(r); sm += m; n++
  printf "round %d: ortrain fp32 / PyTorch = %.3f by img/s, %.3f by median step\n", n, r, m
  if (n == 1 || r < lo) lo = r; if (n == 1 || r > hi) hi = r; if (r >= 1) up++; if (m >= 1) upm++ }
  END { printf "ratio over %d rounds: mean %.3f, geometric mean %.3f, range %.3f-%.3f, %d at 1 or more; by median step: mean %.3f, %d at 1 or more\n", n, s / n, exp(sl / n), lo, hi, up, sm / n, upm }'
