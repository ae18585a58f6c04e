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
    ap.add_argument("--turn-in", metavar="FIFO",
                    help="lockstep with another process: before each step, wait for a byte on this FIFO")
    ap.add_argument("--turn-out", metavar="FIFO", help="lockstep: after each step, write a byte to this FIFO")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the timed steps, profile N more with torch.profiler and print where the time goes")
    a = ap.parse_args()
    if (a.turn_in is None) != (a.turn_out is None):
        ap.error("--turn-in and --turn-out go together")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build(a.arch, a.classes).train()
    decay = [p for p in net.parameters() if p.dim() > 1]
    other = [p for p in net.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": other, "weight_decay": 0}],
                          lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch,))
    # The timed loop stays written out as in every benchmark run in
    # docs/results/bench/history.md, not a call of step() below: the function form once
    # measured slower in two alternated pairs (1830 and 1987 ms against 1608
    # and 1588 ms per step), which PyTorch's later-found spread from one
    # process to the next (12 to 21%) may explain, but the peer must not be
    # handicapped.
    # Lockstep (scripts/bench_train.sh): the turns are taken outside the
    # timed region, as in `ortrain bench-step --turn-in/--turn-out`.
    turn_in = open(a.turn_in, "rb", buffering=0) if a.turn_in else None
    turn_out = open(a.turn_out, "wb", buffering=0) if a.turn_out else None
    times = []
    for i in range(a.warmup + a.iters):
        if turn_in is not None and len(turn_in.read(1)) != 1:
            sys.exit(f"torch_train: {a.turn_in} closed before step {i + 1}")
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
        if turn_out is not None:
            # As long as ortrain waits (its turnGap): the threads that have
            # just finished spinning go idle before the other process steps.
            time.sleep(0.1)
            turn_out.write(b".")

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y, label_smoothing=0.1).backward()
        opt.step()

    times.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if a.profile > 0:  # after the RSS reading: the profiler's memory is not the step's
        profile(step, a.profile)
    print(f"pytorch {torch.__version__} train step (eager, fp32): {a.arch} batch {a.batch} at {a.size}, "
          f"{len(times)} steps: {len(times) / sum(times):.2f} steps/s, {a.batch * len(times) / sum(times):.2f} img/s, "
          f"median {times[len(times) // 2] * 1e3:.0f} ms/step, peak RSS {rss} kB, BLAS {blas_library()}")


def blas_library():
    """The BLAS library this process loaded (PyTorch's fully connected layer
    runs on it; the convolutions run on oneDNN): Debian's reference
    libblas3 unless another provider of libblas.so.3 is installed or put
    first on LD_LIBRARY_PATH (scripts/bench_train.sh, PEER_BLAS)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
    except OSError:
        return "unknown"
    # Debian's reference BLAS is blas/libblas.so.3.*; OpenBLAS loads its
    # libblas.so.3 and libopenblas*.so
    names = sorted({os.path.basename(os.path.realpath(p)) for p in paths if "lapack" not in p})
    return " + ".join(names) or "none loaded"


def profile(step, n):
    """Print each operator's self CPU time over n steps and the shares of
    the convolutions (forward and backward), BatchNorm (forward and
    backward) and the ReLU gradient (threshold_backward)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(n):
            step()
    avg = p.key_averages()
    print(avg.table(sort_by="self_cpu_time_total", row_limit=20))
    total = sum(e.self_cpu_time_total for e in avg)
    groups = {"convolution": ("conv",), "batch norm": ("batch_norm",), "relu gradient": ("threshold_backward",)}
    for label, keys in groups.items():
        t = sum(e.self_cpu_time_total for e in avg if any(k in e.key for k in keys))
        print(f"{label}: {100 * t / total:.1f}% of self CPU time")


if __name__ == "__main__":
    main()
