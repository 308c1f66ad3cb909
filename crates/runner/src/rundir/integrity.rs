//! Every file of a run that coppice reads back (the model and its architecture, the round
//! checkpoints and their records, the epoch journal, exports) has its SHA-256 in the
//! `SHA256SUMS` of its directory, in `sha256sum`'s format, and is checked against it when read:
//! a damaged file is a clear error instead of a network that silently computes something else.
//! Runs written before the sums existed have none, and load as they did. burn-train's own epoch
//! checkpoints (`train/checkpoint/`) are not listed: burn-train writes them in the background
//! and reads them itself.

use std::path::Path;

use anyhow::{Context, Result};
use coppice_data::checksums::{read_sums, render_sums, sha256_hex, verify};

use super::dir::{commit_rename, write_atomic};

pub const SUMS: &str = "SHA256SUMS";

/// Records the SHA-256 of each of `names` in `dir`, as they are on disk now.
pub fn record(dir: &Path, names: &[&str]) -> Result<()> {
    let path = dir.join(SUMS);
    let mut sums = read_sums(&path)?;
    for name in names {
        let file = dir.join(name);
        let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read to record it", file.display()))?;
        sums.insert(name.to_string(), sha256_hex(&bytes));
    }
    write_atomic(&path, render_sums(&sums).as_bytes())
}

/// Replaces `dir/name` with `bytes` so that a crash at any moment leaves the old file with its
/// recorded sum or the new one with its own, never a file that fails its check: the new contents
/// wait beside the old (`name.next`), their sum is recorded (the commit), then they take the old
/// file's place. [`settle`] finishes or drops a replacement that a crash cut short.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let next = pending(dir, name);
    write_atomic(&next, bytes)?;
    let path = dir.join(SUMS);
    let mut sums = read_sums(&path)?;
    sums.insert(name.to_string(), sha256_hex(bytes));
    write_atomic(&path, render_sums(&sums).as_bytes())?;
    commit_rename(&next, &dir.join(name))
}

/// Where [`replace`] puts a file's new contents before they take its place.
fn pending(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.next"))
}

/// A [`replace`] of `dir/name` that a crash cut short: committed (its sum recorded), the new
/// contents take their place; not committed, they are dropped and the old file stands.
pub fn settle(dir: &Path, name: &str) -> Result<()> {
    let next = pending(dir, name);
    let Ok(bytes) = std::fs::read(&next) else {
        return Ok(());
    };
    let committed = read_sums(&dir.join(SUMS))?.get(name).is_some_and(|sum| *sum == sha256_hex(&bytes));
    if committed {
        commit_rename(&next, &dir.join(name))
    } else {
        std::fs::remove_file(&next).with_context(|| format!("{}: cannot remove", next.display()))
    }
}

/// The contents of `dir/name`, checked against `dir/SHA256SUMS` when that lists the file, after
/// settling a replacement that a crash cut short.
pub fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    settle(dir, name)?;
    let path = dir.join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    verify(&path, name, &bytes, &read_sums(&dir.join(SUMS))?)?;
    Ok(bytes)
}

/// [`read`] as text.
pub fn read_text(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    String::from_utf8(read(dir, name)?).with_context(|| format!("{}: not text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("coppice-integrity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_replacement_cut_short_reads_as_the_old_or_the_new_file_never_as_damage() {
        let dir = scratch("replace");
        replace(&dir, "progress.json", b"round 1").unwrap();
        replace(&dir, "progress.json", b"round 2").unwrap();
        assert_eq!(read(&dir, "progress.json").unwrap(), b"round 2");
        assert!(!pending(&dir, "progress.json").exists());

        // Killed after the new contents were written beside the old, before the commit.
        std::fs::write(pending(&dir, "progress.json"), b"round 3").unwrap();
        assert_eq!(read(&dir, "progress.json").unwrap(), b"round 2", "the old file stands");
        assert!(!pending(&dir, "progress.json").exists(), "the uncommitted contents are dropped");

        // Killed after the commit, before the rename.
        std::fs::write(pending(&dir, "progress.json"), b"round 3").unwrap();
        let mut sums = read_sums(&dir.join(SUMS)).unwrap();
        sums.insert("progress.json".into(), sha256_hex(b"round 3"));
        std::fs::write(dir.join(SUMS), render_sums(&sums)).unwrap();
        assert_eq!(read(&dir, "progress.json").unwrap(), b"round 3", "the commit is finished");

        // Damage is still damage.
        std::fs::write(dir.join("progress.json"), b"round 9").unwrap();
        assert!(read(&dir, "progress.json").unwrap_err().to_string().contains("damaged"));
    }
}
