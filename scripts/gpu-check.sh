#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build coppice with the wgpu and cuda backends, then compare
# them with flex on LeNet-300-100 and LeNet-5 at batch 256 and print the tables.
# burn's cuda backend downloads an LLVM bundle while it builds: without network access that
# build fails, and the script goes on with wgpu only, saying so.
# With two or more GPUs, it then checks data-parallel training against one GPU. Last, it runs
# the paper sweeps that a GPU makes cheaper (RESULTS.md, Wall time) on the GPU backend and
# prints their tables and wall times.
# Environment: EPOCHS (default 2); PAPER, the configs/paper sweeps to run (default
# "li-vgg resnet20"; empty: none).
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

# Data-parallel training: with two or more GPUs, the same weight-pruning run on one GPU and on
# two (burn-train's multi-device strategy) must give the same metrics.csv and rounds.csv, all
# but the seconds column (an MLP: no BatchNorm, whose batch statistics are per device).
gpus=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || echo 0)
backend=${backends##*,}
if [ "$gpus" -ge 2 ]; then
  echo "== data-parallel on $backend:0,$backend:1 against $backend:0"
  rm -rf runs/gpu-check/devices-*
  for devices in "$backend:0" "$backend:0,$backend:1"; do
    cargo run --release --features "$features" -- run configs/lenet300-mnist-global.toml --plain \
      --devices "$devices" --set train.epochs=2 --set prune.retrain_epochs=1 --run-dir "runs/gpu-check/devices-${devices//[:,]/-}"
  done
  for table in metrics.csv rounds.csv; do
    python3 - "runs/gpu-check/devices-$backend-0/$table" "runs/gpu-check/devices-$backend-0-$backend-1/$table" <<'PY'
import csv, sys
one, two = ([row for row in csv.DictReader(open(path))] for path in sys.argv[1:])
worst = 0.0
for a, b in zip(one, two):
    for key, value in a.items():
        if key == "seconds":
            continue
        try:
            x, y = float(value), float(b[key])
        except ValueError:
            assert value == b[key], (key, value, b[key])
            continue
        worst = max(worst, abs(x - y) / max(abs(x), 1e-6))
verdict = "agree" if len(one) == len(two) and worst <= 1e-3 else "DIFFER"
print(f"gpu-check: {sys.argv[1].rsplit('/', 1)[-1]}: one and two devices {verdict} (largest relative difference {worst:.2e})")
PY
  done
else
  echo "gpu-check: $gpus GPU(s): the data-parallel comparison needs two"
fi

# The paper sweeps a GPU makes cheaper: the same configs and seeds as on the CPU, on the GPU.
for name in ${PAPER-li-vgg resnet20}; do
  echo "== configs/paper/$name.toml as a sweep on $backend"
  start=$(date +%s)
  sweep_dir=$(cargo run --release --features "$features" -- sweep "configs/paper/$name.toml" --backend "$backend" \
    --jobs 1 --out runs/gpu-check --plain | tail -n 1)
  echo "gpu-check: $name: $(($(date +%s) - start)) s on $backend"
  cat "$sweep_dir/sweep.csv"
done
