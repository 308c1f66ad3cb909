//! `coppice sweep`: a grid of runs from list-valued config keys, summarized over seeds.
//!
//! A sweep is a directory: the config it was made from (`config.toml`), its plan
//! (`sweep.json`: the grid and the `--set` values of every point), one self-contained
//! `coppice run ... --run-dir point-N` line per point (`commands.txt`), the points' run
//! directories, and what `collect` makes of them (`sweep.csv`, `sweep.svg`). The points run in
//! child processes here (`--jobs`), or on any engine that runs command lines (`--emit`: GNU
//! parallel, a Slurm job array); either way the same `collect` summarizes them.
//!
//! `prepare.rs` makes the directory, `emit.rs` hands its lines on, `collect.rs` and `rounds.rs`
//! summarize it; what a sweep directory holds is `crate::sweepdir`, which `report` reads too.

pub(crate) mod collect;
pub(crate) mod emit;
pub(crate) mod prepare;
pub(crate) mod rounds;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::child::{ChildRun, Place, spawn_run};
use crate::progress::Steps;
use crate::sweepdir::{CONFIG_FILE, point_dir};
use prepare::prepare;

/// Runs the grid as child `coppice run` processes, `jobs` at a time, each in its point's
/// directory; then [`collect`](collect::collect)s them into `sweep.csv` and `sweep.svg`.
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
