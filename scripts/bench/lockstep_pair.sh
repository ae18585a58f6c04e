#!/usr/bin/env bash
# Runs two train-step benchmark processes in lockstep (as
# scripts/bench_train.sh ... lockstep does) and prints each one's median
# step, to see how each side's speed depends on its partner:
#
#   scripts/bench/lockstep_pair.sh FIRST SECOND [ITERS]
#
# FIRST and SECOND are "ours" (ortrain bench-step, resnet50 batch 16),
# "peer" (scripts/bench/torch_train.py, the same step in PyTorch) or
# "sleep" (a partner that takes no step, only waits 1.7 s per turn and
# reports 1700 ms); FIRST steps first. Needs bin/ortrain
# (go build -o bin/ortrain ./cmd/ortrain).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 2 ]; then
  echo "usage: scripts/bench/lockstep_pair.sh FIRST SECOND [ITERS]" >&2
  exit 2
fi
for k in "$1" "$2"; do
  case "$k" in
    ours|peer|sleep) ;;
    *) echo "lockstep_pair: FIRST and SECOND are ours, peer or sleep, got $k" >&2; exit 2 ;;
  esac
done
iters=${3:-6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lockstep.sh
. scripts/bench/lockstep.sh
lockstep_fifos "$work"
# side KIND TURN_IN TURN_OUT OUT: start one side in the background, as the
# process itself (so that its pid is $!), without this shell's FIFO
# descriptors (so that it sees end of file when its partner is gone).
side() {
  case "$1" in
    ours) bin/ortrain bench-step --iters "$iters" --warmup 2 --turn-in "$2" --turn-out "$3" >"$4" 3>&- 4>&- & ;;
    peer) /usr/bin/python3 scripts/bench/torch_train.py --iters "$iters" --warmup 2 --turn-in "$2" --turn-out "$3" >"$4" 3>&- 4>&- & ;;
    sleep)
      echo "sleep: median 1700 ms/step" >"$4"
      /usr/bin/python3 -c 'import sys, time
i, o = open(sys.argv[1], "rb", buffering=0), open(sys.argv[2], "wb", buffering=0)
for _ in range(int(sys.argv[3])):
    if len(i.read(1)) != 1: break
    time.sleep(1.7); o.write(b".")' "$2" "$3" $((iters + 2)) 3>&- 4>&- & ;;
  esac
}
side "$1" "$work/a" "$work/b" "$work/1"; p1=$!
side "$2" "$work/b" "$work/a" "$work/2"; p2=$!
trap 'kill "$p1" "$p2" 2>/dev/null || true; rm -rf "$work"' EXIT
rc=0
lockstep_wait "$p1" "$p2" || rc=$?
median() { sed -n 's/.*median \([0-9]*\) ms\/step.*/\1/p' "$1"; }
echo "[$1 first, $2 second] $1: $(median "$work/1") ms, $2: $(median "$work/2") ms"
exit "$rc"
