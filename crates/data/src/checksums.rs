//! `SHA256SUMS` files, as `sha256sum` writes and checks them: what a dataset directory ships
//! with, and what coppice writes next to every file of a run it later reads back.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// File name to hash, from `sha256sum` output at `path`; an absent file means "nothing to
/// verify".
pub fn read_sums(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(DataError::Io { path: path.to_path_buf(), source });
        }
    };
    let mut sums = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // sha256sum writes "<hex>  <name>", or "<hex> *<name>" in binary mode.
        let parsed = line.split_once(' ').and_then(|(hash, rest)| {
            let name = rest.strip_prefix([' ', '*'])?;
            let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty();
            ok.then(|| (name.to_string(), hash.to_ascii_lowercase()))
        });
        let (name, hash) = parsed.ok_or_else(|| DataError::ChecksumList { path: path.to_path_buf(), line: i + 1 })?;
        sums.insert(name, hash);
    }
    Ok(sums)
}

/// `sums` as `sha256sum` writes them, so that `sha256sum -c SHA256SUMS` checks the files.
pub fn render_sums(sums: &BTreeMap<String, String>) -> String {
    sums.iter().map(|(name, hash)| format!("{hash}  {name}\n")).collect()
}

/// The contents of the file at `path`, named `name` in `sums`, against its listed hash when it
/// is listed.
pub fn verify(path: &Path, name: &str, bytes: &[u8], sums: &BTreeMap<String, String>) -> Result<()> {
    match sums.get(name) {
        Some(expected) => {
            let actual = sha256_hex(bytes);
            if &actual == expected {
                Ok(())
            } else {
                Err(DataError::Checksum { path: path.to_path_buf(), expected: expected.clone(), actual })
            }
        }
        None => Ok(()),
    }
}
