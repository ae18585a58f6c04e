#!/usr/bin/python3
"""PyTorch autograd (float64) for single ONNX operators: the oracle of the
gradient-rule tests (graphgen/gradrules_test.go).

Reads a JSON spec: {"cases": [{"name", "op", "attrs", "inputs": [{"file",
"shape"}], "dy": {"file", "shape"}, "wrt": [input indices], "out": prefix}]}.
Inputs are raw little-endian float32. For each case it computes the operator
in float64, backpropagates dy, and writes <out>.y.bin and <out>.g<i>.bin
(float32) for every i in wrt.
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load(d):
    return torch.from_numpy(np.fromfile(d["file"], dtype="<f4").reshape(d["shape"]).astype(np.float64))


def pads2d(p):
    # ONNX pads (h_begin, w_begin, h_end, w_end) -> F.pad order (w_b, w_e, h_b, h_e)
    return (p[1], p[3], p[0], p[2])


def conv(a, x, w, b=None):
    p = a.get("pads", [0, 0, 0, 0])
    x = F.pad(x, pads2d(p))
    return F.conv2d(x, w, b, stride=a.get("strides", [1, 1]), dilation=a.get("dilations", [1, 1]),
                    groups=a.get("group", 1))


def symmetric(p):
    if p[0] != p[2] or p[1] != p[3]:
        raise SystemExit(f"pool pads must be symmetric for PyTorch, got {p}")
    return (p[0], p[1])


def gemm(a, A, B, C=None):
    if a.get("transA"):
        A = A.t()
    if a.get("transB"):
        B = B.t()
    y = a.get("alpha", 1.0) * (A @ B)
    if C is not None:
        y = y + a.get("beta", 1.0) * C
    return y


def apply(op, a, xs):
    if op == "Conv":
        return conv(a, *xs)
    if op == "BatchNormTrain":
        return F.batch_norm(xs[0], None, None, xs[1], xs[2], training=True, eps=a["epsilon"])
    if op == "BatchNormalization":
        return F.batch_norm(xs[0], xs[3], xs[4], xs[1], xs[2], training=False, eps=a["epsilon"])
    if op == "Relu":
        return F.relu(xs[0])
    if op == "MaxPool":
        return F.max_pool2d(xs[0], a["kernel_shape"], a.get("strides"), symmetric(a.get("pads", [0] * 4)),
                            ceil_mode=bool(a.get("ceil_mode", 0)))
    if op == "AveragePool":
        return F.avg_pool2d(xs[0], a["kernel_shape"], a.get("strides"), symmetric(a.get("pads", [0] * 4)),
                            ceil_mode=bool(a.get("ceil_mode", 0)),
                            count_include_pad=bool(a.get("count_include_pad", 0)))
    if op == "GlobalAveragePool":
        return xs[0].mean(dim=tuple(range(2, xs[0].dim())), keepdim=True)
    if op == "Gemm":
        return gemm(a, *xs)
    if op == "MatMul":
        return torch.matmul(xs[0], xs[1])
    if op == "Add":
        return xs[0] + xs[1]
    if op == "Sub":
        return xs[0] - xs[1]
    if op == "Mul":
        return xs[0] * xs[1]
    if op == "Div":
        return xs[0] / xs[1]
    if op == "Pow":
        return torch.pow(xs[0], xs[1])
    if op == "Sum":
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y
    unary = {"Neg": torch.neg, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
             "Reciprocal": torch.reciprocal, "Abs": torch.abs, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
             "Identity": lambda t: t * 1.0}
    if op in unary:
        return unary[op](xs[0])
    if op == "CastHalf":
        return xs[0].half().double()
    if op == "Softmax":
        return torch.softmax(xs[0], dim=a["axis"])
    if op == "LogSoftmax":
        return torch.log_softmax(xs[0], dim=a["axis"])
    if op in ("ReduceSum", "ReduceMean", "ReduceSumSquare"):
        x = xs[0] * xs[0] if op == "ReduceSumSquare" else xs[0]
        f = torch.mean if op == "ReduceMean" else torch.sum
        return f(x, dim=tuple(a["axes"]), keepdim=bool(a["keepdims"]))
    if op == "Flatten":
        ax = a["axis"]
        s = xs[0].shape
        return xs[0].reshape(math.prod(s[:ax]), math.prod(s[ax:]))
    if op == "Reshape":
        return xs[0].reshape(a["shape"])
    if op == "Squeeze":
        y = xs[0]
        for ax in sorted(a["axes"], reverse=True):
            y = y.squeeze(ax)
        return y
    if op == "Unsqueeze":
        y = xs[0]
        for ax in sorted(a["axes"]):
            y = y.unsqueeze(ax)
        return y
    if op == "Transpose":
        return xs[0].permute(a["perm"])
    if op == "Expand":
        return xs[0].expand(a["shape"])
    if op == "Where":
        cond = torch.tensor(a["cond"], dtype=torch.bool).reshape(a["cond_shape"])
        return torch.where(cond, xs[0], xs[1])
    if op == "Concat":
        return torch.cat(xs, dim=a["axis"])
    raise SystemExit(f"oracle: unknown op {op}")


def main(spec_path):
    torch.set_num_threads(2)
    spec = json.load(open(spec_path))
    for c in spec["cases"]:
        xs = [load(d) for d in c["inputs"]]
        for i in c["wrt"]:
            xs[i].requires_grad_(True)
        y = apply(c["op"], c.get("attrs") or {}, xs)
        dy = load(c["dy"])
        if tuple(dy.shape) != tuple(y.shape):
            raise SystemExit(f"{c['name']}: dy {tuple(dy.shape)} but output {tuple(y.shape)}")
        y.backward(dy)
        y.detach().float().numpy().astype("<f4").tofile(c["out"] + ".y.bin")
        for i in c["wrt"]:
            xs[i].grad.float().numpy().astype("<f4").tofile(c["out"] + f".g{i}.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
