#!/usr/bin/env bash
# Weight-pruning experiments on LeNet-300-100 (the figures in the README): Han et al.'s per-layer
# iterative pruning, and global magnitude pruning to 95 % and 98 % sparsity. Each run trains its
# dense network first with the same seed, so the three start from the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p coppice
coppice() { cargo run --release --quiet -p coppice -- "$@"; }
coppice run configs/lenet300-mnist-weight.toml --plain
coppice run configs/lenet300-mnist-global.toml --plain
coppice run configs/lenet300-mnist-global.toml --plain --set prune.target=0.98 --set name=lenet300-mnist-global98
for run in runs/lenet300-mnist-weight-* runs/lenet300-mnist-global-* runs/lenet300-mnist-global98-*; do
  python3 - "$run" <<'PY'
import json, sys
s = json.load(open(sys.argv[1] + "/summary.json"))
print(f"{sys.argv[1]}: sparsity {s['sparsity']:.4f}, test accuracy {s['test_accuracy']:.4f} "
      f"(dense {s['dense_test_accuracy']:.4f}), compression {s['compression_ratio']:.1f}x")
PY
done
