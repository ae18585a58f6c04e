#!/usr/bin/env bash
# Data-parallel benchmark: one train step of the same global batch four
# ways, in one run of several rounds (who goes first rotating):
#   ortrain, 1 process x 2 threads (the fused step);
#   ortrain under `mpirun -np 2`, 2 processes x 1 thread, half the batch
#     each (the split step; its all-reduce timed apart, after a barrier);
#   PyTorch eager, 1 process x 2 threads (scripts/bench/torch_train.py);
#   PyTorch DDP with gloo, 2 processes x 1 thread (scripts/bench/torch_ddp.py).
# img/s over the global batch and peak RSS per process.
#
# PEER_BLAS=openblas runs both PyTorch peers with OpenBLAS (one thread per
# thread of the process) instead of the system's reference BLAS, on which
# PyTorch's one-thread processes run their 1x1 convolutions of batches
# under 16 (scripts/bench/peer_blas.sh): the fair DDP figure at ResNet-50.
#
#   scripts/bench_parallel.sh [MODEL] [GLOBAL_BATCH] [SIZE] [ITERS] [ROUNDS]
#       defaults: resnet50 16 224 8 2
#
# Needs scripts/setup.sh first (ONNX Runtime, OpenMPI, python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-resnet50}
batch=${2:-16}
size=${3:-224}
iters=${4:-8}
rounds=${5:-2}
half=$((batch / 2))
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
go build -tags mpi -o "$work/ortrain-mpi" ./cmd/ortrain
# shellcheck source=bench/peer_blas.sh
. scripts/bench/peer_blas.sh
peer_blas "$work" bench_parallel
blas1=() blas2=()
if [ ${#peer_env[@]} -gt 0 ]; then
  blas1=("${peer_env[@]}" OPENBLAS_NUM_THREADS=2) blas2=("${peer_env[@]}" OPENBLAS_NUM_THREADS=1)
fi
mpi=(mpirun -np 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
bench_header "$model, global batch $batch at $size, $iters timed steps after 2 warm-up steps, PyTorch's BLAS: ${PEER_BLAS:-system}"
runs=(ours1 ours2 torch1 ddp2)
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  for i in 0 1 2 3; do
    case "${runs[$(((i + r - 1) % 4))]}" in
      ours1) "$work/ortrain" bench-step --model "$model" --batch "$batch" --image-size "$size" --iters "$iters" --warmup 2 ;;
      ours2) "${mpi[@]}" "$work/ortrain-mpi" bench-step --model "$model" --batch "$half" --image-size "$size" --iters "$iters" --warmup 2 --threads 1 ;;
      torch1) ${blas1[@]+"${blas1[@]}"} /usr/bin/python3 scripts/bench/torch_train.py --arch "$model" --batch "$batch" --size "$size" --iters "$iters" --warmup 2 ;;
      ddp2) ${blas2[@]+"${blas2[@]}"} /usr/bin/python3 scripts/bench/torch_ddp.py --arch "$model" --batch "$half" --size "$size" --iters "$iters" --warmup 2 --procs 2 --threads 1 ;;
    esac
  done
done
