#!/usr/bin/env python3
"""Regenerates the measured tables of RESULTS.md and the README from results/<config>/.

A table sits between `<!-- results:CONFIG -->` and `<!-- /results -->` (from sweep.csv: test
error and accuracy, mean and standard deviation over seeds), `<!-- rounds:CONFIG -->` and
`<!-- /rounds -->` (from sweep-rounds.csv, round by round), `<!-- tradeoff:REPORT -->` and
`<!-- /tradeoff -->` (from a `coppice report` over sweeps: accuracy, parameters and measured
time per method) or `<!-- lines:readme -->` / `<!-- lines:wall-times -->` and `<!-- /lines -->`
(the README's results table, one line per method below, and every sweep's wall time, from the
same files), or `<!-- lines:sparse-vs-dense -->` (Zhu & Gupta's large sparse networks against small
dense ones of as many parameters). `<!-- seeds:CONFIG -->` and `<!-- /seeds -->` hold a sweep's
points seed by seed (from results/CONFIG/points/), the dense and the final test accuracy of each
run and their paired difference; `<!-- compressed:CONFIG -->` and `<!-- /compressed -->` a Deep
Compression sweep's points (accuracy at each stage and the compressed file's bytes, from each
point's summary.json and rounds.csv); `<!-- scratch:CONFIG -->` and `<!-- /scratch -->` a sweep
over `prune.scratch`, fine-tuned against Scratch-E and Scratch-B seed by seed (the fine-tuned
network is each run's last pruning round); `<!-- export:CONFIG -->` and `<!-- /export -->` seed
0's output of `coppice export --format compressed` from results/CONFIG/compressed.txt. Nothing in those blocks is kept by hand.
Standard library only.
"""
import csv
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
METRIC_COLUMNS = {"runs", "failed"}


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def grid_keys(table, suffixes=("_mean", "_std")):
    keys = []
    for key in table[0].keys():
        if key in METRIC_COLUMNS or key.endswith(suffixes) or key == "round":
            continue
        keys.append(key)
    return keys


def finite(value):
    return value not in (None, "", "NaN", "nan")


def pm(mean, std, scale=100.0, digits=2):
    return f"{float(mean) * scale:.{digits}f} ± {float(std) * scale:.{digits}f}"


