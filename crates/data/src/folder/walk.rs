//! Finding the classes and image files of an image folder without ever looping: directories are
//! followed through symbolic links (users link class folders in), and a link back into the
//! folders being read is refused instead of walked forever.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Labels are one byte.
pub const MAX_CLASSES: usize = 256;

/// One split's class folders, sorted by name, each with its image files, sorted by path.
pub struct SplitFiles {
    pub classes: Vec<(String, Vec<PathBuf>)>,
}

impl SplitFiles {
    pub fn count(&self) -> usize {
        self.classes.iter().map(|(_, files)| files.len()).sum()
    }
}

/// The class folders of `split_dir` and their images; every class must hold at least one.
pub fn split_files(split_dir: &Path) -> Result<SplitFiles> {
    if !split_dir.is_dir() {
        return Err(DataError::FolderMissing { path: split_dir.to_path_buf() });
    }
    let mut classes = Vec::new();
    for path in sorted_entries(split_dir)? {
        if !is_dir(&path)? {
            continue;
        }
        let name =
            path.file_name().and_then(|n| n.to_str()).map(str::to_string).ok_or_else(|| DataError::BadImage {
                path: path.clone(),
                detail: "the folder name is not UTF-8, and class names are written into the run as text".into(),
            })?;
        let mut files = Vec::new();
        walk(&path, &mut Vec::new(), &mut files)?;
        if files.is_empty() {
            return Err(DataError::EmptyClass { path });
        }
        files.sort();
        classes.push((name, files));
    }
    if classes.is_empty() {
        return Err(DataError::NoClasses { path: split_dir.to_path_buf() });
    }
    if classes.len() > MAX_CLASSES {
        return Err(DataError::TooManyClasses { path: split_dir.to_path_buf(), count: classes.len() });
    }
    Ok(SplitFiles { classes })
}

/// `ancestors` holds the resolved folders from the class folder down to `dir`'s parent: a folder
/// that resolves to one of them is a loop.
fn walk(dir: &Path, ancestors: &mut Vec<PathBuf>, files: &mut Vec<PathBuf>) -> Result<()> {
    let real = fs::canonicalize(dir).map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
    if ancestors.contains(&real) {
        return Err(DataError::SymlinkLoop { path: dir.to_path_buf(), target: real });
    }
    ancestors.push(real);
    for path in sorted_entries(dir)? {
        if is_dir(&path)? {
            walk(&path, ancestors, files)?;
        } else if is_image_name(&path) {
            files.push(path);
        }
    }
    ancestors.pop();
    Ok(())
}

/// Entries of `dir` without hidden ones (`.DS_Store`, editors' files), sorted by path.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Whether `path` is a folder, through symbolic links; a link that cannot be resolved is named.
fn is_dir(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(source) if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            Err(DataError::BrokenLink { path: path.to_path_buf(), source })
        }
        Err(source) => Err(DataError::Io { path: path.to_path_buf(), source }),
    }
}

fn is_image_name(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}
