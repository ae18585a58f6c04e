#!/usr/bin/env bash
# Checks the model family: install
# everything, then generate every ResNet of the family, check each with
# onnx.checker (full_check) and run each in ONNX Runtime at batch 2.
# Writes out/resnet50d.onnx and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p bin out
go build -o bin/graphgen ./cmd/graphgen
go build -o bin/ortrain ./cmd/ortrain
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-11s %12s %8s %-8s %s\n' model params GMACs checker "ONNX Runtime, batch 2 at 224 (one cold run)"
for m in $(bin/graphgen --list | cut -d' ' -f1); do
  bin/graphgen "$m" --summary -o "$work/$m.onnx" 2> "$work/summary"
  params=$(awk '$1=="total"{print $2}' "$work/summary")
  gmacs=$(sed -n 's/.*input, \([0-9.]*\) GMACs.*/\1/p' "$work/summary")
  /usr/bin/python3 scripts/oracle/onnx_check.py "$work/$m.onnx" > /dev/null
  run=$(bin/ortrain bench --model "$work/$m.onnx" --batch 2 --iters 1 --warmup 0 | sed 's/.*runs: //')
  printf '%-11s %12s %8s %-8s %s\n' "$m" "$params" "$gmacs" ok "$run"
  [ "$m" = resnet50d ] && mv "$work/$m.onnx" out/resnet50d.onnx
  rm -f "$work/$m.onnx"
done
echo "wrote out/resnet50d.onnx; inspect it with: bin/ortrain info --model out/resnet50d.onnx"
