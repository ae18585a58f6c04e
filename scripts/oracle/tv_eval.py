#!/usr/bin/python3
"""torchvision reference for the validation transform: for each image file,
PIL decode -> convert("RGB") -> Resize(round(size / crop_pct), interpolation)
-> CenterCrop(size) -> pixels on the 0-255 scale, normalized by mean and std
(0-255 scale; the seed's by default), written as float32 CHW to
<out>/<index>.bin.

  tv_eval.py [--crop-pct 0.875] [--interpolation bilinear|bicubic]
             [--mean R,G,B] [--std R,G,B] SIZE OUT_DIR IMAGE...
"""
import argparse
import sys

import numpy as np
import torchvision.transforms as T
from PIL import Image


def triple(s):
    return np.array([float(v) for v in s.split(",")], dtype=np.float32).reshape(3, 1, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crop-pct", type=float, default=224 / 256)
    ap.add_argument("--interpolation", default="bilinear", choices=["bilinear", "bicubic"])
    ap.add_argument("--mean", type=triple, default=triple("123.68,116.779,103.939"))
    ap.add_argument("--std", type=triple, default=triple("58.393,57.12,57.375"))
    ap.add_argument("size", type=int)
    ap.add_argument("out")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[a.interpolation]
    tf = T.Compose([T.Resize(round(a.size / a.crop_pct), interpolation=mode), T.CenterCrop(a.size)])
    for i, path in enumerate(a.images):
        img = tf(Image.open(path).convert("RGB"))
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)
        ((x - a.mean) / a.std).astype("<f4").tofile(f"{a.out}/{i}.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
