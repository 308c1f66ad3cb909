#!/usr/bin/env bash
# The project's speed baseline: training samples/s (forward, backward and SGD step on real MNIST
# batches) for LeNet-300-100 and LeNet-5 at batch 64 and 256 on flex and ndarray, after warm-up,
# median of several windows. Extra arguments go to `coppice bench` (see `coppice bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p coppice -- bench "$@"
