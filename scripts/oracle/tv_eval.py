#!/usr/bin/python3
"""torchvision reference for the validation transform: for each image file,
PIL decode -> convert("RGB") -> Resize(round(size*256/224)) -> CenterCrop(size)
-> pixels on the 0-255 scale, normalized by the seed's mean and std, written
as float32 CHW to <out>/<index>.bin.

  tv_eval.py SIZE OUT_DIR IMAGE...
"""
import sys

import numpy as np
import torchvision.transforms as T
from PIL import Image

MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([58.393, 57.12, 57.375], dtype=np.float32).reshape(3, 1, 1)


def main():
    size, out = int(sys.argv[1]), sys.argv[2]
    tf = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size)])
    for i, path in enumerate(sys.argv[3:]):
        img = tf(Image.open(path).convert("RGB"))
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)
        ((x - MEAN) / STD).astype("<f4").tofile(f"{out}/{i}.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
