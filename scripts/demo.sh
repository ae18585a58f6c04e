#!/usr/bin/env bash
# The main job on a small default, every stage of ortrain in a few minutes on
# 2 cores: install everything (scripts/setup.sh), write Fashion-MNIST (from
# Debian's dataset-fashion-mnist) as an image folder, train a ResNet-18-D at
# 32x32 with the paper's tricks (cosine, warmup, label smoothing, mixup,
# zero-gamma, no-bias-decay; FP16 is for GPUs), show validation accuracy per epoch, a
# progress bar, plots, an exported model.onnx, and predictions.
#
#   scripts/demo.sh [EPOCHS]     (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-8}
scripts/setup.sh
mkdir -p bin
go build -o bin/graphgen ./cmd/graphgen
go build -o bin/ortrain ./cmd/ortrain
bin/ortrain prepare fashion-mnist --out data/fashion-mnist --train-per-class 500 --val-per-class 100
rm -rf runs/demo
bin/ortrain train --data data/fashion-mnist --out runs/demo --model resnet18d --image-size 32 \
  --epochs "$epochs" --batch-size 64 --recipe tricks --lr-base 0.4 --seed 1
echo
bin/ortrain eval --model runs/demo/model.onnx --data data/fashion-mnist
echo "predictions for one validation image of each of three classes:"
bin/ortrain predict --model runs/demo/model.onnx --top 3 \
  data/fashion-mnist/val/1-trouser/"$(ls data/fashion-mnist/val/1-trouser | head -1)" \
  data/fashion-mnist/val/7-sneaker/"$(ls data/fashion-mnist/val/7-sneaker | head -1)" \
  data/fashion-mnist/val/8-bag/"$(ls data/fashion-mnist/val/8-bag | head -1)"
echo "run folder: runs/demo (config.json, metrics.csv, loss.png, accuracy.png, lr.png, checkpoints/, model.onnx)"
