#!/usr/bin/env bash
# Data-pipeline benchmark (issue "ortrain"): images per second per core of
# the seed's training transform at 224 (decode, random-resized crop, flip,
# colour jitter, PCA lighting, normalize), ours with libjpeg-turbo and with
# Go's image/jpeg, against torchvision with PIL, on the same images, in one
# run. One core each: GOMAXPROCS=1 and one worker for ours, one process with
# one thread for torchvision.
#
#   scripts/bench_data.sh [DIR] [IMAGES]   (default ../shared/data/imagenette 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-../shared/data/imagenette}
n=${2:-1000}
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
go build -tags noturbo -o "$work/ortrain-go" ./cmd/ortrain
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $n images of $dir"
for round in 1 2; do
  GOMAXPROCS=1 "$work/ortrain" bench-data --data "$dir" --images "$n" --workers 1
  GOMAXPROCS=1 "$work/ortrain-go" bench-data --data "$dir" --images "$n" --workers 1
  /usr/bin/python3 scripts/bench/torch_data.py "$dir" 224 "$n"
done
GOMAXPROCS=2 "$work/ortrain" bench-data --data "$dir" --images "$n" --workers 2
