#!/usr/bin/env python3
"""Writes the tiny PyTorch test fixture of coppice's model import to crates/runner/tests/fixtures/.

Usage (from the repository root, in a venv with torch and safetensors):
    scripts/make-torch-fixture.py [--out crates/runner/tests/fixtures]
The network takes 1x6x6 images: conv1 (3 filters 3x3, padding 1, no bias) -> bn1 -> relu1 ->
pool1 (max 2x2) -> flatten (27 features) -> fc (27 -> 4). Files:
    tiny.pt                  torch.save(state_dict) (zip format), keys conv1.weight, bn1.*, fc.*
    tiny.safetensors         the same tensors, num_batches_tracked included as in PyTorch
    tiny-sequential.pt       the same weights as features.{0,1}.* and classifier.1.* (nn.Sequential
                             names), for testing a name map
    tiny.json                {"input_shape", "input", "logits"}: a fixed input and its eval-mode
                             logits, floats written exactly (the f32 values as Python reprs)
    tiny-architecture.json   coppice's graph description of the network
Then checks that scripts/torch_graph.py's build() with tiny.pt reproduces the logits.
"""
import argparse
import json
import os

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

import torch_graph  # scripts/ is on sys.path when run as a script

ARCHITECTURE = {
    "input": {"channels": 1, "height": 6, "width": 6},
    "layers": [
        {"name": "conv1", "op": "conv", "filters": 3, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "bias": False},
        {"name": "bn1", "op": "batch_norm", "epsilon": 1e-5, "momentum": 0.1},
        {"name": "relu1", "op": "relu"},
        {"name": "pool1", "op": "max_pool", "kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]},
        {"name": "flatten", "op": "flatten"},
        {"name": "fc", "op": "linear", "units": 4, "bias": True},
    ],
}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(27, 4)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return self.fc(x.flatten(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="crates/runner/tests/fixtures")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Tiny()
    # Running statistics far from BN's initial 0 / 1 (shifted, scaled data), and gamma / beta far
    # from 1 / 0, so an importer that ignores any of them gets different logits.
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(torch.randn(8, 1, 6, 6) * 3.0 + 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.normal_(0.0, 0.5)
    model.eval()
    x = torch.linspace(-1.0, 1.0, 72).reshape(2, 1, 6, 6)
    with torch.no_grad():
        logits = model(x)

    os.makedirs(args.out, exist_ok=True)
    path = lambda name: os.path.join(args.out, name)
    state = model.state_dict()  # conv1.weight, bn1.{weight,bias,running_mean,running_var,num_batches_tracked}, fc.*
    torch.save(state, path("tiny.pt"))
    save_file(dict(state), path("tiny.safetensors"))

    sequential = nn.Module()
    sequential.features = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
    sequential.classifier = nn.Sequential(nn.Flatten(), nn.Linear(27, 4))
    rename = {"conv1": "features.0", "bn1": "features.1", "fc": "classifier.1"}
    sequential.load_state_dict({rename[k.split(".")[0]] + k[k.index("."):]: v for k, v in state.items()}, strict=True)
    torch.save(sequential.state_dict(), path("tiny-sequential.pt"))

    # json writes Python floats with repr: the exact double of each f32, which parses back to it.
    with open(path("tiny.json"), "w") as f:
        json.dump({"input_shape": list(x.shape), "input": x.flatten().tolist(), "logits": logits.flatten().tolist()}, f)
        f.write("\n")
    with open(path("tiny-architecture.json"), "w") as f:
        json.dump(ARCHITECTURE, f, indent=2)
        f.write("\n")

    # The check: the graph builder, fed the files just written, gives the same logits.
    with open(path("tiny-architecture.json")) as f:
        graph = torch_graph.build(json.load(f))
    with open(path("tiny.json")) as f:
        fixture = json.load(f)
    for weights in (torch.load(path("tiny.pt"), weights_only=True), load_file(path("tiny.safetensors"))):
        graph.load_state_dict(weights, strict=True)
        graph.eval()
        with torch.no_grad():
            got = graph(torch.tensor(fixture["input"]).reshape(fixture["input_shape"])).flatten()
        diff = float((got - torch.tensor(fixture["logits"])).abs().max())
        assert diff == 0.0, f"torch_graph differs from the fixture's logits by {diff}"
    for name in ("tiny.pt", "tiny.safetensors", "tiny-sequential.pt", "tiny.json", "tiny-architecture.json"):
        print(f"{path(name)}: {os.path.getsize(path(name))} bytes")
    print(f"logits {logits.tolist()}; torch_graph reproduces them exactly from tiny.pt and tiny.safetensors")


if __name__ == "__main__":
    main()
