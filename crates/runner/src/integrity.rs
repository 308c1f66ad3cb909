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

use crate::rundir::write_atomic;

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

/// The contents of `dir/name`, checked against `dir/SHA256SUMS` when that lists the file.
pub fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
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
