#!/usr/bin/env bash
# coppice against PyTorch on this machine's CPU, in one sitting: PyTorch's reference benchmark
# (../shared/bench/torch_bench.py) and `coppice bench` run alternately, ROUNDS times each, on the
# same networks and data; one table gives both rates per run and the ratio of their medians.
# Absolute rates differ from machine to machine; the ratio is what compares.
#
#   scripts/bench-vs-torch.sh [--rounds N] [--models lenet300,lenet5,vgg,resnet20] [--batches 64,256]
#                             [--optimizers sgd,adam] [--no-inference]
#
# PyTorch comes from a venv (TORCH_VENV, default ${TMPDIR:-/tmp}/torch-venv; see
# ../shared/bench/README.md to make one) and the reference from TORCH_BENCH (default
# ../shared/bench/torch_bench.py next to this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=2
models=lenet300,lenet5
batches=64,256
optimizers=sgd,adam
inference=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --optimizers) optimizers=$2; shift 2 ;;
    --no-inference) inference=0; shift ;;
    *) echo "bench-vs-torch: unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done

venv=${TORCH_VENV:-${TMPDIR:-/tmp}/torch-venv}
torch_bench=${TORCH_BENCH:-../shared/bench/torch_bench.py}
if [ ! -f "$torch_bench" ]; then
  echo "bench-vs-torch: PyTorch's reference benchmark is not at $torch_bench; fix: set TORCH_BENCH to torch_bench.py" >&2
  exit 1
fi
if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
  cat >&2 <<EOF
bench-vs-torch: no PyTorch in $venv; fix: make the venv once (about 3 minutes), as
$(dirname "$torch_bench")/README.md says:
  python3 -m venv "$venv"
  "$venv/bin/pip" install torch==2.15.0 numpy
or point TORCH_VENV at a venv that has torch.
EOF
  exit 1
fi

cargo build --release --quiet -p coppice
coppice=${CARGO_TARGET_DIR:-target}/release/coppice
if [ -n "${CARGO_TARGET_DIR:-}" ]; then coppice="$CARGO_TARGET_DIR/release/coppice"; fi

# Each benchmark in a scheduler group of its own at raised priority, where this user may set
# them: other processes distort 2-thread timings badly.
run() {
  if [ "$(id -u)" -eq 0 ]; then
    setsid --wait bash -c 'echo -20 > /proc/self/autogroup; exec nice -n -20 "$@"' run "$@"
  else
    "$@"
  fi
}

threads=$(nproc)
infer_flag=(); [ "$inference" = 1 ] && infer_flag=(--inference)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds: PyTorch" >&2
  run "$venv/bin/python" "$torch_bench" --threads "$threads" --opts "$optimizers" --models "$models" \
    --batches "$batches" --infer-shapes "" --wait-quiet 0 >"$out/torch-$round.txt"
  echo "round $round of $rounds: coppice" >&2
  run "$coppice" bench --backends flex --models "$models" --batch-sizes "$batches" --optimizers "$optimizers" \
    "${infer_flag[@]}" --warmup 20 --windows 7 --steps 40 >"$out/coppice-$round.txt"
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
simd=AVX2; grep -qw avx512f /proc/cpuinfo && simd=AVX-512
echo
echo "$cpu, $threads cores ($simd); $rounds rounds, alternating; training and inference samples/s"
echo
# One line per (model, phase, batch): PyTorch's and coppice's rate in every round, and the
# ratio of the medians. PyTorch prints markdown rows, coppice one row per measurement.
awk -v rounds="$rounds" '
  function key(model, phase, batch) { return model "|" phase "|" batch }
  FNR == 1 { split(FILENAME, parts, "/"); source = parts[length(parts)]; sub(/-[0-9]+\.txt$/, "", source) }
  source == "torch" && /^\| (lenet|vgg|resnet)/ {
    split($0, f, "|"); for (i in f) gsub(/^ +| +$/, "", f[i])
    phase = (f[3] == "train") ? "train-" f[4] : "infer"
    rate = f[6]; gsub(/,/, "", rate)
    k = key(f[2], phase, f[5]); torch[k] = torch[k] " " rate
    if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  }
  source == "coppice" && /^(train-|infer)/ {
    k = key($3, $1, $4); ours[k] = ours[k] " " $5
    if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  }
  function median(list,   v, m, i, j, t) {
    m = split(list, v, " ")
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  function runs(list,   v, m, i, s) {
    m = split(list, v, " "); s = ""
    for (i = 1; i <= m; i++) s = s (i > 1 ? " / " : "") (v[i] < 10000 ? sprintf("%d", v[i]) : sprintf("%.1fk", v[i] / 1000))
    return s
  }
  END {
    print "| model | phase | batch | PyTorch | coppice | coppice / PyTorch |"
    print "| --- | --- | ---: | ---: | ---: | ---: |"
    for (i = 1; i <= n; i++) {
      split(order[i], f, "|")
      if (!(order[i] in torch) || !(order[i] in ours)) continue
      printf "| %s | %s | %s | %s | %s | %.2fx |\n", f[1], f[2], f[3], runs(torch[order[i]]), runs(ours[order[i]]),
        median(ours[order[i]]) / median(torch[order[i]])
    }
  }
' "$out"/torch-*.txt "$out"/coppice-*.txt
