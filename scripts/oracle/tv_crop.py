#!/usr/bin/python3
"""PIL reference for the crop-and-resize of RandomResizedCrop: for each
"path x y w h size" line of BOXES, img.crop((x, y, x+w, y+h)).resize((size,
size), BILINEAR), written as float32 HWC RGB to <out>/<index>.bin.

  tv_crop.py OUT_DIR BOXES"""
import sys

import numpy as np
from PIL import Image


def main():
    out = sys.argv[1]
    for i, line in enumerate(open(sys.argv[2])):
        path, x, y, w, h, s = line.split()
        x, y, w, h, s = int(x), int(y), int(w), int(h), int(s)
        img = Image.open(path).convert("RGB").crop((x, y, x + w, y + h)).resize((s, s), Image.BILINEAR)
        np.asarray(img, dtype=np.float32).astype("<f4").tofile(f"{out}/{i}.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
