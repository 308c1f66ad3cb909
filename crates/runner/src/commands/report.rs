//! `coppice report RUN_DIR...`: runs side by side, in markdown with SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use coppice_data::Table;

use crate::plot::{Series, XAxis, accuracy_chart, bar_chart};
use crate::rundir::dir::{create_run_dir, write_atomic};

/// What a report reads from one run directory.
struct RunData {
    dir: PathBuf,
    summary: serde_json::Value,
    /// (compression ratio, test accuracy) per round; the run's own result when it did not prune.
    rounds: Vec<(f64, f64)>,
    /// Final sparsity per prunable layer, from the last round.
    layers: Vec<(String, f64)>,
    /// Validation accuracy per epoch, over all of the run's training.
    curve: Vec<f64>,
}

fn read_run(dir: &Path) -> Result<RunData> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read; fix: pass run directories that finished", path.display()))?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let missing = ["test_accuracy", "params_nonzero", "wall_seconds"].into_iter().find(|k| !summary[k].is_number());
    if let Some(key) = missing.or(Some("name").filter(|k| !summary[k].is_string())) {
        return Err(anyhow!(
            "{}: not a coppice summary (no {key}); fix: pass run directories that `coppice run` finished, \
             or rerun the damaged one",
            path.display()
        ));
    }
    let (mut rounds, mut layers) = (Vec::new(), Vec::new());
    if let Some(table) = read_table(&dir.join("rounds.csv"))? {
        for row in &table.rows {
            if let (Some(c), Some(a)) = (table.number(row, "compression_ratio"), table.number(row, "test_accuracy")) {
                rounds.push((c, a));
            }
        }
        if let Some(last) = table.rows.last() {
            for name in &table.header {
                if let (Some(layer), Some(value)) = (name.strip_prefix("sparsity_"), table.number(last, name)) {
                    layers.push((layer.to_string(), value));
                }
            }
        }
    }
    if rounds.is_empty() {
        let compression = summary["compression_ratio"].as_f64().unwrap_or(1.0);
        rounds.push((compression, summary["test_accuracy"].as_f64().unwrap_or(f64::NAN)));
    }
    // Columns by name: older runs' metrics.csv has no `round` column.
    let curve = match read_table(&dir.join("metrics.csv"))? {
        Some(table) => {
            let split = table.column("split");
            table
                .rows
                .iter()
                .filter(|row| split.and_then(|i| row.get(i)).is_some_and(|s| s == "valid"))
                .filter_map(|row| table.number(row, "accuracy"))
                .collect()
        }
        None => Vec::new(),
    };
    Ok(RunData { dir: dir.to_path_buf(), summary, rounds, layers, curve })
}

/// A run's CSV file; `None` when the run has none.
fn read_table(path: &Path) -> Result<Option<Table>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Table::from_csv(&text).map(Some).with_context(|| format!("{}: not CSV", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: cannot read: {e}", path.display())),
    }
}

