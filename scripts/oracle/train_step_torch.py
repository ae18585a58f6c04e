#!/usr/bin/python3
"""PyTorch reference for ortrain's train step (the whole-step oracle).

Builds the named ResNet (scripts/oracle/resnet_torch.py), loads a whole
training state by name (--names: a JSON list of parameters,
"momentum_buffer/<param>" and running statistics; --init: their float32
values concatenated in that order), then trains S steps in training mode:
soft-target cross-entropy (plus, with --kd-temperature, the distillation
term as ortrain weighs it: w * hard + (1 - w) * T^2 * CE(softmax(r/T),
softmax(z/T))), SGD(momentum, nesterov=True) with weight decay only on conv
and FC weights when --no-bias-decay, BatchNorm momentum 0.1 (unbiased running
variance), as torch.optim and torch.nn do.

Each dtype of --dtypes (float64, float32) trains its own copy from the same
state on the same batches. After each step listed in --dump-after it writes
every named tensor concatenated as float32 to <out>.<dtype>.step<k>.bin, the
losses of all steps (total, then hard and soft with distillation) to
<out>.<dtype>.losses.bin and, with --bn-names (a JSON list of BatchNorm
module names), the first step's output of each of them concatenated to
<out>.<dtype>.bn.bin as float64.

--decisions DIR_PATTERN makes the run take the ReLU and MaxPool decisions
of another implementation instead of its own: DIR_PATTERN % step names a
folder with shapes.json ({"relu": [shape...], "maxpool": [shape...]}),
relu_<i>.bin (uint8 masks, in execution order) and maxpool_<i>.bin (int64
flat indices over the whole input tensor, ONNX Runtime's convention). ReLU
becomes x * mask and max pooling a gather, so the runs differ only by the
rounding of continuous operations, and can be compared strictly even where
an activation within rounding of zero would flip.
"""
import argparse
import copy
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from resnet_torch import build  # noqa: E402


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
    for _, mod in list(net.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(mod, child_name, MaskedReLU(dec))
            elif isinstance(child, torch.nn.MaxPool2d):
                setattr(mod, child_name, MaskedMaxPool(dec))


def load_state(net, names, path):
    """Loads parameters and running statistics by name (strictly, like
    load_state_dict(strict=True) without num_batches_tracked); returns the
    momentum buffers by parameter name."""
    own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    flat = np.fromfile(path, dtype="<f4")
    state, buffers, off = {}, {}, 0
    params = dict(net.named_parameters())
    for n in names:
        key = n[len("momentum_buffer/"):] if n.startswith("momentum_buffer/") else n
        if key not in own:
            raise SystemExit(f"{n}: unknown to PyTorch's {type(net).__name__}")
        size = own[key].numel()
        t = torch.from_numpy(flat[off:off + size].copy()).reshape(own[key].shape)
        off += size
        (buffers if n.startswith("momentum_buffer/") else state)[key] = t
    if off != flat.size:
        raise SystemExit(f"{path}: {flat.size} values, the names take {off}")
    missing = [k for k in own if k not in state]
    if missing:
        raise SystemExit(f"state misses {missing[:5]}")
    net.load_state_dict(state, strict=False)
    return {params[k]: v for k, v in buffers.items()}


def train(a, net0, buffers0, names, batches, dump, dt, bn_names):
    net = copy.deepcopy(net0)
    dec = None
    if a.decisions:
        dec = Decisions()
        use_decisions(net, dec)
    net = net.to(dt).train()
    decay, no_decay = [], []
    index = {id(p): i for i, p in enumerate(net0.parameters())}
    for p in net.parameters():
        (decay if (p.dim() > 1 or not a.no_bias_decay) else no_decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=a.momentum, nesterov=True)
    by_index = {index[id(p)]: b for p, b in buffers0.items()}
    for i, p in enumerate(net.parameters()):
        if i in by_index:
            opt.state[p]["momentum_buffer"] = by_index[i].to(dt).clone()
    shape = [int(s) for s in a.shape.split(",")]
    params, buffers = dict(net.named_parameters()), dict(net.named_buffers())
    bn_out = {}
    modules = dict(net.named_modules())

    def keep(name):
        def hook(module, inputs, output):
            bn_out[name] = output.detach().clone()  # returns None: the output stays as it is
        return hook

    hooks = [modules[n].register_forward_hook(keep(n)) for n in bn_names]

    def state():
        parts = []
        for n in names:
            if n.startswith("momentum_buffer/"):
                t = opt.state[params[n[len("momentum_buffer/"):]]]["momentum_buffer"]
            elif n in params:
                t = params[n]
            else:
                t = buffers[n]
            parts.append(t.detach().reshape(-1).double().numpy())
        return np.concatenate(parts)

    def read(path, *shp):
        return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shp)).to(dt)

    losses, states = [], {}
    for step, b in enumerate(batches, 1):
        x = read(b["images"], *shape)
        q = read(b["targets"], shape[0], a.classes)
        opt.zero_grad()
        if dec is not None:
            dec.load(a.decisions % step)
        z = net(x)
        if dec is not None and (dec.relu or dec.pool):
            raise SystemExit(f"step {step}: {len(dec.relu)} ReLU and {len(dec.pool)} MaxPool decisions left unused")
        hard = -(q * F.log_softmax(z, dim=1)).sum(dim=1).mean()
        loss, parts = hard, [hard]
        if a.kd_temperature:
            t, w = a.kd_temperature, a.kd_hard_weight
            p = torch.softmax(read(b["teacher"], shape[0], a.classes) / t, dim=1)
            soft = t * t * -(p * F.log_softmax(z / t, dim=1)).sum(dim=1).mean()
            loss, parts = w * hard + (1 - w) * soft, [hard, soft]
        loss.backward()
        opt.step()
        losses.append([loss.item()] + ([x.item() for x in parts] if a.kd_temperature else []))
        if step in dump:
            states[step] = state()
        for h in hooks:
            h.remove()
        hooks = []
    bn = np.concatenate([bn_out[n].reshape(-1).double().numpy() for n in bn_names]) if bn_names else None
    return losses, states, bn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--names", required=True, help="JSON list of state names (loaded from --init, dumped after steps)")
    ap.add_argument("--init", required=True, help="float32 values of --names, concatenated")
    ap.add_argument("--batches", required=True, help="JSON list of {images, targets[, teacher]} files")
    ap.add_argument("--shape", required=True, help="N,C,H,W")
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--momentum", type=float, required=True)
    ap.add_argument("--wd", type=float, required=True)
    ap.add_argument("--no-bias-decay", action="store_true")
    ap.add_argument("--kd-temperature", type=float, default=0)
    ap.add_argument("--kd-hard-weight", type=float, default=0.5)
    ap.add_argument("--dump-after", required=True, help="comma-separated step numbers (1-based)")
    ap.add_argument("--dtypes", default="float64", help="comma-separated: float64, float32")
    ap.add_argument("--bn-names", help="JSON list of BatchNorm modules whose first-step outputs to write")
    ap.add_argument("--out", required=True)
    ap.add_argument("--decisions", help="folder pattern with the decisions of each step (%%d: the step)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    batches = json.load(open(a.batches))
    names = json.load(open(a.names))
    bn_names = json.load(open(a.bn_names)) if a.bn_names else []
    dump = sorted({int(s) for s in a.dump_after.split(",")})
    net = build(a.arch, a.classes)
    buffers = load_state(net, names, a.init)
    for name in a.dtypes.split(","):
        dt = {"float64": torch.float64, "float32": torch.float32}[name]
        losses, states, bn = train(a, net, buffers, names, batches, dump, dt, bn_names)
        for step, s in states.items():
            s.astype("<f4").tofile(f"{a.out}.{name}.step{step}.bin")
        np.array(losses, dtype="<f4").reshape(-1).tofile(f"{a.out}.{name}.losses.bin")
        if bn is not None:
            bn.astype("<f8").tofile(f"{a.out}.{name}.bn.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
