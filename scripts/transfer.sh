#!/usr/bin/env bash
# Transfer learning with ortrain: pretrain a network on some classes of an
# image folder, then learn the other classes from a few images each, three
# ways, against training on those few images from scratch:
#
#   finetune  --init the pretrained weights, --recipe finetune
#   probe     the same with --freeze-backbone (the classifier alone)
#   scratch   a random initialization trained as from scratch: the
#             tricks recipe without mixup, 15 epochs, lr 0.1 per 256
#             images, 1 warmup epoch
#
#   scripts/transfer.sh [DATA] [SEEDS] [SHOTS]
#       defaults: ../shared/data/imagenette "1 2" 30
#
# The first 6 classes (sorted) are pretrained on once (all their images,
# 64x64, ResNet-18-D, 10 epochs, the tricks recipe without mixup, seed 1);
# the other
# classes get SHOTS training images each (the first ones, sorted) and all
# their validation images. Subsets are folders of symbolic links under
# runs/transfer/data. Every run's final validation accuracy is appended to
# docs/results/transfer.tsv (RESULTS overrides); finished runs are skipped.
{
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(cd "${1:-../shared/data/imagenette}" && pwd)
seeds=${2:-1 2}
shots=${3:-30}
results=${RESULTS:-docs/results/transfer.tsv}
root=runs/transfer
mkdir -p bin "$root/data" "$(dirname "$results")"
go build -o bin/ortrain ./cmd/ortrain
[ -s "$results" ] || printf 'setting\tseed\tshots\tepochs\tval_top1\tval_top5\tval_loss\n' > "$results"

mapfile -t classes < <(ls "$data/train" | sort)
pre=$root/data/pretrain few=$root/data/few-$shots
if [ ! -d "$few" ]; then
  for i in "${!classes[@]}"; do
    c=${classes[$i]}
    if [ "$i" -lt 6 ]; then
      mkdir -p "$pre/train" "$pre/val"
      ln -sfn "$data/train/$c" "$pre/train/$c"; ln -sfn "$data/val/$c" "$pre/val/$c"
    else
      mkdir -p "$few/train/$c" "$few/val"
      ln -sfn "$data/val/$c" "$few/val/$c"
      mapfile -t files < <(ls "$data/train/$c" | sort)
      for f in "${files[@]:0:$shots}"; do ln -sfn "$data/train/$c/$f" "$few/train/$c/$f"; done
    fi
  done
fi

done_run() { [ -f "$1/model.onnx" ]; }
record() { # RUN SETTING SEED
  python3 -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')][-1]
print('\t'.join(sys.argv[2:5] + [str(r['epoch']), '%.4f' % r['val_top1'], '%.4f' % r['val_top5'], '%.4f' % r['val_loss']]))
" "$@" >> "$results"
  tail -1 "$results"
}
common=(--model resnet18d --image-size 64 --workers 2)
p=$root/pretrain
if ! done_run "$p"; then
  bin/ortrain train --data "$pre" --out "$p" --overwrite "${common[@]}" --epochs 10 --batch-size 64 --recipe tricks \
    --mixup-alpha 0 --lr-base 0.4 --seed 1
  record "$p" pretrain 1 all
fi
for seed in $seeds; do
  for setting in finetune probe scratch; do
    run=$root/$setting-$shots-s$seed
    done_run "$run" && continue
    case $setting in
      finetune) extra=(--init "$p/checkpoints/last.ckpt" --recipe finetune) ;;
      probe) extra=(--init "$p/checkpoints/last.ckpt" --recipe finetune --freeze-backbone) ;;
      scratch) extra=(--recipe tricks --mixup-alpha 0 --epochs 15 --lr-base 0.1 --warmup-epochs 1) ;;
    esac
    bin/ortrain train --data "$few" --out "$run" --overwrite "${common[@]}" --batch-size 16 --seed "$seed" "${extra[@]}"
    record "$run" "$setting" "$seed" "$shots"
  done
done
column -t "$results"
exit
}
