//! Image folders: `DIR/train/<class>/*.png|jpg|jpeg`, `DIR/test/<class>/...` and optionally
//! `DIR/valid/<class>/...`, the way people sort their own images. Class names are the sorted
//! training folder names; a label is a class's index among them.

mod decode;
mod walk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::images::ImageSet;

pub use decode::write_png;
use walk::{SplitFiles, split_files};

/// How to read a folder; the fields mirror the config's `data.*` keys named in the errors.
#[derive(Clone, Debug, Default)]
pub struct FolderOptions {
    /// 1 or 3; `None`: 3 if any training image has colour, else 1.
    pub channels: Option<usize>,
    /// `[height, width]`; `None`: the images' own size, which must then be the same for all.
    pub size: Option<[usize; 2]>,
    /// Skip unreadable images with a warning instead of refusing the folder.
    pub skip_bad_images: bool,
    /// Bytes of memory free for the decoded images; `None`: unchecked.
    pub available_memory: Option<u128>,
}

/// The splits of an image folder, decoded.
#[derive(Clone, Debug)]
pub struct FolderData {
    pub train: ImageSet,
    /// Present when the folder has `valid/`.
    pub valid: Option<ImageSet>,
    pub test: ImageSet,
    pub class_names: Vec<String>,
    /// One line per skipped image: the file and why.
    pub warnings: Vec<String>,
}

/// What the folder would decode to before it is decoded.
struct Plan {
    channels: usize,
    size: [usize; 2],
}

