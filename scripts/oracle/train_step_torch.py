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

--yardstick K also trains the same steps in float32, once as given and K
times with the images nudged by one part in 1e7, and writes to <out>.yardstick
.json, per dumped step, the largest L2 relative error of the state change and
of the loss against float64 among those runs: how far float32 rounding alone
can carry a run (ReLU decisions near zero flip; BatchNorm spreads them).
"""
import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from resnet_torch import build, load_by_name  # noqa: E402


def train(a, names, batches, dump, dt, nudge_seed=None):
    net = build(a.arch, a.classes)
    load_by_name(net, a.model)
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

    start = state()
    gen = torch.Generator().manual_seed(nudge_seed) if nudge_seed is not None else None
    losses, states = [], {}
    for step, b in enumerate(batches, 1):
        x = torch.from_numpy(np.fromfile(b["images"], dtype="<f4").reshape(shape)).double()
        if gen is not None:
            x = x * (1 + 1e-7 * torch.randn(x.shape, generator=gen, dtype=torch.float64))
        q = torch.from_numpy(np.fromfile(b["targets"], dtype="<f4").reshape(shape[0], a.classes))
        opt.zero_grad()
        z = net(x.to(dt))
        loss = -(q.to(dt) * F.log_softmax(z, dim=1)).sum(dim=1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step in dump:
            states[step] = state()
    return start, losses, states


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
    ap.add_argument("--yardstick", type=int, default=-1, help="float32 runs with nudged inputs (0: only the plain one)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    batches = json.load(open(a.batches))
    names = json.load(open(a.names))
    dump = sorted({int(s) for s in a.dump_after.split(",")})
    start, losses, states = train(a, names, batches, dump, torch.float64)
    for step, s in states.items():
        s.astype("<f4").tofile(f"{a.out}.step{step}.bin")
    np.array(losses, dtype="<f4").tofile(f"{a.out}.losses.bin")
    if a.yardstick < 0:
        return 0
    worst = {str(s): {"state": 0.0, "loss": 0.0} for s in dump}
    for k in range(a.yardstick + 1):
        _, l32, s32 = train(a, names, batches, dump, torch.float32, nudge_seed=None if k == 0 else k)
        for s in dump:
            ref, got = states[s] - start, s32[s] - start
            e = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))
            le = abs(l32[s - 1] - losses[s - 1]) / abs(losses[s - 1])
            w = worst[str(s)]
            w["state"], w["loss"] = max(w["state"], e), max(w["loss"], le)
    json.dump(worst, open(f"{a.out}.yardstick.json", "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
