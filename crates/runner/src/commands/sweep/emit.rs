//! `coppice sweep --emit`: a sweep's points as command lines for an engine that already exists,
//! GNU parallel or a Slurm job array, instead of child processes of this one.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::prepare::{prepare, quote};
use crate::rundir::dir::write_atomic;
use crate::sweepdir::{COMMANDS_FILE, Plan};

/// What `--emit` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// One `coppice run` line per point.
    Commands,
    /// A Slurm job-array script whose task N runs point N.
    Slurm,
}

impl std::str::FromStr for Emit {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "commands" => Ok(Emit::Commands),
            "slurm" => Ok(Emit::Slurm),
            other => Err(anyhow!("--emit {other:?}: unknown; fix: use commands or slurm")),
        }
    }
}

/// Makes the sweep directory and prints what `emit` asks for on stdout (the sweep directory
/// goes to stderr, so that stdout can be piped to the engine).
pub fn emit(config: &Path, overrides: &[String], out: &Path, backend: Option<&str>, emit: Emit) -> Result<PathBuf> {
    let (sweep_dir, plan) = prepare(config, overrides, out, backend)?;
    let commands = std::fs::read_to_string(sweep_dir.join(COMMANDS_FILE))?;
    let text = match emit {
        Emit::Commands => commands,
        Emit::Slurm => {
            let script = slurm_script(&sweep_dir, &plan);
            write_atomic(&sweep_dir.join("sweep.slurm"), script.as_bytes())?;
            script
        }
    };
    print!("{text}");
    eprintln!(
        "sweep of {} runs -> {}; when they have run: coppice sweep --collect {}",
        plan.points.len(),
        sweep_dir.display(),
        sweep_dir.display()
    );
    Ok(sweep_dir)
}

/// A job array over the points: task N runs line N + 1 of `commands.txt`. Resubmitting a task
/// resumes its run.
fn slurm_script(sweep_dir: &Path, plan: &Plan) -> String {
    let name = sweep_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into());
    let commands = quote(&sweep_dir.join(COMMANDS_FILE).display().to_string());
    format!(
        "#!/bin/bash\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --output={log}\n\
         # Add what your cluster needs here, e.g. #SBATCH --cpus-per-task=4, --gres=gpu:1, --time=02:00:00\n\
         set -euo pipefail\n\
         line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {commands})\n\
         exec bash -c \"$line\"\n",
        last = plan.points.len().saturating_sub(1),
        log = sweep_dir.join("slurm-%a.out").display(),
    )
}
