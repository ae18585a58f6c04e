#!/usr/bin/python3
"""Runs onnx.checker.check_model(full_check=True) on each model file given.

Prints "ok <path> ir=<v> opset=<v>" per model; exits 1 on the first failure.
Uses Debian's python3-onnx (1.12: checks opsets up to 17).
"""
import sys

import onnx


def main(paths):
    for p in paths:
        m = onnx.load(p)
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception as e:  # report which model failed, in one line
            print(f"FAIL {p}: {str(e).splitlines()[0] if str(e) else e!r}", file=sys.stderr)
            return 1
        ops = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in m.opset_import)
        print(f"ok {p} ir={m.ir_version} opset={ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
