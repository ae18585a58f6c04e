#!/usr/bin/env bash
# Distillation on Imagenette at low resolution (issue "distill"): a teacher
# trained by ortrain and exported, then the same student trained with and
# without it. Appends one line per run to RESULTS (default
# docs/results/distill.tsv): run, model, teacher, epochs, size, val top-1,
# top-5, train img/s.
#
#   scripts/distill_experiment.sh [DATA] [SIZE] [TEACHER_EPOCHS] [STUDENT_EPOCHS] [SEED]
#   (default ../shared/data/imagenette 64 10 10 1)
# The body is one block, read whole before it runs: editing this file while
# a long run executes it cannot change what that run does.
{
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/imagenette}
size=${2:-64}
te=${3:-10}
se=${4:-10}
seed=${5:-1}
results=${RESULTS:-docs/results/distill.tsv}
mkdir -p bin runs "$(dirname "$results")"
go build -o bin/ortrain ./cmd/ortrain
run=runs/distill-s$seed
common=(--data "$data" --image-size "$size" --batch-size 64 --recipe tricks --lr-base 0.4 --seed "$seed" --keep 0)
record() {
  python3 -c "
import json,sys
r=[json.loads(l) for l in open(sys.argv[1]+'/metrics.jsonl')][-1]
print('\t'.join([sys.argv[2], sys.argv[3], sys.argv[4], str(r['epoch']), sys.argv[5], '%.4f' % r['val_top1'], '%.4f' % r['val_top5'], '%.1f' % r['train_img_per_s']]))
" "$1" "$2" "$3" "$4" "$size" >> "$results"
  tail -1 "$results"
}
[ -s "$results" ] || printf 'run\tmodel\tteacher\tepochs\tsize\tval_top1\tval_top5\ttrain_img_per_s\n' > "$results"
if [ ! -f "$run/teacher/model.onnx" ]; then
  # An interrupted teacher run continues from its last checkpoint
  # (bit-identical to an uninterrupted one) instead of starting over.
  if [ -f "$run/teacher/checkpoints/last.ckpt" ]; then
    bin/ortrain train --resume "$run/teacher"
  else
    bin/ortrain train "${common[@]}" --model resnet50d --epochs "$te" --out "$run/teacher" --overwrite
  fi
fi
record "$run/teacher" "teacher-s$seed" resnet50d - 
bin/ortrain train "${common[@]}" --model resnet18d --epochs "$se" --out "$run/student" --overwrite
record "$run/student" "student-s$seed" resnet18d none
bin/ortrain train "${common[@]}" --model resnet18d --epochs "$se" --out "$run/student-kd" --overwrite \
  --teacher "$run/teacher/model.onnx" --kd-temperature 20 --kd-hard-weight 0.5
record "$run/student-kd" "student-kd-s$seed" resnet18d resnet50d
exit
}
