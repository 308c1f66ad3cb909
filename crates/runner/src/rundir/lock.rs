//! Advisory locks on run directories, so that two processes never write one run, and nothing
//! reads a run another process is still writing: `run` and `--resume` hold a directory
//! exclusively while they run; `eval`, `export` and `finetune` share their run's lock, so they
//! wait for no one but are refused while the run is written.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// Held while it lives; the lock ends with the process at the latest.
pub struct RunLock {
    _file: File,
}

/// The lock file in a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Whether a lock keeps others out, or only writers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Write,
    Read,
}

/// Locks `dir` (a run directory) for `access`, or says which process holds it.
pub fn lock(dir: &Path, access: Access) -> Result<RunLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open the run directory's lock", path.display()))?;
    if !try_lock(&file, access) {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let by = if holder.is_empty() { String::new() } else { format!(" by pid {holder}") };
        return Err(anyhow!(
            "{}: run directory in use{by}; fix: wait until it ends, or stop it (Ctrl-C, or kill -INT) and resume it with `coppice run --resume {}`",
            dir.display(),
            dir.display()
        ));
    }
    if access == Access::Write {
        // The pid is only a hint for the message above; the lock is what counts.
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
    }
    Ok(RunLock { _file: file })
}

#[cfg(unix)]
fn try_lock(file: &File, access: Access) -> bool {
    use std::os::fd::AsRawFd;
    let kind = match access {
        Access::Write => libc::LOCK_EX,
        Access::Read => libc::LOCK_SH,
    };
    // SAFETY: flock only reads the descriptor of `file`, which stays open while it is locked.
    unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &File, _access: Access) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_keeps_out_writers_and_readers_and_readers_share() {
        let dir = std::env::temp_dir().join(format!("coppice-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let writer = lock(&dir, Access::Write).unwrap();
        let refused = lock(&dir, Access::Write).err().unwrap().to_string();
        assert!(refused.contains("in use by pid") && refused.contains(&std::process::id().to_string()), "{refused}");
        assert!(lock(&dir, Access::Read).is_err());
        drop(writer);
        let reader = lock(&dir, Access::Read).unwrap();
        let another = lock(&dir, Access::Read).unwrap();
        assert!(lock(&dir, Access::Write).is_err());
        drop((reader, another));
        assert!(lock(&dir, Access::Write).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
