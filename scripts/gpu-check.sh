#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build coppice with the wgpu and cuda backends, then compare
# them with flex on LeNet-300-100 and LeNet-5 at batch 256 and print the tables.
# The cuda feature needs the CUDA toolkit at build time (cudarc reads its version).
# Environment: FEATURES (default wgpu,cuda), BACKENDS (default flex,wgpu,cuda), EPOCHS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

FEATURES=${FEATURES:-wgpu,cuda}
BACKENDS=${BACKENDS:-flex,wgpu,cuda}
EPOCHS=${EPOCHS:-2}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "nvidia-smi: not found"
cargo build --release --features "$FEATURES"
for config in configs/lenet300-mnist.toml configs/lenet5-mnist.toml; do
  echo "== $config: $BACKENDS, $EPOCHS epochs at batch 256"
  cargo run --release --features "$FEATURES" -- compare "$config" --backends "$BACKENDS" \
    --epochs "$EPOCHS" --set train.batch_size=256 --out runs/gpu-check
done
