#!/usr/bin/env bash
# Train-step benchmark grid: ortrain's step (`ortrain bench-step`, fp32 and
# fp16) against PyTorch's (scripts/bench/torch_train.py, eager fp32) over
# models x (size, batch), several rounds, who goes first alternating per
# round; each measurement is one process alone on the machine. Prints the
# raw result lines, then one Markdown table: mean img/s over the rounds,
# the range, peak RSS, and ortrain fp32 over PyTorch.
#
#   scripts/bench_grid.sh [ROUNDS] [ITERS]      (default 2 8)
#
# MODELS (default "resnet18 resnet50 resnet50d") and SHAPES (default
# "64x64 224x16": SIZE x BATCH) choose the grid; PEER_BLAS as in
# bench_train.sh (scripts/bench/peer_blas.sh). Needs scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
iters=${2:-8}
models=${MODELS:-resnet18 resnet50 resnet50d}
shapes=${SHAPES:-64x64 224x16}
# shellcheck source=bench/common.sh
. scripts/bench/common.sh
bench_setup
# shellcheck source=bench/peer_blas.sh
. scripts/bench/peer_blas.sh
peer_blas "$work" bench_grid
bench_header "$iters timed steps after 2 warm-up steps, $rounds rounds, PyTorch's BLAS: ${PEER_BLAS:-system}"
raw=$work/raw.tsv # model, size, batch, runner, round, img/s, peak RSS kB
run() { # MODEL SIZE BATCH RUNNER ROUND
  local line
  case "$4" in
    fp32) line=$("$work/ortrain" bench-step --model "$1" --image-size "$2" --batch "$3" --iters "$iters" --warmup 2) ;;
    fp16) line=$("$work/ortrain" bench-step --model "$1" --image-size "$2" --batch "$3" --iters "$iters" --warmup 2 --fp16) ;;
    pytorch) line=$(${peer_env[@]+"${peer_env[@]}"} /usr/bin/python3 scripts/bench/torch_train.py --arch "$1" --size "$2" --batch "$3" --iters "$iters" --warmup 2) ;;
  esac
  echo "$line"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" \
    "$(sed -n 's/.* \([0-9.]*\) img\/s.*/\1/p' <<<"$line")" "$(sed -n 's/.*peak RSS \([0-9]*\) kB.*/\1/p' <<<"$line")" >> "$raw"
}
for r in $(seq 1 "$rounds"); do
  echo "## round $r"
  for m in $models; do
    for shape in $shapes; do
      size=${shape%x*} batch=${shape#*x}
      if [ $((r % 2)) -eq 1 ]; then order="fp32 pytorch fp16"; else order="pytorch fp32 fp16"; fi
      for who in $order; do run "$m" "$size" "$batch" "$who" "$r"; done
    done
  done
done
python3 - "$raw" <<'EOF'
import collections, statistics, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    m, size, batch, who, rnd, ips, rss = line.rstrip("\n").split("\t")
    rows.setdefault((m, int(size), int(batch)), {}).setdefault(who, []).append((int(rnd), float(ips), int(rss)))
def cell(v):
    x = [i for _, i, _ in v]
    return f"{statistics.mean(x):.1f} ({min(x):.1f}-{max(x):.1f}), {max(r for _, _, r in v) / 1e6:.2f} GB"
print("\n| model | size | batch | PyTorch fp32 img/s, peak RSS | ortrain fp32 | ortrain fp16 | fp32 ratio by round (mean) |")
print("|---|---|---|---|---|---|---|")
for (m, size, batch), d in rows.items():
    ours, peer = dict((r, i) for r, i, _ in d["fp32"]), dict((r, i) for r, i, _ in d["pytorch"])
    ratios = [ours[r] / peer[r] for r in sorted(ours) if r in peer]
    print(f"| {m} | {size} | {batch} | {cell(d['pytorch'])} | {cell(d['fp32'])} | {cell(d['fp16'])} | "
          f"{', '.join(f'{x:.2f}' for x in ratios)} ({statistics.mean(ratios):.2f}) |")
EOF
