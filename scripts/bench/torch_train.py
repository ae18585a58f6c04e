#!/usr/bin/python3
"""Peer for the train-step benchmark: PyTorch (Debian's 1.13, CPU) doing the
same step as ortrain's train-step graph: the same ResNet in training mode,
soft-target cross-entropy (label smoothing 0.1), backward, SGD with Nesterov
momentum 0.9 and weight decay 1e-4 on conv/FC weights. Prints steps/s, img/s
and the peak RSS of the process.
"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from resnet_torch import build  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build(a.arch, a.classes).train()
    decay = [p for p in net.parameters() if p.dim() > 1]
    other = [p for p in net.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": other, "weight_decay": 0}],
                          lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch,))
    times = []
    for i in range(a.warmup + a.iters):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"pytorch {torch.__version__} train step (eager, fp32): {a.arch} batch {a.batch} at {a.size}, "
          f"{len(times)} steps: {len(times) / sum(times):.2f} steps/s, {a.batch * len(times) / sum(times):.1f} img/s, "
          f"median {times[len(times) // 2] * 1e3:.0f} ms/step, peak RSS {rss} kB")


if __name__ == "__main__":
    main()