/// Writes `report.md` and its plots into a new directory under `out` and returns it.
pub fn report(run_dirs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    let runs = run_dirs.iter().map(|d| read_run(d)).collect::<Result<Vec<_>>>()?;
    if runs.is_empty() {
        return Err(anyhow!("no run directories given; fix: coppice report runs/<run>..."));
    }
    let dir = create_run_dir(out, "report")?;
    // Runs are named by their config name; the directory's timestamp only tells repeats apart.
    let label = |r: &RunData| {
        let name = r.summary["name"].as_str().unwrap_or("run").to_string();
        let repeats = runs.iter().filter(|o| o.summary["name"] == r.summary["name"]).count();
        if repeats > 1 { r.dir.file_name().map_or(name, |n| n.to_string_lossy().to_string()) } else { name }
    };

    let series: Vec<Series> = runs.iter().map(|r| Series { label: label(r), points: r.rounds.clone() }).collect();
    let svg = accuracy_chart(
        "Test accuracy against compression",
        ("compression ratio (total / non-zero parameters, log)", XAxis::Log),
        "test accuracy",
        &series,
    );
    write_atomic(&dir.join("accuracy-vs-compression.svg"), svg.as_bytes())?;

    let curves: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            label: label(r),
            points: r.curve.iter().enumerate().map(|(i, a)| ((i + 1) as f64, *a)).collect(),
        })
        .collect();
    let svg = accuracy_chart(
        "Validation accuracy per epoch (all rounds)",
        ("epoch", XAxis::Count),
        "validation accuracy",
        &curves,
    );
    write_atomic(&dir.join("training-curves.svg"), svg.as_bytes())?;

    let pruned: Vec<&RunData> = runs.iter().filter(|r| !r.layers.is_empty()).collect();
    let mut md = String::from(
        "# coppice report\n\n| run | test accuracy | dense | sparsity | compression | non-zero parameters | seconds |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in &runs {
        let s = &r.summary;
        let pct = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |v| format!("{:.2} %", v * 100.0));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.0} |",
            label(r),
            pct(&s["test_accuracy"]),
            pct(&s["dense_test_accuracy"]),
            pct(&s["sparsity"]),
            s["compression_ratio"].as_f64().map_or("1.00x".to_string(), |c| format!("{c:.2}x")),
            s["params_nonzero"],
            s["wall_seconds"].as_f64().unwrap_or(0.0)
        );
    }
    md.push_str("\n![accuracy against compression](accuracy-vs-compression.svg)\n\n");
    if !pruned.is_empty() {
        let layers: Vec<String> = pruned[0].layers.iter().map(|(l, _)| l.clone()).collect();
        let bars: Vec<Series> = pruned
            .iter()
            .map(|r| Series {
                label: label(r),
                points: layers
                    .iter()
                    .map(|l| (0.0, r.layers.iter().find(|(n, _)| n == l).map_or(0.0, |x| x.1)))
                    .collect(),
            })
            .collect();
        write_atomic(
            &dir.join("layer-sparsity.svg"),
            bar_chart("Sparsity per layer after pruning", "sparsity", &layers, &bars, true).as_bytes(),
        )?;
        md.push_str("![sparsity per layer](layer-sparsity.svg)\n\n");
    }
    if let Some(svg) = units_chart(&runs, &label) {
        write_atomic(&dir.join("layer-units.svg"), svg.as_bytes())?;
        md.push_str("![units per layer](layer-units.svg)\n\n");
    }
    md.push_str("![training curves](training-curves.svg)\n\nRuns:\n\n");
    for r in &runs {
        let _ = writeln!(md, "- `{}`", r.dir.display());
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(dir)
}

/// Neurons or filters per layer of the dense network and of each neuron-pruned run, side by
/// side; `None` when no run removed units.
fn units_chart(runs: &[RunData], label: &dyn Fn(&RunData) -> String) -> Option<String> {
    let units = |r: &RunData| r.summary["dense"]["units"].as_array().cloned();
    let pruned: Vec<(&RunData, Vec<serde_json::Value>)> = runs.iter().filter_map(|r| Some((r, units(r)?))).collect();
    let first = &pruned.first()?.1;
    let layers: Vec<String> = first.iter().filter_map(|u| u["layer"].as_str().map(String::from)).collect();
    let count = |units: &[serde_json::Value], key: &str| -> Vec<(f64, f64)> {
        layers
            .iter()
            .map(|l| {
                let unit = units.iter().find(|u| u["layer"] == l.as_str());
                (0.0, unit.and_then(|u| u[key].as_f64()).unwrap_or(0.0))
            })
            .collect()
    };
    let mut series = vec![Series { label: "dense".into(), points: count(first, "dense") }];
    series.extend(pruned.iter().map(|(r, units)| Series { label: label(r), points: count(units, "pruned") }));
    Some(bar_chart("Units per layer: dense and pruned", "neurons or filters", &layers, &series, false))
}
