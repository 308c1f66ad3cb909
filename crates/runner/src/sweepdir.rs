//! A sweep directory as the commands that read one see it (`sweep`, `sweep --collect`,
//! `report SWEEP_DIR...`): the config it was made from, its plan (`sweep.json`), one command line
//! per point (`commands.txt`) and the points' run directories, with where each point stands;
//! and the points grouped by their grid values but for the seed, with the mean and standard
//! deviation over the seeds. `coppice sweep` makes the directory (`commands/sweep/`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::rundir::dir::FAILURE_FILE;
use crate::rundir::lock::{Access, lock};

/// One swept key and its values, as TOML text ready for `--set`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
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

pub const PLAN_FILE: &str = "sweep.json";
pub const CONFIG_FILE: &str = "config.toml";
pub const COMMANDS_FILE: &str = "commands.txt";

/// A sweep directory's plan.
pub fn read_plan(sweep_dir: &Path) -> Result<Plan> {
    let path = sweep_dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read; fix: pass a directory that `coppice sweep` made", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a sweep plan", path.display()))
}

/// Whether `dir` is a sweep directory (rather than a run directory).
pub fn is_sweep_dir(dir: &Path) -> bool {
    dir.join(PLAN_FILE).is_file()
}

pub fn point_dir(sweep_dir: &Path, index: usize) -> PathBuf {
    sweep_dir.join(format!("point-{index}"))
}

/// Where one point stands.
pub enum PointState {
    Finished(serde_json::Value),
    /// No directory: never started.
    Missing,
    /// Another process holds its directory.
    Running,
    /// Its last attempt failed, with this error.
    Failed(String),
    /// Started and stopped (killed, interrupted) without an error on record.
    Stopped,
}

pub fn point_state(dir: &Path) -> PointState {
    if !dir.is_dir() {
        return PointState::Missing;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) {
        return match serde_json::from_str(&text) {
            Ok(summary) => PointState::Finished(summary),
            Err(e) => PointState::Failed(format!("summary.json unreadable: {e}")),
        };
    }
    if lock(dir, Access::Read).is_err() {
        return PointState::Running;
    }
    match std::fs::read_to_string(dir.join(FAILURE_FILE)) {
        Ok(error) => PointState::Failed(error.lines().next().unwrap_or("failed").to_string()),
        Err(_) => PointState::Stopped,
    }
}

/// A sweep's finished runs, grouped by their grid point but for the seed.
pub struct SweepPoints {
    /// The sweep config's name.
    pub name: String,
    /// Each group's grid values (without the seed) and its finished runs' directories.
    pub groups: Vec<(Vec<String>, Vec<PathBuf>)>,
    pub unfinished: usize,
    pub total: usize,
}

pub fn finished_points(sweep_dir: &Path) -> Result<SweepPoints> {
    let plan = read_plan(sweep_dir)?;
    let config = sweep_dir.join(CONFIG_FILE);
    let table: toml::Table = std::fs::read_to_string(&config)
        .ok()
        .and_then(|text| toml::from_str(&text).ok())
        .ok_or_else(|| anyhow!("{}: cannot read the sweep's config", config.display()))?;
    let name = table.get("name").and_then(|v| v.as_str()).unwrap_or("sweep").to_string();
    let points: Vec<(Vec<String>, PathBuf)> = plan
        .points
        .iter()
        .enumerate()
        .map(|(index, settings)| (settings[..plan.grid_keys].to_vec(), point_dir(sweep_dir, index)))
        .collect();
    let finished: Vec<&(Vec<String>, PathBuf)> =
        points.iter().filter(|(_, dir)| matches!(point_state(dir), PointState::Finished(_))).collect();
    let groups = groups(&points)
        .into_iter()
        .map(|group| {
            let runs = finished.iter().filter(|(p, _)| seedless(p) == group).map(|(_, dir)| dir.clone()).collect();
            (group, runs)
        })
        .filter(|(_, runs): &(Vec<String>, Vec<PathBuf>)| !runs.is_empty())
        .collect();
    Ok(SweepPoints { name, groups, unfinished: points.len() - finished.len(), total: points.len() })
}

/// A swept value as a CSV cell: a TOML string's text without its quotes, anything else as
/// written in the config.
pub fn cell(toml_value: &str) -> String {
    match toml::from_str::<toml::Table>(&format!("v = {toml_value}")).ok().and_then(|t| t.get("v").cloned()) {
        Some(toml::Value::String(text)) => text,
        _ => toml_value.to_string(),
    }
}

/// A line's name in a chart: the grid's values of a group of runs, but for `skip` keys.
pub fn method_label(group: &[String], skip: &[&str]) -> String {
    let keys: Vec<String> = group
        .iter()
        .filter_map(|s| s.split_once('='))
        .filter(|(key, _)| !skip.contains(key))
        .map(|(key, value)| format!("{} {}", key.rsplit('.').next().unwrap_or(key), cell(value)))
        .collect();
    if keys.is_empty() { "all runs".to_string() } else { keys.join(", ") }
}

/// A grid point without its seed: the runs that a mean is taken over share it.
pub fn seedless(point: &[String]) -> Vec<String> {
    point.iter().filter(|s| !s.starts_with("seed=")).cloned().collect()
}

/// The distinct seedless points, in grid order.
pub fn groups<T>(results: &[(Vec<String>, T)]) -> Vec<Vec<String>> {
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
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
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
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }
}
