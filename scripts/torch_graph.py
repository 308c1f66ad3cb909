#!/usr/bin/env python3
"""Builds a PyTorch module from coppice's graph description and evaluates a coppice export.

Usage (from the repository root, in a venv with torch, numpy and safetensors):
    scripts/torch_graph.py EXPORT_DIR [--data datasets/mnist]
    scripts/torch_graph.py --weights FILE.pt|FILE.safetensors --architecture architecture.json
EXPORT_DIR holds `model.safetensors` and `architecture.json` (what `coppice export RUN_DIR`
writes). `--architecture` may be left out for a safetensors file whose metadata has an
`architecture` entry. Loads the weights with load_state_dict(strict=True), evaluates the 10,000
MNIST test images in eval mode and prints the test accuracy and the parameter count.

As a module: `build(architecture: dict) -> nn.Module`. A layer named `a.b.c` becomes the
submodule at that path, so state_dict keys are `a.b.c.weight` etc.; parameter-free ops
(relu, pools, flatten, dropout, add) have no module and run functionally in the forward.
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _pool_out(size, k, s, p):  # floor mode, as PyTorch's default
    return (size + 2 * p - k) // s + 1


class Graph(nn.Module):
    """The network of one coppice `architecture` object (see the module docstring)."""

    def __init__(self, architecture):
        super().__init__()
        inp = architecture["input"]
        self.input_shape = (inp["channels"], inp["height"], inp["width"])
        self.steps = []  # (name, op, spec, input names); plain data, not part of the state_dict
        shapes = {"input": self.input_shape}  # per-sample shape: (C, H, W) or (features,)
        prev = "input"
        for spec in architecture["layers"]:
            name, op = spec["name"], spec["op"]
            if name in shapes:
                raise ValueError(f"layer name {name!r} is used twice (or is 'input')")
            inputs = spec.get("inputs") or [prev]  # absent or empty: the layer before
            for i in inputs:
                if i not in shapes:
                    raise ValueError(f"layer {name!r} reads {i!r}, which no earlier layer makes")
            shape = shapes[inputs[0]]
            if op != "add" and len(inputs) != 1:
                raise ValueError(f"layer {name!r} ({op}) must have exactly one input, has {inputs}")
            if op == "conv":
                if len(shape) != 3:
                    raise ValueError(f"conv {name!r} needs an image input, gets shape {shape}")
                if spec.get("groups", 1) != 1:
                    raise ValueError(f"conv {name!r}: only groups = 1 is supported")
                k, s, p = _pair(spec["kernel"]), _pair(spec.get("stride", 1)), _pair(spec.get("padding", 0))
                self._put(name, nn.Conv2d(shape[0], spec["filters"], k, s, p, bias=spec.get("bias", True)))
                shape = (spec["filters"], _pool_out(shape[1], k[0], s[0], p[0]), _pool_out(shape[2], k[1], s[1], p[1]))
            elif op == "linear":
                # A linear layer on an image reads it flattened (C*H*W features, NCHW order).
                features = int(np.prod(shape))
                self._put(name, nn.Linear(features, spec["units"], bias=spec.get("bias", True)))
                shape = (spec["units"],)
            elif op == "batch_norm":
                cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
                self._put(name, cls(shape[0], eps=spec.get("epsilon", 1e-5), momentum=spec.get("momentum", 0.1)))
            elif op in ("max_pool", "avg_pool"):
                if len(shape) != 3:
                    raise ValueError(f"{op} {name!r} needs an image input, gets shape {shape}")
                k = _pair(spec["kernel"])
                s, p = _pair(spec.get("stride", k)), _pair(spec.get("padding", 0))
                spec = dict(spec, kernel=k, stride=s, padding=p)
                shape = (shape[0], _pool_out(shape[1], k[0], s[0], p[0]), _pool_out(shape[2], k[1], s[1], p[1]))
            elif op in ("global_avg_pool", "flatten"):
                shape = (shape[0],) if op == "global_avg_pool" else (int(np.prod(shape)),)
            elif op == "add":
                if len(inputs) < 2:
                    raise ValueError(f"add {name!r} needs 2 or more inputs, has {inputs}")
                for i in inputs:
                    if shapes[i] != shape:
                        raise ValueError(f"add {name!r}: {i!r} has shape {shapes[i]}, {inputs[0]!r} {shape}")
            elif op not in ("relu", "dropout"):
                raise ValueError(f"layer {name!r}: unknown op {op!r}")
            if min(shape) <= 0:
                raise ValueError(f"layer {name!r} ({op}) leaves an empty shape {shape}")
            shapes[name] = shape
            self.steps.append((name, op, spec, inputs))
            prev = name
        self.output_shape = shapes[prev]
        # Drop values as soon as their last reader has run (keeps a ResNet's memory flat).
        last_use = {}
        for idx, (_, _, _, inputs) in enumerate(self.steps):
            for i in inputs:
                last_use[i] = idx
        self._frees = [[i for i in dict.fromkeys(inputs) if last_use[i] == idx and i != "input"]
                       for idx, (_, _, _, inputs) in enumerate(self.steps)]

    def _put(self, path, module):
        """Registers `module` at the dotted `path`, creating empty parent modules as needed."""
        *parents, leaf = path.split(".")
        parent = self
        for part in parents:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        if leaf in parent._modules:
            raise ValueError(f"module path {path!r} is already taken")
        parent.add_module(leaf, module)

    def forward(self, x):
        values = {"input": x}
        out = x
        for (name, op, spec, inputs), frees in zip(self.steps, self._frees):
            a = values[inputs[0]]
            if op in ("conv", "batch_norm"):
                out = self.get_submodule(name)(a)
            elif op == "linear":
                out = self.get_submodule(name)(a.flatten(1) if a.dim() > 2 else a)
            elif op == "relu":
                out = F.relu(a)
            elif op == "max_pool":
                out = F.max_pool2d(a, spec["kernel"], spec["stride"], spec["padding"])
            elif op == "avg_pool":
                out = F.avg_pool2d(a, spec["kernel"], spec["stride"], spec["padding"])  # count_include_pad
            elif op == "global_avg_pool":
                out = a.mean((2, 3))
            elif op == "flatten":
                out = a.flatten(1)
            elif op == "dropout":
                out = F.dropout(a, spec.get("prob", 0.5), self.training)
            elif op == "add":
                out = values[inputs[0]]
                for i in inputs[1:]:
                    out = out + values[i]
            for i in frees:
                del values[i]
            values[name] = out
        return out


def build(architecture):
    """nn.Module for a coppice architecture dict (accepts `{"architecture": {...}}` too)."""
    architecture = architecture.get("architecture", architecture)
    if "layers" not in architecture or "input" not in architecture:
        raise ValueError(f"not a graph description (no `input` and `layers`; has {sorted(architecture)})")
    return Graph(architecture)


def load_weights(path):
    """State dict from a .safetensors or torch.save file; also the safetensors `architecture`
    metadata entry as a dict (or None)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        arch = meta.get("architecture")
        return load_file(path), (json.loads(arch) if arch else None)
    return torch.load(path, map_location="cpu", weights_only=True), None


