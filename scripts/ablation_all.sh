#!/usr/bin/env bash
# Every ablation row with seeds 1 and 2 (issue "first run and ablations"),
# skipping the (row, seed) pairs already in RESULTS: the two seeds of a row
# run side by side, one core each (THREADS=1), which on the 2-core machine
# does about 1.4x the work of one run on both cores (docs/results.md). The
# distillation teacher is trained first, alone, when a distillation row is
# reached. Interrupted runs continue where they stopped when this is run
# again.
#
#   scripts/ablation_all.sh [DATA]
# The body is one block, read whole before it runs: editing this file while
# a long run executes it cannot change what that run does.
{
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/imagenette}
results=${RESULTS:-docs/results/ablation.tsv}
mkdir -p runs/ablation
# plot_finished redraws docs/results/ablation-top1.png from the runs the
# results file lists (not the teacher, nor a run still in progress), one
# curve per row: the mean over its seeds (runs sharing a label).
plot_finished() {
  local runs=() d
  while read -r d; do
    [ -d "${d#*=}" ] && runs+=("$d")
  done < <(awk -F'\t' 'NR > 1 && $1 != "teacher" && !seen[$1 FS $2]++ { print $1 "=runs/ablation/" $1 "-s" $2 }' "$results")
  if [ "${#runs[@]}" -gt 0 ]; then
    bin/ortrain compare -o docs/results/ablation-top1.png "${runs[@]}"
  fi
}
done_already() { [ -f "$results" ] && awk -F'\t' -v r="$1" -v s="$2" '$1 == r && $2 == s { f = 1 } END { exit !f }' "$results"; }
for row in baseline efficient resnet50b resnet50c resnet50d cosine smoothing distill mixup distill-mixup; do
  if [ "$row" = distill ] || [ "$row" = distill-mixup ]; then
    scripts/ablation.sh teacher 1 "$data"
  fi
  pids=()
  for seed in 1 2; do
    if ! done_already "$row" "$seed"; then
      THREADS=1 scripts/ablation.sh "$row" "$seed" "$data" > "runs/ablation/$row-s$seed.log" 2>&1 &
      pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
  scripts/results_table.py "$results" --update docs/results.md
  plot_finished
done
exit
}
