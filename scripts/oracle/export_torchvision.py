#!/usr/bin/python3
"""Exports a torchvision classifier (random weights) with torch.onnx, as a
"foreign" teacher for the distillation tests:
  export_torchvision.py ARCH CLASSES SIZE OUT.onnx"""
import sys

import torch
import torchvision

arch, classes, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
net = getattr(torchvision.models, arch)(num_classes=classes).eval()
x = torch.randn(2, 3, size, size)
torch.onnx.export(net, x, out, opset_version=17, input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
