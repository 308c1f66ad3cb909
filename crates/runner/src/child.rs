//! `coppice run` in child processes, for commands that run many configs (sweep, compare).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};

/// Where a child run writes.
pub enum Place {
    /// A new run directory under this one (`--out`).
    Under(PathBuf),
    /// This very directory (`--run-dir`), resumed if it holds the run already.
    At(PathBuf),
}

/// A `coppice run` in a child process.
pub struct ChildRun {
    child: std::process::Child,
    place: Place,
}

pub fn spawn_run(
    exe: &Path,
    config: &Path,
    place: Place,
    settings: &[String],
    backend: Option<&str>,
) -> Result<ChildRun> {
    let mut command = Command::new(exe);
    command.arg("run").arg(config).arg("--plain");
    match &place {
        Place::Under(out) => command.arg("--out").arg(out),
        Place::At(dir) => command.arg("--run-dir").arg(dir),
    };
    for setting in settings {
        command.arg("--set").arg(setting);
    }
    if let Some(backend) = backend {
        command.arg("--backend").arg(backend);
    }
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = command.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(ChildRun { child, place })
}

impl ChildRun {
    /// Waits for the run; its directory and `summary.json`, or its one-line error.
    pub fn finish(self) -> Result<(PathBuf, serde_json::Value)> {
        let output = self.child.wait_with_output()?;
        if !output.status.success() {
            return Err(anyhow!("{}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        let dir = match self.place {
            Place::Under(out) => std::fs::read_dir(&out)?.next().ok_or_else(|| anyhow!("no run directory"))??.path(),
            Place::At(dir) => dir,
        };
        let summary = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json"))?)?;
        Ok((dir, summary))
    }
}