pub fn load_folder(dir: &Path, options: &FolderOptions) -> Result<FolderData> {
    if !dir.is_dir() {
        return Err(DataError::FolderMissing { path: dir.to_path_buf() });
    }
    let train = split_files(&dir.join("train"))?;
    let class_names: Vec<String> = train.classes.iter().map(|(name, _)| name.clone()).collect();
    let test = split_files(&dir.join("test"))?;
    check_classes(&dir.join("test"), &test, &class_names)?;
    let valid_dir = dir.join("valid");
    let valid = if valid_dir.exists() { Some(split_files(&valid_dir)?) } else { None };
    if let Some(valid) = &valid {
        check_classes(&valid_dir, valid, &class_names)?;
    }

    let mut warnings = Vec::new();
    let mut skipped = BTreeSet::new();
    let splits: Vec<&SplitFiles> = [Some(&train), valid.as_ref(), Some(&test)].into_iter().flatten().collect();
    let (plan, largest) = plan(dir, &splits, options, &mut skipped)?;
    warnings.extend(skipped.iter().map(|(_, err)| format!("skipped {err}")));
    let skipped: BTreeSet<PathBuf> = skipped.into_iter().map(|(path, _)| path).collect();
    let pixels = plan.channels as u128 * plan.size[0] as u128 * plan.size[1] as u128;
    let images: usize = splits.iter().map(|s| s.count()).sum();
    // The largest decoded file is added because one is held alongside the set while it is converted.
    let needed = pixels * images as u128 + largest.1;
    if let Some(available) = options.available_memory.filter(|&a| needed > a) {
        let what = format!("{images} images of {}x{}x{} pixels", plan.channels, plan.size[0], plan.size[1]);
        return Err(DataError::TooLarge {
            path: dir.to_path_buf(),
            what,
            needed_bytes: needed,
            available_bytes: available,
        });
    }
    let max_alloc = options.available_memory.map_or(u64::MAX, |a| u64::try_from(a).unwrap_or(u64::MAX));
    let mut decode_split = |files: &SplitFiles| -> Result<ImageSet> {
        let mut set = ImageSet {
            images: Vec::with_capacity(files.count() * pixels as usize),
            labels: Vec::with_capacity(files.count()),
            channels: plan.channels,
            height: plan.size[0],
            width: plan.size[1],
            classes: class_names.len(),
        };
        for (name, paths) in &files.classes {
            let label = class_names.iter().position(|c| c == name).expect("checked against the training classes");
            for path in paths.iter().filter(|p| !skipped.contains(*p)) {
                let before = set.images.len();
                match decode::decode_into(path, plan.channels, plan.size, max_alloc, &mut set.images) {
                    Ok(()) => set.labels.push(label as u8),
                    Err(err @ DataError::BadImage { .. }) if options.skip_bad_images => {
                        set.images.truncate(before);
                        warnings.push(format!("skipped {err}"));
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(set)
    };
    let train_set = decode_split(&train)?;
    let valid_set = valid.as_ref().map(&mut decode_split).transpose()?;
    let test_set = decode_split(&test)?;
    Ok(FolderData { train: train_set, valid: valid_set, test: test_set, class_names, warnings })
}

fn check_classes(split_dir: &Path, split: &SplitFiles, known: &[String]) -> Result<()> {
    match split.classes.iter().find(|(name, _)| !known.contains(name)) {
        Some((class, _)) => {
            Err(DataError::UnknownClass { path: split_dir.join(class), class: class.clone(), known: known.join(", ") })
        }
        None => Ok(()),
    }
}

/// The channels and size from the options or the headers, and the largest file's decoded bytes.
/// Files whose header cannot be read go to `skipped` with their error when the options allow.
fn plan(
    dir: &Path,
    splits: &[&SplitFiles],
    options: &FolderOptions,
    skipped: &mut BTreeSet<(PathBuf, String)>,
) -> Result<(Plan, (PathBuf, u128))> {
    let mut color = false;
    let mut first: Option<(PathBuf, u32, u32)> = None;
    let mut mixed: Option<DataError> = None;
    let mut largest = (dir.to_path_buf(), 0u128);
    for (s, split) in splits.iter().enumerate() {
        for path in split.classes.iter().flat_map(|(_, files)| files) {
            let header = match decode::header(path) {
                Ok(header) => header,
                Err(err @ DataError::BadImage { .. }) if options.skip_bad_images => {
                    skipped.insert((path.clone(), err.to_string()));
                    continue;
                }
                Err(err) => return Err(err),
            };
            // Only the training images decide the channels: test images are converted to them.
            color |= s == 0 && header.color;
            if header.decoded_bytes > largest.1 {
                largest = (path.clone(), header.decoded_bytes);
            }
            match &first {
                None => first = Some((path.clone(), header.width, header.height)),
                Some((first_path, w, h)) if mixed.is_none() && (*w, *h) != (header.width, header.height) => {
                    mixed = Some(DataError::MixedSizes {
                        path: path.clone(),
                        width: header.width,
                        height: header.height,
                        first: first_path.clone(),
                        first_width: *w,
                        first_height: *h,
                    });
                }
                Some(_) => {}
            }
        }
    }
    let Some((_, w, h)) = first else { return Err(DataError::EmptyClass { path: dir.join("train") }) };
    let size = match (options.size, mixed) {
        (Some(size), _) => size,
        (None, Some(err)) => return Err(err),
        (None, None) => [h as usize, w as usize],
    };
    if let Some(available) = options.available_memory.filter(|&a| largest.1 > a) {
        return Err(DataError::TooLarge {
            path: largest.0.clone(),
            what: "the decoded image".into(),
            needed_bytes: largest.1,
            available_bytes: available,
        });
    }
    Ok((Plan { channels: options.channels.unwrap_or(if color { 3 } else { 1 }), size }, largest))
}

/// Writes `set` as an image folder split, `dir/<class name>/<index>.png`, so that any
/// dataset (MNIST, synthetic test sets) can be turned into one.
pub fn write_image_folder(set: &ImageSet, class_names: &[String], dir: &Path) -> Result<()> {
    for name in class_names {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).map_err(|source| DataError::Io { path, source })?;
    }
    for i in 0..set.len() {
        let class = &class_names[usize::from(set.labels[i])];
        let path = dir.join(class).join(format!("{i:05}.png"));
        write_png(&path, set.image(i), set.channels, set.height, set.width)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
