#!/usr/bin/env bash
# Reproduces RESULTS.md: every config in configs/paper/ (or the ones named) as a `coppice sweep`,
# its sweep.csv, per-round table and charts copied to results/<config>/ with the sweep's wall
# time, and every point's config.toml, summary.json, metrics.csv and rounds.csv to
# results/<config>/points/; then the reports that put sweeps side by side (`coppice report
# SWEEP_DIR...`: accuracy against parameters and against inference time, measured while nothing
# else runs) copied to results/<report>/, from the newest sweep of each config under OUT; then
# the tables of RESULTS.md and the README regenerated from them (scripts/results.py).
# Environment: JOBS (runs at a time, default 2), OUT (default runs/paper). On 2 cores the whole
# set takes hours.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-2}
OUT=${OUT:-runs/paper}
cargo build --release
coppice=${CARGO_TARGET_DIR:-target}/release/coppice
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
  # Every point's own files (a few KB each), so that each figure traces back to its run.
  for point in "$sweep_dir"/point-*; do
    kept="results/$name/points/$(basename "$point")"
    mkdir -p "$kept"
    for file in config.toml summary.json metrics.csv rounds.csv; do
      if [ -f "$point/$file" ]; then cp "$point/$file" "$kept/"; fi
    done
  done
  echo "$seconds s with --jobs $JOBS on $(nproc) cores" > "results/$name/wall-time.txt"
done

# Each report: its name, then the configs whose sweeps it puts side by side.
reports=(
  "strategies-lenet300 han-lenet300 global-lenet300 semi-2of4-lenet300 neuron-lenet300 layerwise-lenet300"
  "strategies-lenet5 han-lenet5 li-lenet5 layerwise-lenet5"
  "zhu-gupta zhu-gupta-agp zhu-gupta-iterative zhu-gupta-oneshot"
  "speed-li-vgg li-vgg"
  "speed-resnet20 resnet20"
)
for line in "${reports[@]}"; do
  read -r report names <<< "$line"
  sweeps=()
  for name in $names; do
    newest=$(ls -d "$OUT"/paper-"$name"-sweep-* 2>/dev/null | tail -n 1 || true)
    if [ -z "$newest" ]; then
      echo "== $report: no sweep of $name under $OUT yet; skipped"
      continue 2
    fi
    sweeps+=("$newest")
  done
  echo "== $report"
  report_dir=$("$coppice" report "${sweeps[@]}" --out "$OUT" | tail -n 1)
  mkdir -p "results/$report"
  cp "$report_dir"/tradeoff.csv "$report_dir"/*.svg "results/$report/"
done
python3 scripts/results.py
