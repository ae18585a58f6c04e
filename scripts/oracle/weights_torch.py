#!/usr/bin/python3
"""PyTorch side of the weights tests: files as PyTorch and timm write them,
and logits of the PyTorch module holding given weights.

  weights_torch.py save --arch A --classes K --seed S --out W.pth [--safetensors W.st] [--wrap plain|state_dict|module|fp16]
      random weights with BatchNorm statistics and affine parameters far
      from their init, saved with torch.save (and as safetensors, written
      here from the format's definition: JSON header, raw tensors)
  weights_torch.py logits --arch A --classes K --weights W --input X --shape N,C,H,W --out Y
      loads W (.pth with torch.load(weights_only=True), or .safetensors)
      with load_state_dict(strict=True),
      eval mode, writes the logits as little-endian float32
  weights_torch.py odd --kind K --out F
      files that are not state_dicts: list (a pickled list), dict (a dict
      of no tensors), script (TorchScript), legacy (the pre-1.6 format),
      evil (a state_dict holding an object whose __reduce__ runs
      `touch MARKER` when Python loads it)

The networks are scripts/oracle/resnet_torch.py's: torchvision's resnet50
for resnet50b, the timm-named module for the rest.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from resnet_torch import build  # noqa: E402


def randomized(arch, classes, seed):
    torch.manual_seed(seed)
    net = build(arch, classes)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.75, 1.25)
                m.num_batches_tracked.fill_(seed)
            elif isinstance(m, torch.nn.Linear):
                m.bias.normal_(0, 0.1)
    return net


def write_safetensors(path, state):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in state.items():
        a = t.detach().cpu().contiguous().numpy()
        dtype = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.float64: "F64"}[a.dtype.type]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base, out = 8 + n, {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "F64": "<f8"}[e["dtype"]]
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[base + b:base + end], dtype=dt).reshape(e["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


def cmd_save(a):
    net = randomized(a.arch, a.classes, a.seed)
    state = net.state_dict()
    if a.wrap == "state_dict":  # as timm's and many training scripts' checkpoints
        obj = {"epoch": 7, "arch": a.arch, "state_dict": state, "optimizer": {"lr": 0.1}}
    elif a.wrap == "module":  # as DataParallel's state_dict
        obj = {"module." + k: v for k, v in state.items()}
    elif a.wrap == "fp16":  # half precision, with a transposed (non-contiguous) fc weight
        obj = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        obj["fc.weight"] = obj["fc.weight"].t().contiguous().t()
    else:
        obj = state
    torch.save(obj, a.out)
    if a.safetensors:
        write_safetensors(a.safetensors, state)


def cmd_logits(a):
    torch.set_num_threads(2)
    net = build(a.arch, a.classes)
    if a.weights.endswith(".safetensors"):
        state = read_safetensors(a.weights)
    else:
        state = torch.load(a.weights, weights_only=True)  # PyTorch's safe loader takes our .pth files too
    net.load_state_dict(state, strict=True)
    net.eval()
    shape = [int(s) for s in a.shape.split(",")]
    x = torch.from_numpy(np.fromfile(a.input, dtype="<f4").reshape(shape))
    with torch.no_grad():
        y = net(x)
    y.numpy().astype("<f4").tofile(a.out)


def cmd_odd(a):
    if a.kind == "list":
        torch.save([torch.zeros(2), 3], a.out)
    elif a.kind == "dict":
        torch.save({"epoch": 3, "lr": 0.1}, a.out)
    elif a.kind == "script":
        torch.jit.script(torch.nn.Linear(2, 2)).save(a.out)
    elif a.kind == "legacy":
        torch.save({"w": torch.zeros(2)}, a.out, _use_new_zipfile_serialization=False)
    elif a.kind == "evil":  # loading this in Python runs `touch MARKER`
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch " + a.marker,))
        torch.save({"conv1.weight": torch.zeros(2), "x": Payload()}, a.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("--arch", required=True)
    s.add_argument("--classes", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--out", required=True)
    s.add_argument("--safetensors")
    s.add_argument("--wrap", default="plain", choices=["plain", "state_dict", "module", "fp16"])
    lg = sub.add_parser("logits")
    lg.add_argument("--arch", required=True)
    lg.add_argument("--classes", type=int, required=True)
    lg.add_argument("--weights", required=True)
    lg.add_argument("--input", required=True)
    lg.add_argument("--shape", required=True)
    lg.add_argument("--out", required=True)
    o = sub.add_parser("odd")
    o.add_argument("--kind", required=True, choices=["list", "dict", "script", "legacy", "evil"])
    o.add_argument("--marker", default="/nonexistent/marker")
    o.add_argument("--out", required=True)
    a = ap.parse_args()
    {"save": cmd_save, "logits": cmd_logits, "odd": cmd_odd}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
