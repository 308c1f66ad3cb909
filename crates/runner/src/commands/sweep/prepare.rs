//! A new sweep: the grid of a config's list-valued keys, and its directory with the config, the
//! plan and each point's `coppice run` line, which `--jobs` runs, `--emit` hands on and a
//! scheduler may run again to resume a point.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::rundir::dir::{create_run_dir, write_atomic};
use crate::sweepdir::{Axis, COMMANDS_FILE, CONFIG_FILE, PLAN_FILE, Plan, point_dir};

/// Keys whose value is a list even in a single run: they sweep only when given a list of lists.
const LIST_KEYS: [&str; 7] =
    ["model.hidden", "model.stages", "devices", "data.mean", "data.std", "data.size", "train.lr_milestones"];

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

/// A new sweep directory under `out`, with the config, the plan and the points' command lines.
pub fn prepare(config: &Path, overrides: &[String], out: &Path, backend: Option<&str>) -> Result<(PathBuf, Plan)> {
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
    let lines: String = (0..plan.points.len()).map(|i| command_line(&exe, &sweep_dir, &plan, i) + "\n").collect();
    write_atomic(&sweep_dir.join(COMMANDS_FILE), lines.as_bytes())?;
    Ok((sweep_dir, plan))
}

/// The line that runs point `index`: it changes to the sweep's working directory, so that it
/// runs the same from anywhere, and writes to the point's own directory with `--run-dir`, so
/// that running it again resumes it.
pub fn command_line(exe: &Path, sweep_dir: &Path, plan: &Plan, index: usize) -> String {
    let mut words = vec![
        exe.display().to_string(),
        "run".into(),
        sweep_dir.join(CONFIG_FILE).display().to_string(),
        "--run-dir".into(),
        point_dir(sweep_dir, index).display().to_string(),
        "--plain".into(),
    ];
    if let Some(backend) = &plan.backend {
        words.extend(["--backend".into(), backend.clone()]);
    }
    for setting in &plan.points[index] {
        words.extend(["--set".into(), setting.clone()]);
    }
    let command: Vec<String> = words.iter().map(|w| quote(w)).collect();
    format!("cd {} && {}", quote(&plan.workdir.display().to_string()), command.join(" "))
}

/// `word` as one shell word: as it is when it is plain, else in single quotes.
pub fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
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
        let data =
            "[data]\nmean = [0.49, 0.48, 0.45]\nsize = [[28, 28], [32, 32]]\n[train]\nlr_milestones = [82, 123]\n";
        let keys: Vec<String> = super::axes(&toml::from_str(data).unwrap()).into_iter().map(|a| a.key).collect();
        assert_eq!(keys, ["data.size"], "per-channel statistics and milestones are values");
    }

    fn axes_values(table: &toml::Table) -> Vec<Vec<String>> {
        axes(table).into_iter().map(|a| a.values).collect()
    }

    #[test]
    fn words_with_quotes_or_spaces_stay_one_shell_word() {
        assert_eq!(quote("prune.target=0.9"), "prune.target=0.9");
        assert_eq!(quote("prune.criterion=\"l1\""), "'prune.criterion=\"l1\"'");
        assert_eq!(quote("it's here"), r"'it'\''s here'");
        assert_eq!(quote(""), "''");
    }
}
