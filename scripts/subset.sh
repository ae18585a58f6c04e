#!/usr/bin/env bash
# Makes an image folder of symbolic links to the first TRAIN and VAL images
# (in sorted order) of each class of an ImageFolder dataset; nothing is copied.
#
#   scripts/subset.sh SRC DST TRAIN_PER_CLASS VAL_PER_CLASS
set -euo pipefail
src=$(cd "$1" && pwd) dst=$2 ntrain=$3 nval=$4
rm -rf "$dst"
for split in train val; do
  n=$ntrain
  [ "$split" = val ] && n=$nval
  for dir in "$src/$split"/*/; do
    c=$(basename "$dir")
    mkdir -p "$dst/$split/$c"
    files=("$dir"*)
    for f in "${files[@]:0:$n}"; do
      ln -s "$f" "$dst/$split/$c/$(basename "$f")"
    done
  done
done
