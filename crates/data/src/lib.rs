//! Data loading for coppice: MNIST from IDX files, CIFAR-10 from its binary
//! batches, folders of PNG and JPEG images sorted by class, deterministic splits, synthetic sets for tests, and burn
//! `Dataset`/`Batcher` adapters.

pub mod augment;
pub mod checksums;
pub mod cifar;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod idx;
pub mod images;
pub mod split;
pub mod synthetic;
pub mod table;

pub use augment::Augment;
pub use cifar::{CIFAR_PIXELS, CIFAR_RECORD, CIFAR10_CLASSES, CifarSplit, load_cifar10, write_cifar_batch};
pub use dataset::{ImageBatch, ImageBatcher, ImageDataset, ImageItem, Normalization};
pub use error::{DataError, Result};
pub use folder::{FolderData, FolderOptions, load_folder, write_image_folder};
pub use idx::{IMAGES_MAGIC, IdxArray, LABELS_MAGIC, read_idx, write_idx};
pub use images::{ImageSet, MnistSplit, load_mnist};
pub use split::{SplitMix64, shuffled_indices, train_valid_split};
pub use synthetic::synthetic_images;
pub use table::Table;

/// A fresh, empty directory per call, so tests can run in parallel without the tempfile crate.
#[cfg(test)]
pub(crate) fn scratch_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("coppice-data-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
