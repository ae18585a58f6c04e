#!/usr/bin/env bash
# What freezing saves: the train step of a fine-tuning run with
# --freeze-backbone (the classifier alone trains) and with --freeze-bn,
# against the full step, `ortrain bench-step` in one run, the order
# rotating between rounds.
#
#   scripts/bench_freeze.sh [MODEL] [BATCH] [SIZE] [ITERS] [ROUNDS]
#       defaults: resnet50d 16 224 5 3
#
# Needs scripts/setup.sh first (ONNX Runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet50d}
batch=${2:-16}
size=${3:-224}
iters=${4:-5}
rounds=${5:-3}
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
bench_header "$model, batch $batch at $size, $iters timed steps after 2 warm-up steps"
kinds=(full --freeze-bn --freeze-backbone)
for r in $(seq "$rounds"); do
  for i in 0 1 2; do
    k=${kinds[$(( (i + r - 1) % 3 ))]}
    flag=$k; [ "$k" = full ] && flag=
    line=$("$work/ortrain" bench-step --model "$model" --batch "$batch" --image-size "$size" --classes 10 --iters "$iters" $flag)
    echo "round $r $k: $line"
    echo "$k $(sed -n 's/.* \([0-9.]*\) img\/s.*/\1/p' <<<"$line")" >> "$work/imgs"
  done
done
echo "# img/s by kind: median (min-max), and against the full step"
python3 - "$work/imgs" <<'PY'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    k, x = line.split()
    v.setdefault(k, []).append(float(x))
full = statistics.median(v["full"])
for k in ("full", "--freeze-bn", "--freeze-backbone"):
    m = statistics.median(v[k])
    print(f"{k:18s} {m:8.2f} img/s ({min(v[k]):.2f}-{max(v[k]):.2f})  x{m / full:.2f}")
PY
