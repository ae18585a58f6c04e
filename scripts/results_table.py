#!/usr/bin/python3
"""Markdown table of the ablation rows (docs/results.md) from the results
file scripts/ablation.sh appends to: per row, the number of seeds, top-1 and
top-5 as mean and min-max over the seeds, the minutes a run took, and the
paper's ResNet-50 top-1 on ImageNet (../shared/SEED.md) beside it.

    scripts/results_table.py [docs/results/ablation.tsv]
"""
import csv
import sys

ROWS = [  # (row, what it adds, paper top-1)
    ("baseline", "seed pipeline, step decay, NAG, batch 64", "75.87"),
    ("efficient", "+ batch 128 (linear scaling), warmup, zero-gamma, no-bias-decay, FP16", "76.21"),
    ("resnet50b", "efficient, ResNet-50-B", "76.66"),
    ("resnet50c", "efficient, ResNet-50-C", "76.87"),
    ("resnet50d", "efficient, ResNet-50-D", "77.16"),
    ("cosine", "ResNet-50-D + cosine decay", "77.91"),
    ("smoothing", "+ label smoothing", "78.31"),
    ("distill", "+ distillation (no mixup)", "78.67"),
    ("mixup", "+ mixup (no distillation)", "79.15"),
    ("distill-mixup", "+ distillation with mixup", "79.29"),
]


def cell(vals):
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return "%.2f" % m
    return "%.2f (%.2f-%.2f)" % (m, min(vals), max(vals))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "docs/results/ablation.tsv"
    runs = {}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            runs.setdefault(r["row"], []).append(r)
    print("| row | what changes | seeds | top-1 % | top-5 % | minutes per run | paper top-1 (ImageNet) |")
    print("|---|---|---|---|---|---|---|")
    for row, what, paper in ROWS:
        rs = runs.get(row, [])
        t1 = [100 * float(r["val_top1"]) for r in rs]
        t5 = [100 * float(r["val_top5"]) for r in rs]
        mins = [float(r["minutes"]) for r in rs]
        seeds = ",".join(sorted(r["seed"] for r in rs)) or "not run yet"
        print("| %s | %s | %s | %s | %s | %s | %s |" % (row, what, seeds, cell(t1), cell(t5),
              "%.0f" % (sum(mins) / len(mins)) if mins else "-", paper))


if __name__ == "__main__":
    main()
