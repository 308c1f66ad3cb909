//! Every file of a run that coppice reads back (the model and its architecture, the round
//! checkpoints and their records, the epoch journal, exports) has its SHA-256 in the
//! `SHA256SUMS` of its directory, in `sha256sum`'s format, and is checked against it when read:
//! a damaged file is a clear error instead of a network that silently computes something else.
//! The check cannot be skipped: a directory without `SHA256SUMS`, or a file it does not list, is
//! refused too (deleting the sums would otherwise turn the check off); `coppice reseal`
//! records them again once a person has checked the files. burn-train's own epoch checkpoints
//! (`train/checkpoint/`) are not listed: burn-train writes them in the background and reads them
//! itself.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
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

/// The contents of `dir/name`, checked against `dir/SHA256SUMS`, after settling a replacement
/// that a crash cut short. A missing `SHA256SUMS`, or one that does not list the file, is an
/// error: the check would otherwise be skipped by deleting a line.
pub fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    settle(dir, name)?;
    let path = dir.join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let sums_path = dir.join(SUMS);
    if !sums_path.is_file() {
        return Err(anyhow!(
            "{}: has no {SUMS}, so {name} cannot be checked; fix: restore {SUMS}, or check the files and run `coppice reseal {}`",
            dir.display(),
            dir.display()
        ));
    }
    let sums = read_sums(&sums_path)?;
    if !sums.contains_key(name) {
        return Err(anyhow!(
            "{}: not listed in {}, so it cannot be checked; fix: restore {SUMS}, or check the file and run `coppice reseal {}`",
            path.display(),
            sums_path.display(),
            dir.display()
        ));
    }
    verify(&path, name, &bytes, &sums)?;
    Ok(bytes)
}

/// The files coppice checks when it reads them back, wherever they lie in a run directory (its
/// top, `checkpoints/`, `checkpoints/round-<r>/`, `export/`), besides weights files of any name
/// (an export renamed, or kept beside others).
const CHECKED: [&str; 3] = ["architecture.json", "progress.json", "dense-epochs.json"];
const WEIGHTS: [&str; 2] = [".bpk", ".safetensors"];

fn is_checked(name: &str) -> bool {
    CHECKED.contains(&name) || WEIGHTS.iter().any(|ending| name.ends_with(ending))
}

/// `coppice reseal DIR`: records the sums of the checked files in `dir` and the directories
/// below it that hold some (burn-train's `train/` aside) as they are now, and returns each
/// directory with the files it recorded. For after a person has checked the files: a damaged
/// file resealed is taken for good.
pub fn reseal(dir: &Path) -> Result<Vec<(std::path::PathBuf, Vec<String>)>> {
    let mut sealed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for name in ["progress.json", "dense-epochs.json"] {
            settle(&dir, name)?;
        }
        let entries = std::fs::read_dir(&dir).with_context(|| format!("{}: cannot read", dir.display()))?;
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        let names: Vec<String> = paths
            .iter()
            .filter(|p| p.is_file())
            .filter_map(|p| p.file_name()?.to_str().filter(|name| is_checked(name)).map(str::to_string))
            .collect();
        if !names.is_empty() {
            record(&dir, &names.iter().map(String::as_str).collect::<Vec<_>>())?;
            sealed.push((dir.clone(), names));
        }
        pending.extend(paths.into_iter().filter(|p| p.is_dir() && !p.ends_with("train")).rev());
    }
    if sealed.is_empty() {
        return Err(anyhow!(
            "{}: holds none of the files coppice checks ({}, *{}); fix: pass a run, checkpoint or export directory",
            dir.display(),
            CHECKED.join(", "),
            WEIGHTS.join(", *")
        ));
    }
    Ok(sealed)
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

    #[test]
    fn missing_sums_or_a_missing_entry_are_refused_until_resealed() {
        let dir = scratch("mandatory");
        std::fs::write(dir.join("model.bpk"), b"weights").unwrap();
        let error = read(&dir, "model.bpk").unwrap_err().to_string();
        assert!(error.contains("has no SHA256SUMS") && error.contains("coppice reseal"), "{error}");

        std::fs::write(dir.join("architecture.json"), b"{}").unwrap();
        record(&dir, &["architecture.json"]).unwrap();
        let error = read(&dir, "model.bpk").unwrap_err().to_string();
        assert!(error.contains("model.bpk: not listed in") && error.contains("coppice reseal"), "{error}");

        std::fs::create_dir_all(dir.join("export")).unwrap();
        std::fs::write(dir.join("export/model.sparse.safetensors"), b"sparse").unwrap();
        std::fs::create_dir_all(dir.join("train")).unwrap();
        std::fs::write(dir.join("train/model.bpk"), b"burn-train's").unwrap();
        let sealed = reseal(&dir).unwrap();
        assert_eq!(sealed.len(), 2, "the run and its export, not train/: {sealed:?}");
        assert_eq!(read(&dir, "model.bpk").unwrap(), b"weights");
        assert_eq!(read(&dir.join("export"), "model.sparse.safetensors").unwrap(), b"sparse");
        assert!(!dir.join("train").join(SUMS).exists());

        let empty = scratch("mandatory-empty");
        assert!(reseal(&empty).unwrap_err().to_string().contains("holds none of the files coppice checks"));
    }
}
