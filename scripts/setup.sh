#!/usr/bin/env bash
# Installs everything ortrain needs on Debian 12 with Go: the ONNX Runtime
# shared library and the Debian packages the tools and tests use. Idempotent:
# a second run checks and does nothing (a second or two).
#
#   scripts/setup.sh            # library + Debian packages
#   scripts/setup.sh --lib-only # only the ONNX Runtime library (root only to install npm if missing)
#
# The library is libonnxruntime.so.1 of ONNX Runtime 1.24.1 for Linux x64, as
# shipped inside the npm package onnxruntime-node@1.24.1
# (bin/napi-v6/linux/x64/), checked against a pinned sha256. It goes to
# ${XDG_DATA_HOME:-~/.local/share}/ortrain/onnxruntime-1.24.1/, where the
# runtime package looks by default ($ORTRAIN_ORT_LIB or --ort-lib override it).
set -euo pipefail

ORT_VERSION=1.24.1
ORT_SHA256=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
# python3-onnx, python3-torch, python3-torchvision: the numerical oracle of the
# tests (never a runtime dependency); dataset-fashion-mnist: the demo data.
# libturbojpeg0-dev: the JPEG decoder the data pipeline links (cgo).
# openmpi-bin, libopenmpi-dev: data-parallel training (go build -tags mpi).
DEB_PACKAGES=(libturbojpeg0-dev python3-onnx python3-torch python3-torchvision dataset-fashion-mnist openmpi-bin libopenmpi-dev)

lib_only=0
for a in "$@"; do
  case "$a" in
    --lib-only) lib_only=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $a" >&2; exit 2 ;;
  esac
done

log() { echo "setup: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_ort() {
  local dir="${XDG_DATA_HOME:-$HOME/.local/share}/ortrain/onnxruntime-${ORT_VERSION}"
  local lib="$dir/libonnxruntime.so.1"
  if [ -f "$lib" ] && echo "${ORT_SHA256}  $lib" | sha256sum --check --status; then
    log "ONNX Runtime ${ORT_VERSION} present at $lib"
    return
  fi
  if ! command -v npm >/dev/null; then
    log "npm is needed to fetch ONNX Runtime; installing Debian's npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  log "fetching onnxruntime-node@${ORT_VERSION} from the npm registry"
  (cd "$tmp" && npm pack --silent "onnxruntime-node@${ORT_VERSION}" >/dev/null)
  tar -xzf "$tmp/onnxruntime-node-${ORT_VERSION}.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  local got
  got=$(sha256sum "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | cut -d' ' -f1)
  if [ "$got" != "$ORT_SHA256" ]; then
    log "sha256 mismatch for libonnxruntime.so.1: got $got, want $ORT_SHA256"
    exit 1
  fi
  mkdir -p "$dir"
  install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
  mv -f "$lib.tmp" "$lib"
  log "installed ONNX Runtime ${ORT_VERSION} at $lib"
}

install_debs() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages present: ${DEB_PACKAGES[*]}"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_ort
[ "$lib_only" -eq 1 ] || install_debs
