#!/usr/bin/python3
"""Peer for the data-parallel benchmark: PyTorch DistributedDataParallel
(Debian's 1.13, CPU, the gloo backend) doing the same step as ortrain's
split step under mpirun: N processes, each with its own batch and one
intra-op thread by default, gradients all-reduced by DDP during the
backward, SGD with Nesterov momentum 0.9 and weight decay 1e-4 on conv/FC
weights, label smoothing 0.1. Rank 0 prints steps/s, img/s over the global
batch, and the peak RSS of each process.

  torch_ddp.py [--arch resnet50] [--batch 8] [--size 224] [--procs 2]
               [--threads 1] [--iters 8] [--warmup 2]
"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
from resnet_torch import build  # noqa: E402


def worker(rank, a, port, results):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    torch.manual_seed(0)
    net = build(a.arch, a.classes).train()
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    decay = [p for p in ddp.parameters() if p.dim() > 1]
    other = [p for p in ddp.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": other, "weight_decay": 0}],
                          lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch,))
    times = []
    for i in range(a.warmup + a.iters):
        dist.barrier()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(x), y, label_smoothing=0.1).backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    results[rank] = (times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8, help="per process")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    with mp.Manager() as m:
        results = m.dict()
        mp.spawn(worker, args=(a, a.port, results), nprocs=a.procs, join=True)
        times, _ = results[0]
        rss = [results[r][1] for r in range(a.procs)]
    times = sorted(times)
    glob = a.batch * a.procs
    print(f"pytorch {torch.__version__} DDP train step (gloo, {a.procs} processes x {a.threads} threads, fp32): "
          f"{a.arch} batch {glob} at {a.size}, {len(times)} steps: {len(times) / sum(times):.2f} steps/s, "
          f"{glob * len(times) / sum(times):.2f} img/s, median {times[len(times) // 2] * 1e3:.0f} ms/step, "
          f"peak RSS {max(rss)} kB per process")


if __name__ == "__main__":
    main()
