#!/usr/bin/env python3
"""Regenerates the measured tables of RESULTS.md and the README from results/<config>/.

A table sits between `<!-- results:CONFIG -->` and `<!-- /results -->` (from sweep.csv: test
error and accuracy, mean and standard deviation over seeds) or `<!-- rounds:CONFIG -->` and
`<!-- /rounds -->` (from sweep-rounds.csv, round by round). Nothing in those blocks is kept by
hand. Standard library only.
"""
import csv
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


def pm(mean, std, scale=100.0, digits=2):
    return f"{float(mean) * scale:.{digits}f} ± {float(std) * scale:.{digits}f}"


def results_table(name):
    table = rows(ROOT / "results" / name / "sweep.csv")
    keys = grid_keys(table)
    header = keys + [
        "seeds",
        "dense error (%)",
        "test error (%)",
        "test accuracy (%)",
        "weights left (%)",
        "non-zero parameters",
        "compression",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table:
        error = pm(1 - float(row["test_accuracy_mean"]), row["test_accuracy_std"])
        dense = row.get("dense_test_accuracy_mean", "nan")
        dense = "-" if dense in ("NaN", "nan", "") else pm(1 - float(dense), row["dense_test_accuracy_std"])
        accuracy = pm(row["test_accuracy_mean"], row["test_accuracy_std"])
        sparsity = row.get("sparsity_mean", "nan")
        # Neuron pruning removes weights instead of zeroing them: no sparsity, fewer parameters,
        # which the parameter column shows.
        zeroed = sparsity not in ("NaN", "nan", "") and float(sparsity) > 0
        left = f"{(1 - float(sparsity)) * 100:.2f}" if zeroed else "-"
        params = f"{float(row['params_nonzero_mean']):,.0f}"
        compression = row.get("compression_ratio_mean", "nan")
        compression = f"{float(compression):.1f}x" if zeroed else "-"
        cells = [row[k] for k in keys] + [row["runs"], dense, error, accuracy, left, params, compression]
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


def fill(path):
    text = path.read_text()
    for kind, make in (("results", results_table), ("rounds", rounds_table)):
        pattern = re.compile(rf"(<!-- {kind}:([\w.-]+) -->\n).*?(<!-- /{kind} -->)", re.S)

        def replace(match):
            name = match.group(2)
            source = ROOT / "results" / name
            if not source.is_dir():
                return match.group(0)
            return f"{match.group(1)}{make(name)}\n{match.group(3)}"

        text = pattern.sub(replace, text)
    path.write_text(text)


if __name__ == "__main__":
    for document in ("RESULTS.md", "README.md"):
        fill(ROOT / document)