def load_into(model, state):
    """load_state_dict(strict=True), with the missing / unexpected keys and shapes spelled out."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)}, network {tuple(own[k].shape)}"
              for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        lines = ["the weights do not fit the architecture:"]
        lines += [f"  missing from the file: {k} {tuple(own[k].shape)}" for k in missing]
        lines += [f"  not in the network:    {k} {tuple(state[k].shape)}" for k in unexpected]
        lines += [f"  shape differs:         {s}" for s in shapes]
        raise ValueError("\n".join(lines))
    # coppice's export has no `num_batches_tracked`. BatchNorm's loader fills it in (with 0) only
    # when the dict carries no module version (a plain dict, as safetensors gives); a torch.save'd
    # state_dict carries version 2 in `_metadata` and strict loading then fails, so add it here.
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    model.load_state_dict(state, strict=True)


def load_idx(path):
    """An IDX (MNIST) file, gzipped, as a numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root, split):
    """(images N,1,28,28 float32 normalized as coppice does, labels int64) of `train` or `t10k`."""
    x = load_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz")).astype(np.float32)
    y = load_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    x = (x / 255.0 - 0.1307) / 0.3081
    return torch.from_numpy(x).unsqueeze(1).contiguous(), torch.from_numpy(y)


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    """Number of correct predictions, in eval mode."""
    model.eval()
    return sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir", nargs="?", help="holds model.safetensors and architecture.json")
    ap.add_argument("--weights", help="a .pt state_dict or a .safetensors file")
    ap.add_argument("--architecture", help="coppice architecture.json")
    ap.add_argument("--data", default="datasets/mnist")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.export_dir:
        weights = args.weights or os.path.join(args.export_dir, "model.safetensors")
        arch_path = args.architecture or os.path.join(args.export_dir, "architecture.json")
    elif args.weights:
        weights, arch_path = args.weights, args.architecture
    else:
        ap.error("give EXPORT_DIR or --weights FILE")
    torch.set_num_threads(args.threads)

    state, meta_arch = load_weights(weights)
    if arch_path:
        with open(arch_path) as f:
            arch = json.load(f)
    elif meta_arch is not None:
        arch = meta_arch
    else:
        ap.error(f"{weights} has no `architecture` metadata; give --architecture")
    try:
        model = build(arch)
        load_into(model, state)
    except ValueError as e:
        sys.exit(f"{weights}: {e}")
    if model.input_shape != (1, 28, 28):
        sys.exit(f"the network takes {model.input_shape}, MNIST is (1, 28, 28)")
    x, y = load_mnist(args.data, "t10k")
    correct = accuracy(model, x, y)
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    print(f"test accuracy {correct / len(y):.4f} ({correct} of {len(y)})")
    with_stats = f"; {params + stats:,} with BatchNorm running statistics" if stats else ""
    print(f"parameters {params:,} ({nonzero:,} non-zero{with_stats})")


if __name__ == "__main__":
    main()
