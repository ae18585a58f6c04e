#!/usr/bin/env bash
# Distillation speed (issue "distill"): student img/s without a teacher, with
# a teacher scored before each step, and with the teacher scoring the next
# batch during the student's step (--teacher-overlap), in one run. The
# teacher is ResNet-152-D (the paper's teacher depth) as graphgen writes it:
# its weights do not change its speed.
#
#   scripts/bench_distill.sh [DATA] [SIZE] [PER_CLASS]   (default ../shared/data/imagenette 64 64)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/data/imagenette}
size=${2:-64}
per=${3:-64}
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
go build -o "$work/graphgen" ./cmd/graphgen
scripts/subset.sh "$src" "$work/data" "$per" 4
classes=$(ls "$work/data/train" | wc -l)
"$work/graphgen" resnet152d --classes "$classes" --image-size "$size" -o "$work/teacher.onnx"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; student resnet18d, teacher resnet152d, ${size}x${size}, batch 32, $((per * classes)) training images, 1 epoch"
common=(train --data "$work/data" --model resnet18d --image-size "$size" --epochs 1 --batch-size 32 --seed 1 --recipe tricks --keep 0)
report() { python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; print(f\"{sys.argv[2]}: {r['train_img_per_s']:.1f} img/s, teacher {r.get('teacher_ms_per_batch',0):.0f} ms/batch\")" "$1/metrics.jsonl" "$2"; }
for round in 1 2; do
  "$work/ortrain" "${common[@]}" --out "$work/none$round" >/dev/null; report "$work/none$round" "round $round: no teacher"
  "$work/ortrain" "${common[@]}" --out "$work/seq$round" --teacher "$work/teacher.onnx" >/dev/null; report "$work/seq$round" "round $round: teacher, sequential"
  "$work/ortrain" "${common[@]}" --out "$work/ovl$round" --teacher "$work/teacher.onnx" --teacher-overlap >/dev/null; report "$work/ovl$round" "round $round: teacher, overlapped"
  "$work/ortrain" "${common[@]}" --out "$work/ovl1$round" --teacher "$work/teacher.onnx" --teacher-overlap --threads 1 --teacher-threads 1 >/dev/null
  report "$work/ovl1$round" "round $round: teacher, overlapped, one thread each"
done
