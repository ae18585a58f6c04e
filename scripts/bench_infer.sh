#!/usr/bin/env bash
# Inference benchmark (issue "Foundation"): ONNX Runtime img/s for our ResNet
# against the same weights exported by torch.onnx and against PyTorch eager,
# all in one run on this machine.
#
#   scripts/bench_infer.sh [MODEL] [BATCH] [ITERS]     (default resnet50 16 20)
#
# Needs scripts/setup.sh first (ONNX Runtime, python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet50}
batch=${2:-16}
iters=${3:-20}
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
go build -o "$work/graphgen" ./cmd/graphgen
"$work/graphgen" "$model" --seed 1 -o "$work/ours.onnx"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $model, batch $batch at 224, $iters timed runs"
/usr/bin/python3 scripts/bench/torch_infer.py --model "$work/ours.onnx" --arch "$model" --batch "$batch" \
  --iters "$iters" --export "$work/torch.onnx"
# Four interleaved rounds, alternating which graph goes first, so drift of
# the machine hits both alike.
ours() { "$work/ortrain" bench --model "$work/ours.onnx" --batch "$batch" --iters "$iters" --label "round $1: ortrain graphgen $model (ONNX Runtime)"; }
theirs() { "$work/ortrain" bench --model "$work/torch.onnx" --batch "$batch" --iters "$iters" --label "round $1: torch.onnx.export $model (ONNX Runtime)"; }
for round in 1 2 3 4; do
  if [ $((round % 2)) -eq 1 ]; then ours $round; theirs $round; else theirs $round; ours $round; fi
done
