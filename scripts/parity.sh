#!/usr/bin/env bash
# Trainer-level parity with PyTorch: the same recipe trained by `ortrain
# train` and by a PyTorch reference trainer (scripts/oracle/torch_trainer.py:
# torchvision transforms and DataLoader, the same ResNet, init, optimizer,
# schedule and loss), several seeds each, on an image folder. The PyTorch
# trainer runs twice per seed: with ortrain's colour jitter (the paper's,
# hue as MXNet's YIQ rotation: "yiq") and with torchvision's ColorJitter
# (hue as an HSV shift, clipping after each step: "hsv"), which tells the
# trainers apart from the augmentations.
#
#   scripts/parity.sh [DATA] [SEEDS] [EPOCHS]
#       defaults: ../shared/data/imagenette "1 2 3 4" 8
#
# Recipe: resnet18 at 64x64, batch 64, lr 0.4 x 64/256 = 0.1 peak, 1 warmup
# epoch then cosine, Nesterov 0.9, wd 1e-4, no-bias-decay, zero-gamma, label
# smoothing 0.1 (PyTorch's uniform rule), float32, no mixup. Runs go to
# runs/parity/<trainer>-s<seed>; a finished run is not run again, an
# interrupted ortrain run resumes from its last checkpoint (PyTorch's
# start over). The final
# epoch of every run is appended to docs/results/parity.tsv (RESULTS
# overrides), and scripts/parity_table.py prints the summary table.
# JITTERS chooses the PyTorch runs (default "yiq hsv").
#
# The body is one block, read whole before it runs.
{
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/imagenette}
seeds=${2:-1 2 3 4}
epochs=${3:-8}
results=${RESULTS:-docs/results/parity.tsv}
mkdir -p bin runs/parity "$(dirname "$results")"
go build -o bin/ortrain ./cmd/ortrain
[ -s "$results" ] || printf 'trainer\tjitter\tseed\tepochs\ttrain_loss\tval_top1\tval_top5\tval_loss\tepoch_seconds\n' > "$results"
done_epochs() { [ -f "$1/metrics.jsonl" ] && wc -l < "$1/metrics.jsonl" || echo 0; }
record() { # RUN TRAINER JITTER SEED
  python3 -c "
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
r = rs[-1]
sec = sum(x['epoch_seconds'] for x in rs) / len(rs)
print('\t'.join(sys.argv[2:5] + [str(r['epoch']), '%.4f' % r['train_loss'], '%.4f' % r['val_top1'], '%.4f' % r['val_top5'], '%.4f' % r['val_loss'], '%.1f' % sec]))
" "$@" >> "$results"
  tail -1 "$results"
}
for seed in $seeds; do
  run=runs/parity/ortrain-s$seed
  if [ "$(done_epochs "$run")" -lt "$epochs" ]; then
    if [ -f "$run/checkpoints/last.ckpt" ]; then
      bin/ortrain train --resume "$run" # an interrupted run continues, bit-identically
    else
      bin/ortrain train --data "$data" --out "$run" --overwrite --model resnet18 --image-size 64 --epochs "$epochs" \
        --batch-size 64 --lr-base 0.4 --lr-mode cosine --warmup-epochs 1 --label-smoothing 0.1 --smoothing-rule uniform \
        --zero-gamma --no-bias-decay --mixup-alpha 0 --seed "$seed" --keep 0
    fi
    record "$run" ortrain yiq "$seed"
  fi
  for jitter in ${JITTERS:-yiq hsv}; do
    run=runs/parity/torch-$jitter-s$seed
    if [ "$(done_epochs "$run")" -lt "$epochs" ]; then
      /usr/bin/python3 scripts/oracle/torch_trainer.py --data "$data" --out "$run" --arch resnet18 --image-size 64 \
        --epochs "$epochs" --batch-size 64 --lr-base 0.4 --lr-mode cosine --warmup-epochs 1 --label-smoothing 0.1 \
        --zero-gamma --no-bias-decay --jitter "$jitter" --seed "$seed" --workers 1
      record "$run" pytorch "$jitter" "$seed"
    fi
  done
done
python3 scripts/parity_table.py "$results"
exit
}
