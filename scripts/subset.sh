#!/usr/bin/env bash
# Makes an image folder of symbolic links to the first TRAIN and VAL images
# of each class of an ImageFolder dataset (nothing is copied).
#
#   scripts/subset.sh SRC DST TRAIN_PER_CLASS VAL_PER_CLASS
set -euo pipefail
src=$1 dst=$2 ntrain=$3 nval=$4
rm -rf "$dst"
for split in train val; do
  n=$ntrain
  [ "$split" = val ] && n=$nval
  for c in $(ls "$src/$split"); do
    mkdir -p "$dst/$split/$c"
    ls "$src/$split/$c" | head -n "$n" | while read -r f; do
      ln -s "$(cd "$src/$split/$c" && pwd)/$f" "$dst/$split/$c/$f"
    done
  done
done
