#!/usr/bin/python3
"""PyTorch reference for ortrain's ResNets (the numerical oracle of the tests).

Loads every initializer of an ortrain ONNX model *by name* into a PyTorch
module, runs a float32 input through it in eval mode (float64 with --double)
and writes the logits as raw little-endian float32.

resnet50 / resnet50b use torchvision's resnet50 (which is ResNet-B, "v1.5");
for resnet50 the stride of each downsampling bottleneck is moved back to the
first 1x1 conv, as in the original ResNet. Every other name uses the module
below, written to mirror timm's ResNet (deep stem "conv1.0..6", average-pool
shortcut "downsample.0/1/2"). load_state_dict(strict) proves the names match.
"""
import argparse
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample, stride_on_3x3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        s = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + s)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample, stride_on_3x3):
        super().__init__()
        s1, s3 = (1, stride) if stride_on_3x3 else (stride, 1)
        self.conv1 = nn.Conv2d(cin, planes, 1, s1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        s = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + s)


DEPTHS = {18: (Basic, [2, 2, 2, 2]), 34: (Basic, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3]),
          101: (Bottleneck, [3, 4, 23, 3]), 152: (Bottleneck, [3, 8, 36, 3])}


class ResNet(nn.Module):
    """ResNet with the Bag of Tricks variants: '' (original), b, c, d."""

    def __init__(self, depth, variant, classes):
        super().__init__()
        block, layers = DEPTHS[depth]
        deep, avg, s3 = variant in "cd" and variant != "", variant == "d", variant != ""
        if deep:
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False))
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, n in enumerate(layers):
            planes, stride = 64 << i, (1 if i == 0 else 2)
            blocks = []
            for j in range(n):
                st = stride if j == 0 else 1
                cout = planes * block.expansion
                ds = None
                if st != 1 or cin != cout:
                    if avg:
                        pool = nn.AvgPool2d(2, st, ceil_mode=True, count_include_pad=False) if st > 1 else nn.Identity()
                        ds = nn.Sequential(pool, nn.Conv2d(cin, cout, 1, 1, bias=False), nn.BatchNorm2d(cout))
                    else:
                        ds = nn.Sequential(nn.Conv2d(cin, cout, 1, st, bias=False), nn.BatchNorm2d(cout))
                blocks.append(block(cin, planes, st, ds, s3))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1))


def build(arch, classes):
    import torchvision
    name = arch[len("resnet"):]
    variant = name[-1] if name[-1] in "bcd" else ""
    depth = int(name.rstrip("bcd"))
    if depth == 50 and variant in ("", "b"):
        net = torchvision.models.resnet50(num_classes=classes)
        if variant == "":  # original ResNet: stride on the first 1x1 conv
            for layer in (net.layer2, net.layer3, net.layer4):
                layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
        return net
    return ResNet(depth, variant, classes)


def load_by_name(net, model_path):
    m = onnx.load(model_path)
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer
             if not i.name.startswith("const")}
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise SystemExit(f"names differ: missing in ONNX {missing[:5]}, unknown to PyTorch {unexpected[:5]}")
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise SystemExit(f"{k}: ONNX shape {tuple(v.shape)}, PyTorch {tuple(own[k].shape)}")
    net.load_state_dict(state, strict=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--shape", required=True, help="N,C,H,W")
    ap.add_argument("--out", required=True)
    ap.add_argument("--double", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    net = build(a.arch, a.classes)
    load_by_name(net, a.model)
    net.eval()
    shape = [int(s) for s in a.shape.split(",")]
    x = torch.from_numpy(np.fromfile(a.input, dtype="<f4").reshape(shape))
    if a.double:
        net, x = net.double(), x.double()
    with torch.no_grad():
        y = net(x)
    y.float().numpy().astype("<f4").tofile(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
