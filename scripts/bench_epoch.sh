#!/usr/bin/env bash
# End-to-end training speed: one epoch of an image folder with the parity
# recipe (scripts/parity.sh: NAG, cosine with a warmup epoch, label
# smoothing, zero-gamma, no-bias-decay, fp32, no mixup), in `ortrain train`
# (its own data pipeline, default workers) and in the PyTorch reference
# trainer scripts/oracle/torch_trainer.py (torchvision transforms,
# DataLoader with one worker process), in one run of several rounds, who
# goes first alternating. Prints each run's training img/s (evaluation
# excluded) and seconds per epoch (evaluation included), then the ratio
# of training img/s per round.
#
#   scripts/bench_epoch.sh [DATA] [SIZE] [BATCH] [ROUNDS] [MODEL]
#       defaults: ../shared/data/imagenette 64 64 2 resnet18
#
# PEER_BLAS as in bench_train.sh (scripts/bench/peer_blas.sh). PER_CLASS=N
# trains on the first N images (sorted by name) of each training class
# and validates on the first N/4 of each validation class, a folder of
# links in the temporary folder: an epoch at 224 of the whole of
# Imagenette takes about 20 minutes per trainer on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/imagenette}
size=${2:-64}
batch=${3:-64}
rounds=${4:-2}
model=${5:-resnet18}
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
# shellcheck source=bench/peer_blas.sh
. scripts/bench/peer_blas.sh
peer_blas "$work" bench_epoch
what=$data
if [ -n "${PER_CLASS:-}" ]; then
  [ "$PER_CLASS" -ge 4 ] 2>/dev/null || { echo "bench_epoch: PER_CLASS must be a number of at least 4, got $PER_CLASS" >&2; exit 2; }
  for split in train val; do
    n=$PER_CLASS
    [ "$split" = val ] && n=$((PER_CLASS / 4))
    for dir in "$data/$split"/*/; do
      class=$(basename "$dir")
      mkdir -p "$work/data/$split/$class"
      # NUL-separated (names with spaces), images only (files or links);
      # sed, unlike head, reads to the end (no SIGPIPE under pipefail).
      find "$(cd "$dir" && pwd)" -maxdepth 1 \( -type f -o -type l \) \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) -print0 |
        LC_ALL=C sort -z | sed -z -n "1,${n}p" | xargs -0 -r ln -s -t "$work/data/$split/$class"
    done
  done
  what="$data, the first $PER_CLASS training and $((PER_CLASS / 4)) validation images of each class"
  data=$work/data
fi
bench_header "$model at $size, batch $batch, one epoch of $what, PyTorch's BLAS: ${PEER_BLAS:-system}"
# last RUN prints the training img/s and the epoch's seconds of a run
# folder, then where ortrain's seconds went (metrics.jsonl).
last() { python3 -c '
import json,sys
r=[json.loads(l) for l in open(sys.argv[1]+"/metrics.jsonl")][-1]
print("%.2f %.1f" % (r["train_img_per_s"], r["epoch_seconds"]), end="")
if "step_seconds" in r: print(" (steps %.1f s, waiting for data %.1f s, evaluation %.1f s)" % (r["step_seconds"], r["data_wait_seconds"], r["eval_seconds"]), end="")
print()' "$1"; }
ours() {
  "$work/ortrain" train --data "$data" --out "$work/ours$1" --overwrite --model "$model" --image-size "$size" --epochs 1 \
    --batch-size "$batch" --lr-base 0.4 --lr-mode cosine --warmup-epochs 1 --label-smoothing 0.1 --smoothing-rule uniform \
    --zero-gamma --no-bias-decay --mixup-alpha 0 --seed 1 --keep 0 > "$work/ours$1.log" 2>&1 ||
    { cat "$work/ours$1.log" >&2; exit 1; }
  set -- "$1" $(last "$work/ours$1")
  echo "ortrain train: $2 img/s training, $3 s for the epoch ${*:4}"
  ours_ips=$2
}
peer() {
  ${peer_env[@]+"${peer_env[@]}"} /usr/bin/python3 scripts/oracle/torch_trainer.py --data "$data" --out "$work/peer$1" \
    --arch "$model" --image-size "$size" --epochs 1 --batch-size "$batch" --lr-base 0.4 --lr-mode cosine --warmup-epochs 1 \
    --label-smoothing 0.1 --zero-gamma --no-bias-decay --jitter yiq --seed 1 --workers 1 > "$work/peer$1.log" 2>&1 ||
    { cat "$work/peer$1.log" >&2; exit 1; }
  set -- "$1" $(last "$work/peer$1")
  echo "pytorch trainer (DataLoader, 1 worker): $2 img/s training, $3 s for the epoch"
  peer_ips=$2
}
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  if [ $((r % 2)) -eq 1 ]; then ours "$r"; peer "$r"; else peer "$r"; ours "$r"; fi
  python3 -c 'import sys; print("round %s: ortrain / PyTorch = %.3f by training img/s" % (sys.argv[1], float(sys.argv[2]) / float(sys.argv[3])))' "$r" "$ours_ips" "$peer_ips"
done
