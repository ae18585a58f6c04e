#!/usr/bin/python3
"""PyTorch reference for ortrain's train step (the whole-step oracle).

Loads an ortrain ResNet's initial weights by name (scripts/oracle/
resnet_torch.py), then trains S steps in float64 in training mode: soft-target
cross-entropy, SGD(momentum, nesterov=True) with weight decay only on conv and
FC weights when --no-bias-decay, BatchNorm momentum 0.1 (unbiased running
variance), as torch.optim and torch.nn do. After each step listed in
--dump-after it writes every tensor named in --names (parameters,
"momentum_buffer/<param>", running statistics) concatenated as float32 to
<out>.step<k>.bin, and the losses of all steps to <out>.losses.bin.

--decisions DIR_PATTERN makes the run take the ReLU and MaxPool decisions
of another implementation instead of its own: DIR_PATTERN % step names a
folder with shapes.json ({"relu": [shape...], "maxpool": [shape...]}),
relu_<i>.bin (uint8 masks, in execution order) and maxpool_<i>.bin (int64
flat indices over the whole input tensor, ONNX Runtime's convention). ReLU
becomes x * mask and max pooling a gather, so the two runs differ only by the
rounding of continuous operations, and can be compared strictly even where
an activation within rounding of zero would flip.
"""
import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from resnet_torch import build, load_by_name  # noqa: E402


class Decisions:
    """Feeds recorded decisions to MaskedReLU and MaskedMaxPool in order."""

    def __init__(self):
        self.relu, self.pool = [], []

    def load(self, folder):
        shapes = json.load(open(f"{folder}/shapes.json"))
        self.relu = [torch.from_numpy(np.fromfile(f"{folder}/relu_{i}.bin", dtype=np.uint8).reshape(s).astype(bool))
                     for i, s in enumerate(shapes["relu"])]
        self.pool = [torch.from_numpy(np.fromfile(f"{folder}/maxpool_{i}.bin", dtype="<i8").reshape(s))
                     for i, s in enumerate(shapes["maxpool"])]

    def next_relu(self, x):
        m = self.relu.pop(0)
        if tuple(m.shape) != tuple(x.shape):
            raise SystemExit(f"decision mask {tuple(m.shape)} does not fit ReLU input {tuple(x.shape)}")
        return x * m.to(x.dtype)

    def next_pool(self, x):
        idx = self.pool.pop(0)
        return x.reshape(-1)[idx.reshape(-1)].reshape(idx.shape)


class MaskedReLU(torch.nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, x):
        return self.dec.next_relu(x)


class MaskedMaxPool(torch.nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, x):
        return self.dec.next_pool(x)


def use_decisions(net, dec):
    for name, mod in list(net.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(mod, child_name, MaskedReLU(dec))
            elif isinstance(child, torch.nn.MaxPool2d):
                setattr(mod, child_name, MaskedMaxPool(dec))


def train(a, names, batches, dump, dt, decisions=None):
    net = build(a.arch, a.classes)
    load_by_name(net, a.model)
    dec = None
    if decisions:
        dec = Decisions()
        use_decisions(net, dec)
    net = net.to(dt).train()
    decay, no_decay = [], []
    for _, p in net.named_parameters():
        (decay if (p.dim() > 1 or not a.no_bias_decay) else no_decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=a.momentum, nesterov=True)
    shape = [int(s) for s in a.shape.split(",")]
    params, buffers = dict(net.named_parameters()), dict(net.named_buffers())

    def state():
        parts = []
        for n in names:
            if n.startswith("momentum_buffer/"):
                st = opt.state.get(params[n[len("momentum_buffer/"):]], {})
                t = st.get("momentum_buffer", torch.zeros_like(params[n[len("momentum_buffer/"):]]))
            elif n in params:
                t = params[n]
            else:
                t = buffers[n]
            parts.append(t.detach().reshape(-1).double().numpy())
        return np.concatenate(parts)

    losses, states = [], {}
    for step, b in enumerate(batches, 1):
        x = torch.from_numpy(np.fromfile(b["images"], dtype="<f4").reshape(shape)).double()
        q = torch.from_numpy(np.fromfile(b["targets"], dtype="<f4").reshape(shape[0], a.classes))
        opt.zero_grad()
        if dec is not None:
            dec.load(decisions % step)
        z = net(x.to(dt))
        if dec is not None and (dec.relu or dec.pool):
            raise SystemExit(f"step {step}: {len(dec.relu)} ReLU and {len(dec.pool)} MaxPool decisions left unused")
        loss = -(q.to(dt) * F.log_softmax(z, dim=1)).sum(dim=1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step in dump:
            states[step] = state()
    return losses, states


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--batches", required=True, help="JSON list of {images, targets} files")
    ap.add_argument("--shape", required=True, help="N,C,H,W")
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--momentum", type=float, required=True)
    ap.add_argument("--wd", type=float, required=True)
    ap.add_argument("--no-bias-decay", action="store_true")
    ap.add_argument("--names", required=True, help="JSON list of state names to dump")
    ap.add_argument("--dump-after", required=True, help="comma-separated step numbers (1-based)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--decisions", help="folder pattern with the decisions of each step (%%d: the step)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    batches = json.load(open(a.batches))
    names = json.load(open(a.names))
    dump = sorted({int(s) for s in a.dump_after.split(",")})
    losses, states = train(a, names, batches, dump, torch.float64, decisions=a.decisions)
    for step, s in states.items():
        s.astype("<f4").tofile(f"{a.out}.step{step}.bin")
    np.array(losses, dtype="<f4").tofile(f"{a.out}.losses.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
