#!/usr/bin/python3
"""Summarize ONNX Runtime profiles written by `ortrain bench-step --profile P`
(or any session with profiling on): kernel time per operator type and per
node, per run, averaged over the runs after the first --skip ones (warm-up
runs allocate and are slower).

  scripts/profile_summary.py PROFILE.json [OTHER.json] [--skip 2]
      [--ops Conv,MatMul] [--top 20]

With one profile: the run time, the kernel time and each operator type's
milliseconds per run and share of the kernel time. With two: both side by
side and the difference (second minus first), for comparing two builds.
Then the kernel time of the nodes that ran on one thread only (no use of
ONNX Runtime's intra-op thread pool), per operator type.
--top N adds the N slowest nodes of the (last) profile, restricted to
--ops when given, with their input shapes and, for convolutions and
matrix products, the multiply-accumulates per second they reach.
Only the standard library is used.
"""
import argparse
import collections
import json
import math
import sys


def load(path, skip):
    try:
        with open(path) as f:
            events = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"profile_summary: {path}: {e}")
    if not isinstance(events, list):
        sys.exit(f"profile_summary: {path}: not an ONNX Runtime profile (a JSON list of events)")
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) <= skip:
        sys.exit(f"profile_summary: {path}: {len(runs)} runs, need more than --skip {skip}")
    runs = runs[skip:]
    start = runs[0]["ts"]
    n = len(runs)
    ops, nodes, info = collections.Counter(), collections.Counter(), {}
    # Kernel time of nodes that did not hand work to the intra-op thread
    # pool (ONNX Runtime records a block size for each parallel section),
    # so ran on one core.
    serial = collections.Counter()

    def shapes(args, key):
        return [list(s.values())[0] for s in args.get(key, [])]

    for e in events:
        if e.get("cat") != "Node" or e.get("ts", 0) < start or not e["name"].endswith("_kernel_time"):
            continue
        a = e.get("args", {})
        op = a.get("op_name", "?")
        name = e["name"][: -len("_kernel_time")]
        ops[op] += e["dur"] / n / 1000
        nodes[name] += e["dur"] / n / 1000
        main_thread = a.get("thread_scheduling_stats", {}).get("main_thread")
        if main_thread is not None and not main_thread.get("block_size"):
            serial[op] += e["dur"] / n / 1000
        info[name] = (op, shapes(a, "input_type_shape"), shapes(a, "output_type_shape"))
    run_ms = sum(r["dur"] for r in runs) / n / 1000
    return run_ms, ops, nodes, info, n, serial


def macs(op, ins, outs):
    """Multiply-accumulates of a convolution or matrix product, or None."""
    if len(ins) < 2 or not outs:
        return None
    if op in ("Conv", "FusedConv"):
        return math.prod(outs[0]) * math.prod(ins[1][1:])
    if op == "ConvTranspose":
        return math.prod(ins[0]) * math.prod(ins[1][1:])
    if op in ("MatMul", "FusedMatMul", "Gemm") and len(ins[0]) >= 2 and len(outs[0]) >= 2:
        # The contracted size is the dimension of A's last two that is not
        # the output's row count (A may be transposed).
        a0, a1 = ins[0][-2:]
        k = a1 if a0 == outs[0][-2] else a0
        return math.prod(outs[0]) * k
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profiles", nargs="+")
    ap.add_argument("--skip", type=int, default=2, help="first runs left out (default 2)")
    ap.add_argument("--ops", default="", help="comma-separated operator types for --top")
    ap.add_argument("--top", type=int, default=0, help="list the N slowest nodes")
    a = ap.parse_args()
    if len(a.profiles) > 2:
        ap.error("one or two profiles")
    if a.skip < 0 or a.top < 0:
        ap.error("--skip and --top must not be negative")
    ps = [load(p, a.skip) for p in a.profiles]
    print("runs averaged: " + ", ".join(str(p[4]) for p in ps))
    print("run ms:        " + "  ".join(f"{p[0]:8.1f}" for p in ps))
    kernel = [sum(p[1].values()) for p in ps]
    print("kernel ms:     " + "  ".join(f"{k:8.1f}" for k in kernel))
    keys = sorted(set().union(*(p[1] for p in ps)), key=lambda k: -max(p[1].get(k, 0) for p in ps))
    for k in keys:
        cols = "  ".join(f"{p[1].get(k, 0):8.1f} {100 * p[1].get(k, 0) / total:5.1f}%" for p, total in zip(ps, kernel))
        diff = f"  {ps[1][1].get(k, 0) - ps[0][1].get(k, 0):+8.1f}" if len(ps) == 2 else ""
        print(f"{k:22s} {cols}{diff}")
    for path, p in zip(a.profiles, ps):
        serial = p[5]
        if serial:
            big = ", ".join(f"{k} {v:.1f}" for k, v in serial.most_common() if v >= 1)
            print(f"\non one thread (no intra-op thread pool), {path}: {sum(serial.values()):.1f} ms per run: {big}")
    if a.top:
        want = set(filter(None, a.ops.split(",")))
        _, _, nodes, info, _, _ = ps[-1]
        rows = [(t, n) for n, t in nodes.items() if not want or info[n][0] in want]
        rows.sort(reverse=True)
        print(f"\nslowest nodes ({a.profiles[-1]}):")
        for t, n in rows[: a.top]:
            op, ins, outs = info[n]
            m = macs(op, ins, outs)
            rate = f" {m / t / 1e6:6.1f} GMAC/s" if m and t > 0 else ""
            print(f"{t:8.2f} ms {op:16s} {n[:64]:64s} {ins}{rate}")


if __name__ == "__main__":
    main()
