#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build coppice with the wgpu and cuda backends, then compare
# them with flex on LeNet-300-100 and LeNet-5 at batch 256 and print the tables.
# burn's cuda backend downloads an LLVM bundle while it builds: without network access that
# build fails, and the script goes on with wgpu only, saying so.
# Environment: EPOCHS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS=${EPOCHS:-2}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "nvidia-smi: not found"
features=wgpu,cuda
backends=flex,wgpu,cuda
if ! cargo build --release --features "$features"; then
  echo "gpu-check: the cuda build failed (see above); comparing flex and wgpu only" >&2
  features=wgpu
  backends=flex,wgpu
  cargo build --release --features "$features"
fi
for config in configs/lenet300-mnist.toml configs/lenet5-mnist.toml; do
  echo "== $config: $backends, $EPOCHS epochs at batch 256"
  cargo run --release --features "$features" -- compare "$config" --backends "$backends" \
    --epochs "$EPOCHS" --set train.batch_size=256 --out runs/gpu-check
done
