#!/usr/bin/python3
"""Peer for the data-pipeline benchmark: torchvision with PIL (Debian's
python3-torchvision), one process on one core, the seed's training pipeline
on the same images as `ortrain bench-data`: decode, RandomResizedCrop,
horizontal flip, ColorJitter(brightness, saturation, hue 0.4), AlexNet PCA
lighting, normalization to a CHW float tensor.

  torch_data.py DIR [SIZE] [IMAGES]
"""
import os
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image

EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


class Lighting:
    def __call__(self, img):
        alpha = torch.randn(3) * 0.1
        return img + (EIGVEC @ (alpha * EIGVAL)).view(3, 1, 1)


def main():
    root, size = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 224
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    torch.set_num_threads(1)
    if os.path.isdir(os.path.join(root, "train")):
        root = os.path.join(root, "train")
    paths = []
    for c in sorted(os.listdir(root)):
        for f in sorted(os.listdir(os.path.join(root, c))):
            paths.append(os.path.join(root, c, f))
    paths = paths[:n]
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                    T.ColorJitter(brightness=0.4, saturation=0.4, hue=0.4), T.ToTensor(), Lighting(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    start = time.perf_counter()
    for p in paths:
        tf(Image.open(p).convert("RGB"))
    el = time.perf_counter() - start
    print(f"torchvision {__import__('torchvision').__version__} with PIL (train transform at {size}), "
          f"{len(paths)} images, 1 process: {len(paths) / el:.1f} img/s")


if __name__ == "__main__":
    main()
