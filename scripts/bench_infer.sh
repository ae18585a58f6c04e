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
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/graphgen" ./cmd/graphgen
go build -o "$work/ortrain" ./cmd/ortrain
"$work/graphgen" "$model" --seed 1 -o "$work/ours.onnx"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $model, batch $batch at 224, $iters timed runs"
/usr/bin/python3 scripts/bench/torch_infer.py --model "$work/ours.onnx" --arch "$model" --batch "$batch" \
  --iters "$iters" --export "$work/torch.onnx"
# Three interleaved rounds, so drift of the machine hits both graphs alike.
for round in 1 2 3; do
  "$work/ortrain" bench --model "$work/ours.onnx" --batch "$batch" --iters "$iters" --label "round $round: ortrain graphgen $model (ONNX Runtime)"
  "$work/ortrain" bench --model "$work/torch.onnx" --batch "$batch" --iters "$iters" --label "round $round: torch.onnx.export $model (ONNX Runtime)"
done
