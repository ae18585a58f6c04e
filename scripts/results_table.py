#!/usr/bin/python3
"""Markdown table of the ablation rows (docs/results.md) from the results
file scripts/ablation.sh appends to: per row, the number of seeds, top-1 and
top-5 as mean and min-max over the seeds, the minutes a run took, and the
paper's ResNet-50 top-1 on ImageNet (../shared/SEED.md) beside it.

    scripts/results_table.py [RESULTS.tsv] [--update docs/results.md]

With --update, the table replaces what stands between the lines
"<!-- ablation table -->" and "<!-- /ablation table -->" of that file.
"""
import csv
import os
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
    ("teacher", "the distillation rows' teacher (by default ResNet-18-D, 3x the epochs, `--recipe tricks`, batch 128)", "-"),
]


def cell(vals):
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return "%.2f" % m
    return "%.2f (%.2f-%.2f)" % (m, min(vals), max(vals))


def table(path):
    runs = {}
    if os.path.exists(path):
        with open(path) as f:
            for r in csv.DictReader(f, delimiter="\t"):
                runs.setdefault(r["row"], []).append(r)
    out = []
    print = out.append
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
    return "\n".join(out) + "\n"


def main():
    args = sys.argv[1:]
    update = None
    if "--update" in args:
        i = args.index("--update")
        update = args[i + 1]
        del args[i:i + 2]
    t = table(args[0] if args else "docs/results/ablation.tsv")
    if update is None:
        sys.stdout.write(t)
        return
    doc = open(update).read()
    begin, end = "<!-- ablation table -->\n", "<!-- /ablation table -->"
    if begin not in doc or end not in doc:
        sys.exit("results_table: %s has no %r ... %r lines" % (update, begin.strip(), end))
    head, rest = doc.split(begin, 1)
    tail = rest.split(end, 1)[1]
    open(update, "w").write(head + begin + t + end + tail)


if __name__ == "__main__":
    main()
