//! `coppice sweep`: a grid of runs from list-valued config keys, summarized over seeds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use coppice_data::Table;

use crate::child::{ChildRun, spawn_run};
use crate::plot::{SpreadSeries, XAxis, spread_chart};
use crate::progress::Steps;
use crate::rundir::{create_run_dir, write_atomic};

/// One swept key and its values, as TOML text ready for `--set`.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// Keys whose value is a list even in a single run: they sweep only when given a list of lists.
const LIST_KEYS: [&str; 2] = ["model.hidden", "model.stages"];

/// The list-valued keys of a config file, in file order, and the grid they span.
pub fn axes(table: &toml::Table) -> Vec<Axis> {
    let mut found = Vec::new();
    collect(table, "", &mut found);
    found
}

fn collect(table: &toml::Table, prefix: &str, found: &mut Vec<Axis>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => collect(inner, &path, found),
            toml::Value::Array(items) => {
                let nested = items.first().is_some_and(|v| v.is_array());
                let sweeps = if path == "model.stages" {
                    items.first().and_then(|v| v.as_array()).and_then(|v| v.first()).is_some_and(|v| v.is_array())
                } else if LIST_KEYS.contains(&path.as_str()) {
                    nested
                } else {
                    true
                };
                if sweeps {
                    found.push(Axis { key: path, values: items.iter().map(|v| v.to_string()).collect() });
                }
            }
            _ => {}
        }
    }
}

/// Every combination of the axes' values, as `key=value` overrides.
pub fn grid(axes: &[Axis]) -> Vec<Vec<String>> {
    axes.iter().fold(vec![Vec::new()], |points, axis| {
        points
            .iter()
            .flat_map(|point| {
                axis.values.iter().map(move |v| {
                    let mut next = point.clone();
                    next.push(format!("{}={v}", axis.key));
                    next
                })
            })
            .collect()
    })
}

/// Runs the grid as child `coppice run` processes, `jobs` at a time, each with the config's
/// swept keys set to one combination; then writes `sweep.csv` with mean and standard deviation
/// of each group of runs that differ only in `seed`.
pub fn sweep(
    config: &Path,
    overrides: &[String],
    out: &Path,
    (jobs, plain): (usize, bool),
    backend: Option<&str>,
) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("{}: cannot read the config", config.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow!("{}: invalid TOML: {}", config.display(), e.message()))?;
    let axes = axes(&table);
    if axes.is_empty() {
        return Err(anyhow!(
            "{}: no key holds a list, so there is nothing to sweep; fix: e.g. seed = [0, 1, 2]",
            config.display()
        ));
    }
    let name = table.get("name").and_then(|v| v.as_str()).unwrap_or("sweep");
    let dir_name = if name.ends_with("sweep") { name.to_string() } else { format!("{name}-sweep") };
    let sweep_dir = create_run_dir(out, &dir_name)?;
    let points = grid(&axes);
    println!(
        "sweep of {} runs over {} -> {}",
        points.len(),
        axes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>().join(", "),
        sweep_dir.display()
    );
    let exe = std::env::current_exe().context("cannot find the coppice binary")?;
    let mut results: Vec<(Vec<String>, Result<serde_json::Value>)> = Vec::new();
    let steps = Steps::start("sweep", points.len(), plain);
    for chunk in points.chunks(jobs.max(1)) {
        let children: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, point)| {
                let index = results.len() + i;
                let settings: Vec<String> = point.iter().chain(overrides).cloned().collect();
                let child = spawn_run(&exe, config, &sweep_dir.join(format!("point-{index}")), &settings, backend);
                (point.clone(), child)
            })
            .collect();
        for (point, child) in children {
            let summary = child.and_then(ChildRun::finish).map(|(_, summary)| summary);
            let line = match &summary {
                Ok(s) => {
                    format!("test accuracy {:.2}%", s["test_accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0)
                }
                Err(e) => format!("failed: {e}"),
            };
            steps.step(&format!("{}: {line}", point.join(" ")));
            results.push((point, summary));
        }
    }
    write_atomic(&sweep_dir.join("sweep.csv"), sweep_csv(&axes, &results).as_bytes())?;
    write_atomic(&sweep_dir.join("sweep.svg"), sweep_svg(&results).as_bytes())?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        return Err(anyhow!(
            "{failed} of {} sweep runs failed; see {}",
            results.len(),
            sweep_dir.join("sweep.csv").display()
        ));
    }
    Ok(sweep_dir)
}

const METRICS: [&str; 4] = ["test_accuracy", "sparsity", "compression_ratio", "params_nonzero"];

