#!/usr/bin/env bash
# Train-step benchmark (issue "Training graphs"): steps/s, img/s and peak RSS
# of ortrain's train-step graph in ONNX Runtime (fp32 and fp16) against
# PyTorch (Debian's 1.13, eager, fp32) doing the same step, in one run, in
# interleaved rounds.
#
#   scripts/bench_train.sh [MODEL] [BATCH] [ITERS] [ROUNDS]   (default resnet50 16 8 2)
#
# Needs scripts/setup.sh first (ONNX Runtime, python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet50}
batch=${2:-16}
iters=${3:-8}
rounds=${4:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/ortrain" ./cmd/ortrain
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $model, batch $batch at 224, $iters timed steps after 2 warm-up steps"
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  "$work/ortrain" bench-step --model "$model" --batch "$batch" --iters "$iters" --warmup 2
  /usr/bin/python3 scripts/bench/torch_train.py --arch "$model" --batch "$batch" --iters "$iters" --warmup 2
  "$work/ortrain" bench-step --model "$model" --batch "$batch" --iters "$iters" --warmup 2 --fp16
done
