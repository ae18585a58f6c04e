#!/usr/bin/python3
"""Summarizes scripts/parity.sh's results file: per trainer and jitter, the
mean and standard deviation over seeds of the final train loss, validation
top-1 and top-5 (in %) and seconds per epoch, as a Markdown table; then each
PyTorch column against ortrain's: the difference of the mean top-1 and
Welch's t (|t| above about 2.4 at these sample sizes is a difference beyond
seed noise at the 5% level). Only the standard library is used.

  scripts/parity_table.py docs/results/parity.tsv
"""
import collections
import csv
import math
import statistics
import sys


def main(path):
    groups = collections.OrderedDict()
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            groups.setdefault((r["trainer"], r["jitter"]), []).append(r)
    if not groups:
        sys.exit(f"parity_table: {path} holds no runs")

    def col(rows, key, scale=1.0):
        return [float(r[key]) * scale for r in rows]

    def ms(xs, digits=2):
        if len(xs) < 2:
            return f"{xs[0]:.{digits}f}"
        return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"

    print("| trainer | colour jitter | seeds | train loss | val top-1 % | val top-5 % | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for (trainer, jitter), rows in groups.items():
        seeds = ",".join(r["seed"] for r in rows)
        print(f"| {trainer} | {jitter} | {seeds} | {ms(col(rows, 'train_loss'), 4)} | {ms(col(rows, 'val_top1', 100))} | "
              f"{ms(col(rows, 'val_top5', 100))} | {statistics.mean(col(rows, 'epoch_seconds')):.0f} |")
    ours = groups.get(("ortrain", "yiq"))
    if not ours or len(ours) < 2:
        return 0
    a = col(ours, "val_top1", 100)
    print()
    for (trainer, jitter), rows in groups.items():
        if trainer == "ortrain" or len(rows) < 2:
            continue
        b = col(rows, "val_top1", 100)
        d = statistics.mean(a) - statistics.mean(b)
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        t = d / se if se > 0 else float("inf")
        print(f"- ortrain minus {trainer} ({jitter}): top-1 {d:+.2f} points, Welch t = {t:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/parity.tsv"))
