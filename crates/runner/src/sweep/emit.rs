//! `coppice sweep --emit`: a sweep's points as command lines for an engine that already exists,
//! GNU parallel or a Slurm job array, instead of child processes of this one.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::{COMMANDS_FILE, CONFIG_FILE, Plan, point_dir, prepare};
use crate::rundir::write_atomic;

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
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_with_quotes_or_spaces_stay_one_shell_word() {
        assert_eq!(quote("prune.target=0.9"), "prune.target=0.9");
        assert_eq!(quote("prune.criterion=\"l1\""), "'prune.criterion=\"l1\"'");
        assert_eq!(quote("it's here"), r"'it'\''s here'");
        assert_eq!(quote(""), "''");
    }
}