def results_table(name):
    table = rows(ROOT / "results" / name / "sweep.csv")
    keys = grid_keys(table)
    # Sweeps run before the accuracy before retraining was recorded have none.
    before = any(finite(row.get("pruned_test_accuracy_mean")) for row in table)
    header = keys + [
        "seeds",
        "dense error (%)",
        "test error (%)",
        "test accuracy (%)",
        *(["before fine-tuning (%)"] if before else []),
        "weights left (%)",
        "non-zero parameters",
        "compression",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table:
        error = pm(1 - float(row["test_accuracy_mean"]), row["test_accuracy_std"])
        dense = row.get("dense_test_accuracy_mean")
        dense = pm(1 - float(dense), row["dense_test_accuracy_std"]) if finite(dense) else "-"
        accuracy = pm(row["test_accuracy_mean"], row["test_accuracy_std"])
        sparsity = row.get("sparsity_mean")
        # Neuron pruning removes weights instead of zeroing them: no sparsity, fewer parameters,
        # which the parameter column shows.
        zeroed = finite(sparsity) and float(sparsity) > 0
        left = f"{(1 - float(sparsity)) * 100:.2f}" if zeroed else "-"
        params = f"{float(row['params_nonzero_mean']):,.0f}"
        compression = row.get("compression_ratio_mean", "nan")
        compression = f"{float(compression):.1f}x" if zeroed else "-"
        pruned = [pm(row["pruned_test_accuracy_mean"], row["pruned_test_accuracy_std"])] if before else []
        cells = [row[k] for k in keys] + [row["runs"], dense, error, accuracy, *pruned, left, params, compression]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rounds_table(name):
    table = rows(ROOT / "results" / name / "sweep-rounds.csv")
    keys = grid_keys(table)
    header = keys + ["round", "seeds", "weights left (%)", "test accuracy (%)", "early-stop epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table:
        cells = [row[k] for k in keys] + [
            row["round"],
            row["runs"],
            f"{float(row['weights_left_mean']) * 100:.1f}",
            pm(row["test_accuracy_mean"], row["test_accuracy_std"]),
            pm(row["early_stop_epoch_mean"], row["early_stop_epoch_std"], scale=1.0, digits=1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tradeoff_rows(report):
    return {row["method"]: row for row in rows(ROOT / "results" / report / "tradeoff.csv")}


def milliseconds(mean, std):
    mean, std = float(mean), float(std)
    digits = 0 if mean >= 100 else 2 if mean >= 1 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def tradeoff_table(report):
    table = rows(ROOT / "results" / report / "tradeoff.csv")
    header = ["method", "seeds", "non-zero parameters", "test accuracy (%)", "ms at batch 1", "ms at batch 1000",
              "speedup at batch 1000"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    dense = float(table[0]["ms_batch1000_mean"])
    for row in table:
        cells = [
            row["method"],
            row["runs"],
            f"{float(row['params_nonzero_mean']):,.0f}",
            pm(row["test_accuracy_mean"], row["test_accuracy_std"]),
            f"{milliseconds(row['ms_batch1_mean'], row['ms_batch1_std'])} ({row['engine_batch1']})",
            f"{milliseconds(row['ms_batch1000_mean'], row['ms_batch1000_std'])} ({row['engine_batch1000']})",
            f"{dense / float(row['ms_batch1000_mean']):.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The README's results table: (sweep config, its group (grid values but the seed; None: the
# sweep's dense training), the strategy report that timed it and the method's name there, what
# the line is).
README_LINES = [
    ("han-lenet300", None, "strategies-lenet300", "dense", "LeNet-300-100 dense, 20 epochs"),
    ("han-lenet5", None, "strategies-lenet5", "dense", "LeNet-5 dense, 12 epochs"),
    ("han-lenet300", {}, "strategies-lenet300", "han-lenet300", "Han et al. per layer, 5 rounds"),
    ("global-lenet300", {"prune.target": "0.95"}, "strategies-lenet300", "global-lenet300: target 0.95",
     "global magnitude to 95 %, 5 rounds"),
    ("global-lenet300", {"prune.target": "0.98"}, "strategies-lenet300", "global-lenet300: target 0.98",
     "global magnitude to 98 %, 5 rounds"),
    ("semi-2of4-lenet300", {}, "strategies-lenet300", "semi-2of4-lenet300", "2:4 semi-structured, 2 rounds"),
    ("neuron-lenet300", {}, "strategies-lenet300", "neuron-lenet300", "300-100 -> 150-50 neurons by L1, 3 epochs"),
    ("layerwise-lenet300", {}, "strategies-lenet300", "layerwise-lenet300",
     "layer by layer, each layer's target from its sensitivity (differs by seed, see RESULTS.md)"),
    ("han-lenet5", {}, "strategies-lenet5", "han-lenet5", "Han et al. per layer, 4 rounds"),
    ("li-lenet5", {"prune.criterion": "l1"}, "strategies-lenet5", "li-lenet5: criterion l1",
     "20-50 -> 10-25 filters by L1, 2 epochs"),
    ("layerwise-lenet5", {}, "strategies-lenet5", "layerwise-lenet5", "layer by layer conv1 -> fc2, 2 epochs each"),
    ("li-vgg", None, "speed-li-vgg", "dense", "VGG dense on 5,000 images, 5 epochs"),
    ("li-vgg", {"prune.criterion": "l1"}, "speed-li-vgg", "li-vgg: criterion l1",
     "half of every conv's filters by L1, 2 epochs"),
    ("resnet20", None, "speed-resnet20", "dense", "ResNet-20 dense on 10,000 images, 10 epochs"),
    ("resnet20", {}, "speed-resnet20", "resnet20", "half of every block's inner channels by L1, 3 epochs"),
]


def readme_lines():
    header = ["config", "what", "seeds", "test accuracy (%)", "weights / size", "ms at batch 1000 (engine)",
              "speedup"]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- | ---: | ---: | --- | ---: | ---: |"]
    for config, group, report, method, what in README_LINES:
        if not (ROOT / "results" / config / "sweep.csv").is_file() or not (ROOT / "results" / report).is_dir():
            continue
        sweep = rows(ROOT / "results" / config / "sweep.csv")
        row = next(r for r in sweep if all(r[k] == v for k, v in (group or {}).items()))
        timed = tradeoff_rows(report)
        time, dense = timed[method], timed["dense"]
        if group is None:
            accuracy = pm(row["dense_test_accuracy_mean"], row["dense_test_accuracy_std"])
            size = f"{float(dense['params_nonzero_mean']):,.0f} parameters"
        else:
            accuracy = pm(row["test_accuracy_mean"], row["test_accuracy_std"])
            sparsity = float(row["sparsity_mean"])
            params = f"{float(row['params_nonzero_mean']):,.0f}"
            if sparsity > 0:
                size = f"{(1 - sparsity) * 100:.2f} % of weights left ({float(row['compression_ratio_mean']):.1f}x)"
            else:
                size = f"{params} of {float(dense['params_nonzero_mean']):,.0f} parameters"
        seconds = float(time["ms_batch1000_mean"])
        speedup = "-" if group is None else f"{float(dense['ms_batch1000_mean']) / seconds:.2f}x"
        cells = [
            f"`paper/{config}.toml`",
            what,
            row["runs"],
            accuracy,
            size,
            f"{milliseconds(time['ms_batch1000_mean'], time['ms_batch1000_std'])} ({time['engine_batch1000']})",
            speedup,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wall_times():
    lines = ["| config | runs | wall time |", "| --- | ---: | --- |"]
    for sweep in sorted((ROOT / "results").glob("*/sweep.csv")):
        name = sweep.parent.name
        runs = sum(int(row["runs"]) + int(row["failed"]) for row in rows(sweep))
        wall = (sweep.parent / "wall-time.txt").read_text().strip()
        lines.append(f"| `{name}` | {runs} | {wall} |")
    return "\n".join(lines)


def sparse_vs_dense():
    """Each AGP sparsity beside the small dense network closest to it in non-zero parameters.
    The arms share no network, so their means are compared, with the difference's standard
    error from both spreads; the small networks' seed range comes from their points' files."""
    sparse = rows(ROOT / "results" / "zhu-gupta-agp" / "sweep.csv")
    dense = rows(ROOT / "results" / "small-dense-lenet300" / "sweep.csv")
    points = {}
    for summary in sorted((ROOT / "results" / "small-dense-lenet300" / "points").glob("*/summary.json")):
        record = json.loads(summary.read_text())
        points.setdefault(record["params_nonzero"], []).append(record["test_accuracy"])
    header = ["sparsity", "non-zero parameters", "large sparse (%)", "small dense", "parameters",
              "small dense (%)", "its seeds' range (%)", "difference (points)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in sparse:
        params = float(row["params_nonzero_mean"])
        small = min(dense, key=lambda d: abs(float(d["params_nonzero_mean"]) - params))
        seeds = points.get(int(float(small["params_nonzero_mean"])), [])
        spread = f"{min(seeds) * 100:.2f} - {max(seeds) * 100:.2f}" if seeds else "-"
        difference = float(row["test_accuracy_mean"]) - float(small["test_accuracy_mean"])
        error = (float(row["test_accuracy_std"]) ** 2 / int(row["runs"])
                 + float(small["test_accuracy_std"]) ** 2 / int(small["runs"])) ** 0.5
        lines.append("| " + " | ".join([
            f"{float(row['prune.target']) * 100:.0f} %", f"{params:,.0f}",
            pm(row["test_accuracy_mean"], row["test_accuracy_std"]),
            small["model.hidden"].replace(", ", "-").strip("[]"), f"{float(small['params_nonzero_mean']):,.0f}",
            pm(small["test_accuracy_mean"], small["test_accuracy_std"]), spread,
            f"{difference * 100:+.2f} ± {error * 100:.2f}",
        ]) + " |")
    return "\n".join(lines)


def seeds_table(name):
    """Each point's dense and final accuracy: the arms share their dense network seed by seed,
    so the difference is paired."""
    records = [json.loads(p.read_text()) for p in (ROOT / "results" / name / "points").glob("*/summary.json")]
    records.sort(key=lambda r: r["seed"])
    lines = ["| seed | dense (%) | pruned (%) | difference (points) |", "| --- | ---: | ---: | ---: |"]
    differences = []
    for r in records:
        differences.append((r["test_accuracy"] - r["dense_test_accuracy"]) * 100)
        lines.append(f"| {r['seed']} | {r['dense_test_accuracy'] * 100:.2f} | {r['test_accuracy'] * 100:.2f} "
                     f"| {differences[-1]:+.2f} |")
    mean = sum(differences) / len(differences)
    std = (sum((d - mean) ** 2 for d in differences) / max(len(differences) - 1, 1)) ** 0.5
    lines.append(f"| mean of {len(records)} | | | {mean:+.2f} ± {std:.2f} |")
    return "\n".join(lines)


def point_records(name):
    """Each point of a sweep: its summary.json, with its rounds.csv's rows under "rounds"."""
    records = []
    for summary in sorted((ROOT / "results" / name / "points").glob("*/summary.json")):
        record = json.loads(summary.read_text())
        record["rounds"] = rows(summary.parent / "rounds.csv")
        records.append(record)
    return records


def mean_std(values):
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5


def compressed_table(name):
    """Each seed's accuracy after each stage of Deep Compression and its compressed file."""
    records = sorted(point_records(name), key=lambda r: r["seed"])
    header = ["seed", "dense (%)", "pruned (%)", "quantized (%)", "after retraining (%)", "coded weights (B)",
              "file (B)", "file / dense"]
    lines = ["| " + " | ".join(header) + " |", "| ---" + " | ---:" * (len(header) - 1) + " |"]
    columns = []
    for r in records:
        pruned = [row for row in r["rounds"] if row["stage"] == "prune"][-1]
        coded = sum(layer["coded_bytes"] for layer in r["compressed"]["layers"])
        file, dense = r["compressed"]["bytes"], r["compressed"]["dense_bytes"]
        values = [r["dense_test_accuracy"] * 100, float(pruned["test_accuracy"]) * 100,
                  r["quantize"]["test_accuracy_before_retraining"] * 100, r["test_accuracy"] * 100, coded, file,
                  dense / file]
        columns.append(values)
        lines.append(f"| {r['seed']} | " + " | ".join(
            [f"{v:.2f}" for v in values[:4]] + [f"{coded:,}", f"{file:,}", f"{values[6]:.1f}x"]) + " |")
    stats = [mean_std([c[i] for c in columns]) for i in range(len(header) - 1)]
    cells = [pm(m, s, 1.0) for m, s in stats[:4]] + [f"{stats[4][0]:,.0f}", f"{stats[5][0]:,.0f}",
                                                     f"{stats[6][0]:.1f}x"]
    lines.append(f"| mean of {len(records)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scratch_table(name):
    """Fine-tuned against Scratch-E and Scratch-B: the runs of one seed prune the same network the
    same way, so each difference is paired."""
    by_seed = {}
    for r in point_records(name):
        arm = by_seed.setdefault(r["seed"], {"fine-tuned": r["scratch"]["fine_tuned_test_accuracy"]})
        # Both budgets' runs of a seed prune and fine-tune alike before their controls part.
        assert arm["fine-tuned"] == r["scratch"]["fine_tuned_test_accuracy"], (name, r["seed"])
        arm[r["scratch"]["budget"]] = r["scratch"]["test_accuracy"]
        arm[r["scratch"]["budget"] + " epochs"] = r["scratch"]["epochs"]
    header = ["seed", "fine-tuned (%)", "Scratch-E (%)", "Scratch-B (%)", "Scratch-B epochs",
              "E - fine-tuned (points)", "B - fine-tuned (points)"]
    lines = ["| " + " | ".join(header) + " |", "| ---" + " | ---:" * (len(header) - 1) + " |"]
    columns = []
    for seed, arm in sorted(by_seed.items()):
        tuned, e, b = (arm["fine-tuned"] * 100, arm["epochs"] * 100, arm["compute"] * 100)
        columns.append([tuned, e, b, e - tuned, b - tuned])
        lines.append(f"| {seed} | {tuned:.2f} | {e:.2f} | {b:.2f} | {arm['compute epochs']} "
                     f"| {e - tuned:+.2f} | {b - tuned:+.2f} |")
    stats = [mean_std([c[i] for c in columns]) for i in range(5)]
    cells = [pm(m, s, 1.0) for m, s in stats[:3]] + [""] + [f"{m:+.2f} ± {s:.2f}" for m, s in stats[3:]]
    lines.append(f"| mean of {len(columns)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def export_block(name):
    """Seed 0's `coppice export --format compressed` output, as results/CONFIG/compressed.txt
    keeps it."""
    text = (ROOT / "results" / name / "compressed.txt").read_text()
    seed0 = text.split("seed 0: coppice export RUN --format compressed\n")[1].split("seed ")[0]
    return "```text\n" + seed0.rstrip("\n") + "\n```"


def lines_table(name):
    return {"readme": readme_lines, "wall-times": wall_times, "sparse-vs-dense": sparse_vs_dense}[name]()


def fill(path):
    text = path.read_text()
    kinds = (("results", results_table), ("rounds", rounds_table), ("tradeoff", tradeoff_table),
             ("lines", lines_table), ("seeds", seeds_table), ("compressed", compressed_table),
             ("scratch", scratch_table), ("export", export_block))
    for kind, make in kinds:
        pattern = re.compile(rf"(<!-- {kind}:([\w.-]+) -->\n).*?(<!-- /{kind} -->)", re.S)

        def replace(match):
            name = match.group(2)
            source = ROOT / "results" / name
            if kind != "lines" and not source.is_dir():
                return match.group(0)
            return f"{match.group(1)}{make(name)}\n{match.group(3)}"

        text = pattern.sub(replace, text)
    path.write_text(text)


if __name__ == "__main__":
    for document in ("RESULTS.md", "README.md"):
        fill(ROOT / document)
