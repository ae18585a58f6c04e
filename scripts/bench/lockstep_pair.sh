#!/usr/bin/env bash
# Runs two train-step benchmark processes in lockstep (as
# scripts/bench_train.sh ... lockstep does) and prints each one's median
# step, to see how each side's speed depends on its partner:
#
#   scripts/bench/lockstep_pair.sh FIRST SECOND [ITERS]
#
# FIRST and SECOND are "ours" (ortrain bench-step, resnet50 batch 16),
# "peer" (scripts/bench/torch_train.py, the same step in PyTorch) or
# "sleep" (a partner that takes no step, only waits 1.7 s per turn);
# FIRST steps first. Needs bin/ortrain (go build -o bin/ortrain ./cmd/ortrain).
set -euo pipefail
cd "$(dirname "$0")/../.."
iters=${3:-6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkfifo "$work/a" "$work/b"
exec 3<>"$work/a" 4<>"$work/b"
printf . >&3
side() { # KIND TURN_IN TURN_OUT
  case "$1" in
    ours) bin/ortrain bench-step --iters "$iters" --warmup 2 --turn-in "$2" --turn-out "$3" ;;
    peer) /usr/bin/python3 scripts/bench/torch_train.py --iters "$iters" --warmup 2 --turn-in "$2" --turn-out "$3" ;;
    sleep) /usr/bin/python3 -c 'import sys, time
i, o = open(sys.argv[1], "rb", buffering=0), open(sys.argv[2], "wb", buffering=0)
for _ in range(int(sys.argv[3])):
    if len(i.read(1)) != 1: break
    time.sleep(1.7); o.write(b".")' "$2" "$3" $((iters + 2)); echo "sleep: median 1700 ms/step" ;;
    *) echo "lockstep_pair: FIRST and SECOND are ours, peer or sleep" >&2; exit 2 ;;
  esac
}
side "$1" "$work/a" "$work/b" >"$work/1" & p1=$!
side "$2" "$work/b" "$work/a" >"$work/2" & p2=$!
# If one side fails the other would wait for its turn forever: stop it.
rc=0
wait -n -p done "$p1" "$p2" || rc=$?
other=$p2
[ "$done" = "$p1" ] || other=$p1
if [ "$rc" -ne 0 ]; then
  kill "$other" 2>/dev/null || true
  wait "$other" 2>/dev/null || true
else
  wait "$other" || rc=$?
fi
median() { sed -n 's/.*median \([0-9]*\) ms\/step.*/\1/p' "$1"; }
echo "[$1 first, $2 second] $1: $(median "$work/1") ms, $2: $(median "$work/2") ms"
exit "$rc"
