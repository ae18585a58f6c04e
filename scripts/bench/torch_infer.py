#!/usr/bin/python3
"""Peer for the inference benchmark: loads an ortrain ResNet's weights by name
into PyTorch (see scripts/oracle/resnet_torch.py), exports the same network
with torch.onnx.export, and times PyTorch eager inference.

Prints one line: "<label>: batch B, R runs: X img/s (mean), median M ms ...".
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from resnet_torch import build, load_by_name  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="ortrain ONNX model whose weights to load")
    ap.add_argument("--arch", required=True)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--export", help="write torch.onnx.export of the same network here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net = build(a.arch, a.classes)
    load_by_name(net, a.model)
    net.eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    if a.export:
        torch.onnx.export(net, x, a.export, opset_version=17, input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}})
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t = time.perf_counter()
            net(x)
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
    times.sort()
    print(f"pytorch {torch.__version__} eager: batch {a.batch}, {len(times)} runs: "
          f"{a.batch * len(times) / sum(times):.1f} img/s (mean), median {times[len(times) // 2] * 1e3:.1f} ms "
          f"per batch, min {times[0] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
