//! In-memory image classification sets and the MNIST loader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::checksums::{read_sums, verify};

use crate::error::{DataError, Result};
use crate::idx::{IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_file};

/// Images stored as one contiguous u8 buffer in `[n, channels, height, width]` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels_per_image(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Pixels of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels_per_image();
        &self.images[i * p..(i + 1) * p]
    }

    /// Copies the given images, in the given order. Panics on an index `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.pixels_per_image());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet { images, labels: indices.iter().map(|&i| self.labels[i]).collect(), ..self.empty_like() }
    }

    /// The first `min(n, len())` images.
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            images: self.images[..n * self.pixels_per_image()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..self.empty_like()
        }
    }

    fn empty_like(&self) -> ImageSet {
        ImageSet { images: Vec::new(), labels: Vec::new(), ..*self }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MnistSplit {
    Train,
    Test,
}

impl MnistSplit {
    fn prefix(self) -> &'static str {
        match self {
            MnistSplit::Train => "train",
            MnistSplit::Test => "t10k",
        }
    }
}

const MNIST_CLASSES: usize = 10;

/// Loads one MNIST split from `dir`, validating every file it reads and, when
/// `dir/SHA256SUMS` exists, checking the files listed there.
pub fn load_mnist(dir: &Path, split: MnistSplit) -> Result<ImageSet> {
    let sums = read_sums(&dir.join("SHA256SUMS"))?;
    let (images_path, images_bytes) = read_checked(dir, &format!("{}-images-idx3-ubyte", split.prefix()), &sums)?;
    let (labels_path, labels_bytes) = read_checked(dir, &format!("{}-labels-idx1-ubyte", split.prefix()), &sums)?;
    let images = parse_idx(&images_path, &images_bytes, IMAGES_MAGIC)?;
    let labels = parse_idx(&labels_path, &labels_bytes, LABELS_MAGIC)?;

    let (n, height, width) = (images.dims[0], images.dims[1], images.dims[2]);
    if height == 0 || width == 0 {
        return Err(DataError::BadDims {
            path: images_path,
            detail: format!("images are {height}x{width} pixels, both sides must be non-zero"),
        });
    }
    if labels.dims[0] != n {
        return Err(DataError::CountMismatch { images_path, labels_path, images: n, labels: labels.dims[0] });
    }
    if let Some((index, &label)) = labels.data.iter().enumerate().find(|&(_, &l)| usize::from(l) >= MNIST_CLASSES) {
        return Err(DataError::BadLabel { path: labels_path, index, label, classes: MNIST_CLASSES });
    }
    Ok(ImageSet { images: images.data, labels: labels.data, channels: 1, height, width, classes: MNIST_CLASSES })
}

/// Reads `dir/name.gz`, or `dir/name` when there is no compressed copy, and
/// verifies it against `sums` if it is listed there.
fn read_checked(dir: &Path, name: &str, sums: &BTreeMap<String, String>) -> Result<(PathBuf, Vec<u8>)> {
    let gz_name = format!("{name}.gz");
    let file_name = if dir.join(&gz_name).is_file() { gz_name } else { name.to_string() };
    let path = dir.join(&file_name);
    let bytes = read_file(&path)?;
    verify(&path, &file_name, &bytes, sums)?;
    Ok((path, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::write_idx;
    use crate::scratch_dir;
    use std::fs;

    /// Writes a consistent 3-image 2x2 test split; `gzip` picks the file flavour.
    fn write_split(dir: &Path, gzip: bool, labels: &[u8]) {
        let ext = if gzip { ".gz" } else { "" };
        let pixels: Vec<u8> = (0..3 * 4).collect();
        write_idx(&dir.join(format!("t10k-images-idx3-ubyte{ext}")), IMAGES_MAGIC, &[3, 2, 2], &pixels, gzip).unwrap();
        write_idx(&dir.join(format!("t10k-labels-idx1-ubyte{ext}")), LABELS_MAGIC, &[labels.len()], labels, gzip)
            .unwrap();
    }

    #[test]
    fn loads_raw_prefers_gz_and_subsets() {
        let dir = scratch_dir("mnist-ok");
        write_split(&dir, false, &[7, 7, 7]);
        write_split(&dir, true, &[1, 2, 3]);
        let set = load_mnist(&dir, MnistSplit::Test).unwrap();
        assert_eq!((set.len(), set.channels, set.height, set.width, set.classes), (3, 1, 2, 2, 10));
        assert_eq!(set.labels, vec![1, 2, 3], "the .gz copy must win");
        assert_eq!(set.image(1), &[4, 5, 6, 7]);
        let sub = set.subset(&[2, 0]);
        assert_eq!((sub.labels.clone(), sub.image(0).to_vec()), (vec![3, 1], vec![8, 9, 10, 11]));
        assert_eq!(set.take(2).labels, vec![1, 2]);
        assert_eq!(set.take(99).len(), 3);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn count_mismatch_bad_label_and_missing() {
        let dir = scratch_dir("mnist-bad");
        let err = load_mnist(&dir, MnistSplit::Train).unwrap_err();
        assert!(err.to_string().contains(&dir.join("train-images-idx3-ubyte").display().to_string()), "{err}");
        write_split(&dir, false, &[1, 2]);
        assert!(matches!(
            load_mnist(&dir, MnistSplit::Test),
            Err(DataError::CountMismatch { images: 3, labels: 2, .. })
        ));
        write_split(&dir, false, &[1, 10, 3]);
        let err = load_mnist(&dir, MnistSplit::Test).unwrap_err();
        assert!(matches!(err, DataError::BadLabel { index: 1, label: 10, classes: 10, .. }), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn checksum_mismatch_and_bad_list() {
        let dir = scratch_dir("mnist-sums");
        write_split(&dir, true, &[1, 2, 3]);
        let labels = fs::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        let good = crate::checksums::sha256_hex(&labels);
        let wrong = "0".repeat(64);
        fs::write(dir.join("SHA256SUMS"), format!("{good}  t10k-labels-idx1-ubyte.gz\n")).unwrap();
        assert!(load_mnist(&dir, MnistSplit::Test).is_ok());
        fs::write(dir.join("SHA256SUMS"), format!("{wrong} *t10k-images-idx3-ubyte.gz\n")).unwrap();
        let err = load_mnist(&dir, MnistSplit::Test).unwrap_err();
        assert!(matches!(&err, DataError::Checksum { expected, .. } if *expected == wrong), "{err}");
        assert!(err.to_string().contains("t10k-images-idx3-ubyte.gz"));
        fs::write(dir.join("SHA256SUMS"), "\nnot a checksum line\n").unwrap();
        assert!(matches!(load_mnist(&dir, MnistSplit::Test), Err(DataError::ChecksumList { line: 2, .. })));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn bundled_mnist_test_split() {
        // At run time: a test binary reused from a clone at another path has that path baked in.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
        let dir = Path::new(&manifest_dir).join("../../datasets/mnist");
        assert!(dir.join("SHA256SUMS").is_file(), "datasets/mnist/SHA256SUMS must exist");
        let set = load_mnist(&dir, MnistSplit::Test).unwrap();
        assert_eq!((set.len(), set.height, set.width), (10_000, 28, 28));
        let mut counts = [0usize; 10];
        for &l in &set.labels {
            counts[usize::from(l)] += 1;
        }
        assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    }
}
