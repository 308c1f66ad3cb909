#!/usr/bin/env bash
# Reproduces RESULTS.md: every config in configs/paper/ (or the ones named) as a `coppice sweep`,
# its sweep.csv, per-round table and charts copied to results/<config>/ with the sweep's wall
# time, then the tables of RESULTS.md and the README regenerated from them
# (scripts/results.py). Environment: JOBS (runs at a time, default 2), OUT (default runs/paper).
# On 2 cores the whole set takes hours; the lottery-ticket sweep alone about an hour.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-2}
OUT=${OUT:-runs/paper}
cargo build --release
coppice=target/release/coppice
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(configs/paper/*.toml)
fi
for config in "${configs[@]}"; do
  name=$(basename "$config" .toml)
  echo "== $name"
  start=$(date +%s)
  sweep_dir=$("$coppice" sweep "$config" --jobs "$JOBS" --out "$OUT" --plain | tail -n 1)
  seconds=$(($(date +%s) - start))
  mkdir -p "results/$name"
  cp "$sweep_dir"/sweep*.csv "$sweep_dir"/sweep*.svg "results/$name/"
  echo "$seconds s with --jobs $JOBS on $(nproc) cores" > "results/$name/wall-time.txt"
done
python3 scripts/results.py
