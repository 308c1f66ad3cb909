#!/usr/bin/env python3
"""Trains Caffe's LeNet-5 on the bundled MNIST in PyTorch, as a reference for coppice.

Usage (from the repository root, in a venv with torch, numpy and safetensors):
    scripts/torch-lenet5.py [--out runs/torch-lenet5] [--seed 0] [--epochs 10] [--lr 0.01]
        [--batch 64] [--threads 2] [--data datasets/mnist]
The network is conv1 20@5x5 -> max-pool 2x2 -> conv2 50@5x5 -> max-pool 2x2 -> fc1 800->500 ->
ReLU -> fc2 500->10 (Caffe's lenet_train_test.prototxt: no ReLU after the convolutions).
Recipe: SGD with momentum 0.9, weight decay 5e-4 and base learning rate 0.01 (Caffe's), batch 64,
cosine decay of the learning rate to 0 per step over 10 epochs, PyTorch's default initialization,
shuffled every epoch from --seed. (lr 0.05 diverged to NaN within the first epoch: without ReLUs
between them the convolutions and fc1 are close to one linear map.) Inputs normalized
(pixel/255 - 0.1307) / 0.3081. Writes to --out: lenet5.pt (torch.save of the state_dict),
lenet5.safetensors (with the architecture in its metadata) and architecture.json (coppice's
graph description, readable by scripts/torch_graph.py). Prints the final test accuracy.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from torch_graph import accuracy, load_mnist  # scripts/ is on sys.path when run as a script

ARCHITECTURE = {
    "input": {"channels": 1, "height": 28, "width": 28},
    "layers": [
        {"name": "conv1", "op": "conv", "filters": 20, "kernel": [5, 5], "stride": [1, 1], "padding": [0, 0], "bias": True},
        {"name": "pool1", "op": "max_pool", "kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]},
        {"name": "conv2", "op": "conv", "filters": 50, "kernel": [5, 5], "stride": [1, 1], "padding": [0, 0], "bias": True},
        {"name": "pool2", "op": "max_pool", "kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]},
        {"name": "flatten", "op": "flatten"},
        {"name": "fc1", "op": "linear", "units": 500, "bias": True},
        {"name": "relu1", "op": "relu"},
        {"name": "fc2", "op": "linear", "units": 10, "bias": True},
    ],
}


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/torch-lenet5")
    ap.add_argument("--data", default="datasets/mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    xtr, ytr = load_mnist(args.data, "train")
    xte, yte = load_mnist(args.data, "t10k")
    torch.manual_seed(args.seed)
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)  # the shuffle's own stream, apart from the init's

    for epoch in range(1, args.epochs + 1):
        model.train()
        perm, total = torch.randperm(len(xtr), generator=gen), 0.0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            if not math.isfinite(total):
                raise SystemExit(f"the loss diverged in epoch {epoch}; try a smaller --lr")
        correct = accuracy(model, xte, yte)
        print(f"epoch {epoch:2d}  train loss {total / len(xtr):.4f}  test accuracy {correct / len(yte):.4f}"
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)

    os.makedirs(args.out, exist_ok=True)
    state = model.state_dict()
    torch.save(state, os.path.join(args.out, "lenet5.pt"))
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(args.out, "lenet5.safetensors"),
              metadata={"architecture": json.dumps(ARCHITECTURE)})
    with open(os.path.join(args.out, "architecture.json"), "w") as f:
        json.dump(ARCHITECTURE, f, indent=2)
        f.write("\n")
    print(f"test accuracy {correct / len(yte):.4f} ({correct} of {len(yte)})")
    print(f"wall time {time.perf_counter() - start:.1f} s; wrote {args.out}/lenet5.pt, lenet5.safetensors, architecture.json")


if __name__ == "__main__":
    main()
