#!/usr/bin/env python3
"""PyTorch's dense forward pass of a coppice export, for `coppice bench --sparse`.

Usage: torch-infer.py DIR BATCHES, where DIR holds `model.safetensors` and `architecture.json`
(`coppice export RUN_DIR`) and BATCHES is e.g. 1,64,1000. Prints [[batch, ms], ...]: the median
milliseconds of a forward pass under torch.inference_mode(), with as many threads as cores.
"""
import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

directory, batches = Path(sys.argv[1]), [int(b) for b in sys.argv[2].split(",")]
arch = json.loads((directory / "architecture.json").read_text())
state = load_file(str(directory / "model.safetensors"))
torch.set_num_threads(os.cpu_count())
nn = torch.nn

if arch["kind"] == "mlp":
    widths = [arch["inputs"], *arch["hidden"], arch["classes"]]
    layers = [nn.Flatten()]
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    names = {f"fc.{i}": 1 + 2 * i for i in range(len(widths) - 1)}
    shape = (1, 1, arch["inputs"])
elif arch["kind"] == "lenet5":
    c, h, w = arch["channels"], arch["height"], arch["width"]
    ph, pw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
    layers = [nn.Conv2d(c, arch["conv1"], 5), nn.MaxPool2d(2), nn.Conv2d(arch["conv1"], arch["conv2"], 5),
              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(arch["conv2"] * ph * pw, arch["fc1"]), nn.ReLU(),
              nn.Linear(arch["fc1"], arch["classes"])]
    names = {"conv1": 0, "conv2": 2, "fc1": 5, "fc2": 7}
    shape = (c, h, w)
else:
    sys.exit(f"no PyTorch twin for a {arch['kind']} network")

model = nn.Sequential(*layers)
model.load_state_dict({f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in state.items()})
model.eval()
results = []
with torch.inference_mode():
    for batch in batches:
        x = torch.randn(batch, *shape)
        for _ in range(3):
            model(x)
        repeats = 401 if batch == 1 else 101 if batch <= 100 else 21
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
        results.append([batch, sorted(times)[len(times) // 2] * 1e3])
print(json.dumps(results))
