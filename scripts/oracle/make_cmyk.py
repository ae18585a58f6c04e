#!/usr/bin/python3
"""Writes a CMYK JPEG (what PIL saves: Adobe-marked, inverted CMYK) from an
image file, for the decoder tests: make_cmyk.py SRC DST."""
import sys

from PIL import Image

Image.open(sys.argv[1]).convert("CMYK").save(sys.argv[2], quality=95)
