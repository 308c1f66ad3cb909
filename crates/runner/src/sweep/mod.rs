//! `coppice sweep`: a grid of runs from list-valued config keys, summarized over seeds.
//!
//! A sweep is a directory: the config it was made from (`config.toml`), its plan
//! (`sweep.json`: the grid and the `--set` values of every point), one self-contained
//! `coppice run ... --run-dir point-N` line per point (`commands.txt`), the points' run
//! directories, and what `collect` makes of them (`sweep.csv`, `sweep.svg`). The points run in
//! child processes here (`--jobs`), or on any engine that runs command lines (`--emit`: GNU
//! parallel, a Slurm job array); either way the same `collect` summarizes them.

mod collect;
mod emit;
mod rounds;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

pub use collect::{SweepPoints, collect, finished_points, mean_std, method_label};
pub use emit::emit;

use crate::child::{ChildRun, Place, spawn_run};
use crate::progress::Steps;
use crate::rundir::{create_run_dir, write_atomic};

/// One swept key and its values, as TOML text ready for `--set`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// Keys whose value is a list even in a single run: they sweep only when given a list of lists.
const LIST_KEYS: [&str; 3] = ["model.hidden", "model.stages", "devices"];

/// The list-valued keys of a config file, in file order, and the grid they span.
pub fn axes(table: &toml::Table) -> Vec<Axis> {
    let mut found = Vec::new();
    find_lists(table, "", &mut found);
    found
}

fn find_lists(table: &toml::Table, prefix: &str, found: &mut Vec<Axis>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => find_lists(inner, &path, found),
            toml::Value::Array(items) => {
                let nested = items.first().is_some_and(|v| v.is_array());
                // A network's layers are a list of tables, never a grid.
                let network = path == "model.layers" || path.starts_with("model.blocks.");
                let sweeps = if network {
                    false
                } else if path == "model.stages" {
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

/// What a sweep runs, as `sweep.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The directory the points' commands run in: relative paths in the config (`data.dir`)
    /// are relative to it.
    pub workdir: PathBuf,
    pub backend: Option<String>,
    pub axes: Vec<Axis>,
    /// Every point's `--set` values: its grid values, then the sweep's own `--set`s.
    pub points: Vec<Vec<String>>,
    /// How many of each point's values are the grid's (the rest are the same for every point).
    pub grid_keys: usize,
}

const PLAN_FILE: &str = "sweep.json";
const CONFIG_FILE: &str = "config.toml";
pub const COMMANDS_FILE: &str = "commands.txt";

/// A new sweep directory under `out`, with the config, the plan and the points' command lines.
fn prepare(config: &Path, overrides: &[String], out: &Path, backend: Option<&str>) -> Result<(PathBuf, Plan)> {
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
    let sweep_dir = std::path::absolute(create_run_dir(out, &dir_name)?)?;
    let points: Vec<Vec<String>> =
        grid(&axes).into_iter().map(|point| point.into_iter().chain(overrides.iter().cloned()).collect()).collect();
    let plan = Plan {
        workdir: std::env::current_dir().context("cannot read the working directory")?,
        backend: backend.map(str::to_string),
        grid_keys: axes.len(),
        axes,
        points,
    };
    write_atomic(&sweep_dir.join(CONFIG_FILE), text.as_bytes())?;
    write_atomic(&sweep_dir.join(PLAN_FILE), serde_json::to_string_pretty(&plan)?.as_bytes())?;
    let exe = std::env::current_exe().context("cannot find the coppice binary")?;
    let lines: String = (0..plan.points.len()).map(|i| emit::command_line(&exe, &sweep_dir, &plan, i) + "\n").collect();
    write_atomic(&sweep_dir.join(COMMANDS_FILE), lines.as_bytes())?;
    Ok((sweep_dir, plan))
}

/// A sweep directory's plan.
fn read_plan(sweep_dir: &Path) -> Result<Plan> {
    let path = sweep_dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read; fix: pass a directory that `coppice sweep` made", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a sweep plan", path.display()))
}

/// Whether `dir` is a sweep directory (rather than a run directory).
pub fn is_sweep_dir(dir: &Path) -> bool {
    dir.join(PLAN_FILE).is_file()
}

fn point_dir(sweep_dir: &Path, index: usize) -> PathBuf {
    sweep_dir.join(format!("point-{index}"))
}

/// Runs the grid as child `coppice run` processes, `jobs` at a time, each in its point's
/// directory; then [`collect`]s them into `sweep.csv` and `sweep.svg`.
pub fn sweep(
    config: &Path,
    overrides: &[String],
    out: &Path,
    (jobs, plain): (usize, bool),
    backend: Option<&str>,
) -> Result<PathBuf> {
    let (sweep_dir, plan) = prepare(config, overrides, out, backend)?;
    println!(
        "sweep of {} runs over {} -> {}",
        plan.points.len(),
        plan.axes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>().join(", "),
        sweep_dir.display()
    );
    let exe = std::env::current_exe().context("cannot find the coppice binary")?;
    let config = sweep_dir.join(CONFIG_FILE);
    let steps = Steps::start("sweep", plan.points.len(), plain);
    let indexed: Vec<(usize, &Vec<String>)> = plan.points.iter().enumerate().collect();
    for chunk in indexed.chunks(jobs.max(1)) {
        let children: Vec<_> = chunk
            .iter()
            .map(|&(index, settings)| {
                let place = Place::At(point_dir(&sweep_dir, index));
                (&settings[..plan.grid_keys], spawn_run(&exe, &config, place, settings, backend))
            })
            .collect();
        for (point, child) in children {
            let line = match child.and_then(ChildRun::finish) {
                Ok((_, s)) => {
                    format!("test accuracy {:.2}%", s["test_accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0)
                }
                Err(e) => format!("failed: {e}"),
            };
            steps.step(&format!("{}: {line}", point.join(" ")));
        }
    }
    let status = collect::summarize(&sweep_dir, &plan)?;
    if !status.unfinished.is_empty() {
        return Err(anyhow!(
            "{} of {} sweep runs failed; see {}",
            status.unfinished.len(),
            plan.points.len(),
            sweep_dir.join("sweep.csv").display()
        ));
    }
    Ok(sweep_dir)
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
        let network = "seed = [0, 1]\n[model]\nlayers = [{ op = \"flatten\" }, { op = \"linear\" }]\n\
                       [model.blocks.b]\nlayers = [{ op = \"relu\" }]\n";
        let keys: Vec<String> = super::axes(&toml::from_str(network).unwrap()).into_iter().map(|a| a.key).collect();
        assert_eq!(keys, ["seed"], "a network's layers are not a grid");
    }

    fn axes_values(table: &toml::Table) -> Vec<Vec<String>> {
        axes(table).into_iter().map(|a| a.values).collect()
    }
}
