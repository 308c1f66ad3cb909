#!/usr/bin/env python3
"""Loads `coppice export`'s safetensors file from Python and checks it against the run.

Usage: scripts/check-export.py RUN_DIR   (after `coppice export RUN_DIR`; needs
`pip install safetensors numpy`). Prints every tensor's name, shape and share of zeros, checks
that the non-zero count matches summary.json, and for an MLP recomputes the test accuracy in
NumPy from the exported weights and MNIST's test files, which must match summary.json.
"""
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

run = Path(sys.argv[1])
tensors = load_file(str(run / "export" / "model.safetensors"))
summary = json.loads((run / "summary.json").read_text())
arch = json.loads((run / "export" / "architecture.json").read_text())
for name, value in tensors.items():
    print(f"{name:24} {str(value.shape):14} zeros {float((value == 0).mean()):.4f}")
nonzero = sum(int((v != 0).sum()) for v in tensors.values())
assert nonzero == summary["params_nonzero"], (nonzero, summary["params_nonzero"])
print(f"non-zero parameters: {nonzero} (summary.json agrees)")

linear = [l for l in arch["layers"] if l["op"] == "linear"]
if all(l["op"] in ("flatten", "linear", "relu") for l in arch["layers"]):
    config = (run / "config.toml").read_text()
    data_dir = Path("datasets/mnist")
    def idx(path):
        raw = gzip.open(path).read()
        dims = struct.unpack(">" + "I" * (raw[3]), raw[4 : 4 + 4 * raw[3]])
        return np.frombuffer(raw[4 + 4 * raw[3] :], dtype=np.uint8).reshape(dims)
    images = idx(data_dir / "t10k-images-idx3-ubyte.gz").reshape(10000, -1).astype(np.float32)
    labels = idx(data_dir / "t10k-labels-idx1-ubyte.gz")
    limit = summary["test_samples"]
    x = (images[:limit] / 255.0 - 0.1307) / 0.3081  # the defaults; the bundled configs use them
    for i, layer in enumerate(linear):
        x = x @ tensors[f"{layer['name']}.weight"].T + tensors[f"{layer['name']}.bias"]
        if i < len(linear) - 1:
            x = np.maximum(x, 0.0)
    accuracy = float((x.argmax(1) == labels[:limit]).mean())
    print(f"NumPy test accuracy {accuracy:.4f}, coppice {summary['test_accuracy']:.4f}")
    assert abs(accuracy - summary["test_accuracy"]) < 1e-3
print("ok")
