//! Run directories: where they go, how a command claims or opens one, and how files in them
//! are written.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};

use super::lock::{Access, LOCK_FILE, RunLock, lock};

/// Creates `<out>/<name>-<UTC timestamp>`, adding `-2`, `-3`, ... if a run started in the
/// same second already took the name.
pub fn create_run_dir(out: &Path, name: &str) -> Result<PathBuf> {
    create_dir_durable(out).with_context(|| {
        format!("{}: cannot create the output directory; fix: pass a writable --out", out.display())
    })?;
    let stamp = utc_timestamp(SystemTime::now());
    for attempt in 1.. {
        let dir = match attempt {
            1 => out.join(format!("{name}-{stamp}")),
            n => out.join(format!("{name}-{stamp}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                sync_dir(out)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: cannot create the run directory", dir.display())),
        }
    }
    unreachable!("the attempts never run out")
}

/// `dir` as a new run's directory, created if need be: it must be empty, or hold no more than
/// what a run that failed before training leaves (its config).
pub fn claim_run_dir(dir: &Path) -> Result<PathBuf> {
    create_dir_durable(dir).with_context(|| {
        format!("{}: cannot create the run directory; fix: pass a writable --run-dir", dir.display())
    })?;
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    let other = entries.flatten().map(|e| e.file_name()).find(|name| name != "config.toml" && name != LOCK_FILE);
    if let Some(name) = other {
        return Err(anyhow!(
            "{}: --run-dir holds {} but no coppice run to resume; fix: pass a new or empty directory",
            dir.display(),
            name.to_string_lossy()
        ));
    }
    Ok(dir.to_path_buf())
}

/// A finished run to read from (`eval`, `export`, `finetune`, `prune.from`, `model.init`),
/// locked against a process still writing it.
pub fn open_saved_run(dir: &Path) -> Result<RunLock> {
    if !dir.is_dir() {
        return Err(anyhow!(
            "{}: no such run directory; fix: pass a directory that `coppice run` printed (under runs/ by default)",
            dir.display()
        ));
    }
    let lock = lock(dir, Access::Read)?;
    if !dir.join("model.bpk").is_file() {
        let hint = if dir.join("checkpoints").is_dir() || dir.join("train").is_dir() {
            format!("the run has not finished; fix: resume it with `coppice run --resume {}`", dir.display())
        } else {
            "fix: pass a directory that `coppice run` printed".to_string()
        };
        return Err(anyhow!("{}: holds no trained model (model.bpk); {hint}", dir.display()));
    }
    Ok(lock)
}

/// The error of the last attempt at a `--run-dir` run that failed: `run` writes it, `sweep
/// --collect` reports it.
pub const FAILURE_FILE: &str = "failed.txt";

/// Passes `result` on; when it is an error and the run directory holds nothing but its config
/// (the run failed before it trained anything), removes the directory, so that failures leave
/// no empty runs behind. A run that trained keeps its directory, to resume from.
pub fn discard_if_unused<T>(dir: &Path, result: Result<T>) -> Result<T> {
    if result.is_err() {
        let entries: Option<Vec<_>> = std::fs::read_dir(dir).ok().map(|e| e.flatten().map(|e| e.file_name()).collect());
        if entries.is_some_and(|names| names.iter().all(|name| name == "config.toml" || name == LOCK_FILE)) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

/// Writes through a temporary file and a rename, so a reader or an interrupted run never sees
/// half a file, and flushes both to the disk, so a crash or a power loss after it returns
/// leaves the new file: without the flushes the rename can reach the disk before the data and
/// leave an empty or torn file under the final name.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = temporary_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        std::io::Write::write_all(&mut file, contents)?;
        file.sync_all()
    });
    written.with_context(|| format!("{}: cannot write", tmp.display()))?;
    commit_rename(&tmp, path)
}

/// Renames a file that is already on the disk into place and flushes its directory, so the
/// new name survives a power loss: the last step of every write coppice commits.
pub fn commit_rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| format!("{}: cannot rename into place", to.display()))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Creates `dir` (and what is missing above it) so that it survives a power loss: a file
/// flushed into a directory whose own entry never reached the disk is lost with it.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for created in missing {
        sync_dir(created.parent().unwrap_or(Path::new("."))).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Flushes a directory's entries (names created, renamed or removed in it) to the disk. Only
/// Unix lets a directory be opened and flushed; elsewhere the rename is as durable as the
/// file system makes it. The empty path, a relative file's parent, is the current directory.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: cannot flush the directory to the disk", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The sibling a file is first written to before it is renamed into place.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `YYYYMMDD-HHMMSS` in UTC, without a date crate: days since the epoch to a civil date
/// (Howard Hinnant's algorithm).
pub fn utc_timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_parent_of_a_relative_name_is_the_current_directory() {
        // `runs` has the parent "", which `--out runs/x` created and flushed on a fresh clone.
        assert_eq!(Path::new("runs").parent(), Some(Path::new("")));
        sync_dir(Path::new("runs").parent().unwrap()).unwrap();
    }

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)), "20240229-123456");
    }

    #[test]
    fn run_dirs_never_collide() {
        let out = std::env::temp_dir().join(format!("coppice-rundir-{}", std::process::id()));
        let a = create_run_dir(&out, "x").unwrap();
        let b = create_run_dir(&out, "x").unwrap();
        assert_ne!(a, b);
        write_atomic(&a.join("f.txt"), b"hello").unwrap();
        assert_eq!(std::fs::read(a.join("f.txt")).unwrap(), b"hello");
        assert!(!temporary_path(&a.join("f.txt")).exists());
        create_dir_durable(&a.join("b/c")).unwrap();
        write_atomic(&a.join("b/c/g.txt"), b"flushed").unwrap();
        assert_eq!(std::fs::read(a.join("b/c/g.txt")).unwrap(), b"flushed");
        std::fs::remove_dir_all(out).unwrap();
    }
}
