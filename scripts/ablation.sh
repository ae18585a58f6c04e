#!/usr/bin/env bash
# The paper's ablations (Tables 4 to 6) at small scale on Imagenette
# (issue "first run and ablations"): one named row at a time, appending a
# line to RESULTS (default docs/results/ablation.tsv), so rows can be run
# separately and with several seeds.
#
#   scripts/ablation.sh ROW [SEED] [DATA]
#
# Rows (each builds on the one before it, as in the paper):
#   baseline     resnet50, batch 64, lr 0.1 x 64/256, step decay x0.1 at 25/50/75%, NAG 0.9, wd 1e-4
#   efficient    + batch 128 with linear scaling, warmup, zero-gamma, no-bias-decay, FP16
#   resnet50b    efficient on ResNet-50-B
#   resnet50c    efficient on ResNet-50-C
#   resnet50d    efficient on ResNet-50-D
#   cosine       resnet50d + cosine decay
#   smoothing    cosine + label smoothing 0.1
#   distill      smoothing + distillation from a teacher trained by ortrain (T=20)
#   mixup        smoothing + mixup 0.2
#   distill-mixup  mixup + distillation
#   teacher      only the distillation rows' teacher: train it if needed and
#                add its line (row "teacher", once) to RESULTS (not with
#                TEACHER=..., an outside teacher)
# Scale (chosen so that a row takes about 30 minutes on the 2-core machine):
# 64x64 images, 10 epochs. The teacher is trained once, with seed 1, and
# shared by every seed's distillation rows, as the paper uses one teacher.
# What distillation needs is a teacher more accurate than the student; the
# paper gets one by depth (ResNet-152), but at 64x64 and a short schedule
# depth does not buy accuracy: with the same recipe for 10 epochs on
# Imagenette ResNet-18-D reaches 75.4% and ResNet-50-D 68.2%
# (docs/results.md, scripts/distill_experiment.sh). So the teacher is a
# ResNet-18-D (TEACHER_MODEL) with every trick, trained 3x as long
# (TEACHER_EPOCHS), at about half a ResNet-50-D's cost per epoch.
#
# TEACHER=FILE.onnx uses that teacher instead.
# THREADS=1 runs ONNX Runtime and the decoder on one core each, so that two
# rows (or two seeds) can share the machine.
# The body is one block, read whole before it runs: editing this file while
# a long run executes it cannot change what that run does.
{
set -euo pipefail
cd "$(dirname "$0")/.."
row=${1:?usage: scripts/ablation.sh ROW [SEED] [DATA]}
seed=${2:-1}
data=${3:-../shared/data/imagenette}
size=${SIZE:-64}
epochs=${EPOCHS:-10}
results=${RESULTS:-docs/results/ablation.tsv}
mkdir -p bin runs/ablation "$(dirname "$results")"
go build -o bin/ortrain ./cmd/ortrain
threads=${THREADS:-0}
teacher_epochs=${TEACHER_EPOCHS:-$((3 * epochs))}
teacher_arch=${TEACHER_MODEL:-resnet18d}
base=(--data "$data" --image-size "$size" --epochs "$epochs" --seed "$seed" --lr-base 0.1 --keep 0 --overwrite --threads "$threads")
if [ "$threads" != 0 ]; then base+=(--workers "$threads" --teacher-threads "$threads"); fi
efficient=(--batch-size 128 --warmup-epochs 1 --zero-gamma --no-bias-decay --fp16)
# train_or_resume OUT FLAGS...: a new run into OUT, or, when OUT holds an
# interrupted one (a checkpoint but no final model), its continuation from
# the last checkpoint (bit-identical to a run that was never stopped).
train_or_resume() {
  local out=$1
  shift
  if [ -f "$out/checkpoints/last.ckpt" ] && [ ! -f "$out/model.onnx" ]; then
    bin/ortrain train --resume "$out" --threads "$threads"
  else
    bin/ortrain train "$@" --out "$out"
  fi
}
teacher=runs/ablation/teacher
teacher_model=${TEACHER:-$teacher/model.onnx} # TEACHER=model.onnx: any other teacher
need_teacher() {
  if [ -f "$teacher_model" ]; then
    return
  fi
  if [ -n "${TEACHER:-}" ]; then
    echo "ablation: TEACHER=$TEACHER: no such file" >&2
    exit 1
  fi
  train_or_resume "$teacher" --data "$data" --image-size "$size" --epochs "$teacher_epochs" --seed 1 --keep 0 --overwrite \
    --threads "$threads" --model "$teacher_arch" --recipe tricks --batch-size 128
}
case "$row" in
  teacher)
    need_teacher
    # An outside teacher (TEACHER=...) has no run folder to report.
    if [ -n "${TEACHER:-}" ] || { [ -f "$results" ] && grep -q '^teacher	' "$results"; }; then exit 0; fi
    ;;
  baseline) args=(--model resnet50 --batch-size 64 --lr-mode step) ;;
  efficient) args=(--model resnet50 "${efficient[@]}" --lr-mode step) ;;
  resnet50b|resnet50c|resnet50d) args=(--model "$row" "${efficient[@]}" --lr-mode step) ;;
  cosine) args=(--model resnet50d "${efficient[@]}" --lr-mode cosine) ;;
  smoothing) args=(--model resnet50d "${efficient[@]}" --lr-mode cosine --label-smoothing 0.1) ;;
  distill) need_teacher; args=(--model resnet50d "${efficient[@]}" --lr-mode cosine --label-smoothing 0.1 --teacher "$teacher_model" --kd-temperature 20) ;;
  mixup) args=(--model resnet50d "${efficient[@]}" --lr-mode cosine --label-smoothing 0.1 --mixup-alpha 0.2) ;;
  distill-mixup) need_teacher; args=(--model resnet50d "${efficient[@]}" --lr-mode cosine --label-smoothing 0.1 --mixup-alpha 0.2 --teacher "$teacher_model" --kd-temperature 20) ;;
  *) echo "ablation: unknown row $row" >&2; exit 2 ;;
esac
if [ "$row" = teacher ]; then
  out=$teacher
else
  out=runs/ablation/$row-s$seed
  train_or_resume "$out" "${base[@]}" "${args[@]}"
fi
[ -s "$results" ] || printf 'row\tseed\tepochs\tsize\tval_top1\tval_top5\tminutes\tcommand\n' > "$results"
if [ ! -f "$out/metrics.jsonl" ] || [ ! -f "$out/config.json" ]; then
  echo "ablation: $out holds no finished run (metrics.jsonl, config.json)" >&2
  exit 1
fi
# Seed, epochs, size and threads come from the run's own configuration.
# minutes: the run's own time (training and evaluation, summed over epochs,
# so a resumed run counts only its work).
python3 - "$out" "$row" >> "$results" <<'PY'
import json, sys
out, row = sys.argv[1:]
hist = [json.loads(l) for l in open(out + "/metrics.jsonl")]
cfg = json.load(open(out + "/config.json"))
r = hist[-1]
minutes = sum(h["epoch_seconds"] for h in hist) / 60
seed = str(cfg["seed"])
cmd = "scripts/ablation.sh %s %s" % (row, seed) + (" (THREADS=%d)" % cfg["threads"] if cfg.get("threads") else "")
print("\t".join([row, seed, str(r["epoch"]), str(cfg["image_size"]), "%.4f" % r["val_top1"], "%.4f" % r["val_top5"], "%.0f" % minutes, cmd]))
PY
tail -1 "$results"
exit
}
