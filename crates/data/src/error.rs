//! Errors for loading image data. Each message is a single line that names the
//! file, says what is wrong with it and how to fix it, so that a failed run can be
//! diagnosed from its log alone.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading a dataset from disk.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {}", path.display(), describe_io(source))]
    Io { path: PathBuf, source: io::Error },

    #[error(
        "{}: truncated: expected {expected_bytes} bytes of IDX data but found {actual_bytes} \
         (counted after decompression for .gz files); re-download or restore the file",
        path.display()
    )]
    Truncated { path: PathBuf, expected_bytes: u64, actual_bytes: u64 },

    #[error(
        "{}: more than the {expected_bytes} bytes its header declares (counted after decompression \
         for .gz files, which is stopped there); the file is corrupt or mislabelled, re-download or \
         restore it",
        path.display()
    )]
    TrailingBytes { path: PathBuf, expected_bytes: u64 },

    #[error(
        "{}: not an IDX {} file (magic {found:#010x}, expected {expected:#010x}); \
         check that the images and labels files are not swapped and re-download if needed",
        path.display(), kind
    )]
    BadMagic { path: PathBuf, found: u32, expected: u32, kind: &'static str },

    #[error("{}: bad dimensions: {detail}; re-download or restore the file", path.display())]
    BadDims { path: PathBuf, detail: String },

    #[error(
        "{}: gzip stream is corrupt or truncated ({detail}); re-download or restore the file",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "{} holds {images} images but {} holds {labels} labels; \
         the two files come from different splits or versions, restore a matching pair",
        images_path.display(), labels_path.display()
    )]
    CountMismatch { images_path: PathBuf, labels_path: PathBuf, images: usize, labels: usize },

    #[error(
        "{}: sha256 is {actual} but SHA256SUMS lists {expected}; the file is damaged or was \
         replaced, restore it (or regenerate SHA256SUMS if the change is intended)",
        path.display()
    )]
    Checksum { path: PathBuf, expected: String, actual: String },

    #[error(
        "{}: line {line} is not `<sha256 hex>  <file name>`; \
         regenerate it with `sha256sum *.gz > SHA256SUMS`",
        path.display()
    )]
    ChecksumList { path: PathBuf, line: usize },

    #[error(
        "{}: label {label} at index {index} is outside 0..{classes}; \
         the labels file is corrupt, re-download or restore it",
        path.display()
    )]
    BadLabel { path: PathBuf, index: usize, label: u8, classes: usize },

    #[error(
        "{}: file not found; CIFAR-10 is not bundled: download the \"CIFAR-10 binary version\" \
         from https://www.cs.toronto.edu/~kriz/cifar.html and extract its *.bin files into `data.dir`",
        path.display()
    )]
    CifarMissing { path: PathBuf },

    #[error(
        "{}: truncated: {actual_bytes} bytes, expected a non-zero multiple of {record_bytes} \
         (one label byte plus the pixels per record); re-download or re-extract the file",
        path.display()
    )]
    RecordLength { path: PathBuf, actual_bytes: u64, record_bytes: usize },

    #[error(
        "{}: not a folder; fix: with data.dataset = \"folder\", data.dir must hold train/<class>/ and \
         test/<class>/ folders of .png or .jpg images (and optionally valid/<class>/)",
        path.display()
    )]
    FolderMissing { path: PathBuf },

    #[error(
        "{}: holds no class folders; fix: put each class's images in a folder named after the class, \
         e.g. {}/cat/1.png",
        path.display(), path.display()
    )]
    NoClasses { path: PathBuf },

    #[error(
        "{}: the class folder holds no .png, .jpg or .jpeg images; fix: add images or remove the folder",
        path.display()
    )]
    EmptyClass { path: PathBuf },

    #[error(
        "{}: class {class:?} is not among the training classes ({known}); fix: add {class}/ to the \
         training folder or remove it here",
        path.display()
    )]
    UnknownClass { path: PathBuf, class: String, known: String },

    #[error(
        "{}: {count} class folders, and labels are one byte; fix: at most 256 classes",
        path.display()
    )]
    TooManyClasses { path: PathBuf, count: usize },

    #[error(
        "{}: cannot decode the image ({detail}); fix: replace or delete the file, or set \
         data.skip_bad_images = true to skip bad images with a warning",
        path.display()
    )]
    BadImage { path: PathBuf, detail: String },

    #[error(
        "{}: {width}x{height} pixels, but {} is {first_width}x{first_height}; fix: set data.size = \
         [height, width], e.g. [{first_height}, {first_width}], to resize every image",
        path.display(), first.display()
    )]
    MixedSizes { path: PathBuf, width: u32, height: u32, first: PathBuf, first_width: u32, first_height: u32 },

    #[error(
        "{}: {what} need about {needed_bytes} bytes of memory and {available_bytes} are available; \
         fix: a smaller data.size, fewer images, or a machine with more memory",
        path.display()
    )]
    TooLarge { path: PathBuf, what: String, needed_bytes: u128, available_bytes: u128 },

    #[error(
        "{}: a symbolic link back to {}, which is already being read (a loop); fix: remove the link",
        path.display(), target.display()
    )]
    SymlinkLoop { path: PathBuf, target: PathBuf },

    #[error(
        "{}: a symbolic link that leads nowhere or to itself ({source}); fix: remove or repair the link",
        path.display()
    )]
    BrokenLink { path: PathBuf, source: io::Error },
}

pub type Result<T> = std::result::Result<T, DataError>;

fn describe_io(err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::NotFound {
        "file not found; check `data.dir` in the config and that the datasets/ folder was \
         cloned (files may be raw or .gz)"
            .to_string()
    } else {
        format!("cannot read file ({err}); check that it exists and is readable")
    }
}