fn sweep_csv(axes: &[Axis], results: &[(Vec<String>, Result<serde_json::Value>)]) -> String {
    let mut header: Vec<String> = axes.iter().filter(|a| a.key != "seed").map(|a| a.key.clone()).collect();
    header.extend(["runs".to_string(), "failed".to_string()]);
    header.extend(METRICS.iter().flat_map(|m| [format!("{m}_mean"), format!("{m}_std")]));
    let mut table = Table::new(header);
    for group in groups(results) {
        let members: Vec<&Result<serde_json::Value>> =
            results.iter().filter(|(p, _)| seedless(p) == group).map(|(_, r)| r).collect();
        let ok: Vec<&serde_json::Value> = members.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut row: Vec<String> =
            group.iter().map(|s| cell(s.split_once('=').map_or(s.as_str(), |(_, v)| v))).collect();
        row.extend([ok.len().to_string(), (members.len() - ok.len()).to_string()]);
        for m in METRICS {
            let xs: Vec<f64> = ok.iter().filter_map(|s| s[m].as_f64()).collect();
            let (mean, std) = mean_std(&xs);
            row.extend([format!("{mean:.6}"), format!("{std:.6}")]);
        }
        table.push(row);
    }
    table.to_csv()
}

/// A swept value as a CSV cell: a TOML string's text without its quotes, anything else as
/// written in the config.
fn cell(toml_value: &str) -> String {
    match toml::from_str::<toml::Table>(&format!("v = {toml_value}")).ok().and_then(|t| t.get("v").cloned()) {
        Some(toml::Value::String(text)) => text,
        _ => toml_value.to_string(),
    }
}

/// Test accuracy against sparsity, one line per method (the grid's keys other than the seed and
/// the target), each point the mean over seeds with their standard deviation as an error bar.
fn sweep_svg(results: &[(Vec<String>, Result<serde_json::Value>)]) -> String {
    let method = |group: &[String]| -> String {
        let keys: Vec<String> = group
            .iter()
            .filter(|s| !s.starts_with("prune.target="))
            .filter_map(|s| s.split_once('='))
            .map(|(key, value)| format!("{} {}", key.rsplit('.').next().unwrap_or(key), cell(value)))
            .collect();
        if keys.is_empty() { "all runs".to_string() } else { keys.join(", ") }
    };
    let mut series: Vec<SpreadSeries> = Vec::new();
    for group in groups(results) {
        let ok: Vec<&serde_json::Value> =
            results.iter().filter(|(p, _)| seedless(p) == group).filter_map(|(_, r)| r.as_ref().ok()).collect();
        let (sparsity, _) = mean_std(&ok.iter().map(|s| s["sparsity"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>());
        let (accuracy, spread) = mean_std(&ok.iter().filter_map(|s| s["test_accuracy"].as_f64()).collect::<Vec<_>>());
        let label = method(&group);
        let point = (sparsity * 100.0, accuracy, spread);
        match series.iter_mut().find(|s| s.label == label) {
            Some(line) => line.points.push(point),
            None => series.push(SpreadSeries { label, points: vec![point] }),
        }
    }
    for line in &mut series {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    spread_chart(
        "Sweep: test accuracy against sparsity (mean and standard deviation over seeds)",
        ("sparsity of the prunable weights (%)", XAxis::Linear),
        "test accuracy",
        &series,
    )
}

/// A grid point without its seed: the runs that a mean is taken over share it.
fn seedless(point: &[String]) -> Vec<String> {
    point.iter().filter(|s| !s.starts_with("seed=")).cloned().collect()
}

/// The distinct seedless points, in grid order.
fn groups(results: &[(Vec<String>, Result<serde_json::Value>)]) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for (point, _) in results {
        let key = seedless(point);
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    groups
}

/// Mean and sample standard deviation; NaN where there is nothing to average.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_axes_except_where_a_list_is_the_value() {
        let table: toml::Table = toml::from_str(
            "name = \"x\"\nseed = [0, 1]\n[model]\nkind = \"mlp\"\nhidden = [300, 100]\n[prune]\ntarget = [0.5, 0.9]\n",
        )
        .unwrap();
        let axes = axes(&table);
        let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["prune.target", "seed"]);
        let table: toml::Table = toml::from_str("[model]\nhidden = [[300, 100], [150, 50]]\n").unwrap();
        assert_eq!(axes_values(&table), vec![vec!["[300, 100]".to_string(), "[150, 50]".to_string()]]);
        assert_eq!(grid(&super::axes(&toml::from_str("a = [1, 2]\nb = [3, 4, 5]\n").unwrap())).len(), 6);
    }

    fn axes_values(table: &toml::Table) -> Vec<Vec<String>> {
        axes(table).into_iter().map(|a| a.values).collect()
    }

    #[test]
    fn swept_strings_are_one_csv_cell_without_their_toml_quotes() {
        let axes = super::axes(&toml::from_str("name = [\"a\", \"b,c\"]\nseed = [0]\n").unwrap());
        let summary = serde_json::json!({"test_accuracy": 0.5});
        let results: Vec<(Vec<String>, Result<serde_json::Value>)> =
            grid(&axes).into_iter().map(|point| (point, Ok(summary.clone()))).collect();
        let table = Table::from_csv(&sweep_csv(&axes, &results)).unwrap();
        let names: Vec<&str> = table.rows.iter().map(|row| row[0].as_str()).collect();
        assert_eq!(names, ["a", "b,c"]);
        assert_eq!(table.number(&table.rows[0], "test_accuracy_mean"), Some(0.5));
    }

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }
}
