//! Reader and writer for the CIFAR-10 binary format: files of fixed-size records,
//! each one label byte followed by a 3x32x32 image stored channel-major.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::{DataError, Result};
use crate::images::ImageSet;

const CHANNELS: usize = 3;
const SIDE: usize = 32;
const CLASSES: usize = 10;
/// Pixels of one image; the file stores the red, green and blue planes in turn,
/// which is already `ImageSet`'s `[channels, height, width]` order.
pub const CIFAR_PIXELS: usize = CHANNELS * SIDE * SIDE;
/// Bytes of one record: the label, then the pixels.
pub const CIFAR_RECORD: usize = 1 + CIFAR_PIXELS;

/// The names of labels 0 to 9, from the dataset's `batches.meta.txt`.
pub const CIFAR10_CLASSES: [&str; CLASSES] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
const TEST_FILES: [&str; 1] = ["test_batch.bin"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CifarSplit {
    Train,
    Test,
}

impl CifarSplit {
    fn files(self) -> &'static [&'static str] {
        match self {
            CifarSplit::Train => &TRAIN_FILES,
            CifarSplit::Test => &TEST_FILES,
        }
    }
}

/// Loads one CIFAR-10 split from the extracted `cifar-10-batches-bin` files in
/// `dir`; the train split is the five data batches concatenated in order.
pub fn load_cifar10(dir: &Path, split: CifarSplit) -> Result<ImageSet> {
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        classes: CLASSES,
    };
    for name in split.files() {
        let path = dir.join(name);
        let bytes = read_batch(&path)?;
        let records = bytes.len() / CIFAR_RECORD;
        set.images.reserve(records * CIFAR_PIXELS);
        set.labels.reserve(records);
        for (index, record) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
            let label = record[0];
            if usize::from(label) >= CLASSES {
                return Err(DataError::BadLabel { path, index, label, classes: CLASSES });
            }
            set.labels.push(label);
            set.images.extend_from_slice(&record[1..]);
        }
    }
    Ok(set)
}

/// Reads a whole batch file and checks that it holds a whole number of records,
/// so that a partial download fails here instead of shifting every later image.
fn read_batch(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        // Unlike MNIST the data is not in the repository, so say where to get it.
        io::ErrorKind::NotFound => DataError::CifarMissing { path: path.to_path_buf() },
        _ => DataError::Io { path: path.to_path_buf(), source },
    })?;
    if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
        return Err(DataError::RecordLength {
            path: path.to_path_buf(),
            actual_bytes: bytes.len() as u64,
            record_bytes: CIFAR_RECORD,
        });
    }
    Ok(bytes)
}

/// Writes a CIFAR-10 batch file from `labels` and `images` (`labels.len()` images
/// of `CIFAR_PIXELS` bytes each). Labels are not range-checked, so tests can
/// write deliberately bad files.
pub fn write_cifar_batch(path: &Path, labels: &[u8], images: &[u8]) -> io::Result<()> {
    if labels.len().checked_mul(CIFAR_PIXELS) != Some(images.len()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} labels need {} image bytes, got {}",
                labels.len(),
                labels.len().saturating_mul(CIFAR_PIXELS),
                images.len()
            ),
        ));
    }
    let mut buf = Vec::with_capacity(labels.len() * CIFAR_RECORD);
    for (&label, image) in labels.iter().zip(images.chunks_exact(CIFAR_PIXELS)) {
        buf.push(label);
        buf.extend_from_slice(image);
    }
    fs::write(path, buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch_dir;

    /// `n` images whose pixels encode (seed, position), so any misplaced byte shows.
    fn pixels(n: usize, seed: u8) -> Vec<u8> {
        (0..n * CIFAR_PIXELS).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn write_all(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        let (mut labels, mut images) = (Vec::new(), Vec::new());
        for (b, name) in TRAIN_FILES.iter().enumerate() {
            let l: Vec<u8> = (0..4).map(|i| ((b * 4 + i) % CLASSES) as u8).collect();
            let p = pixels(4, b as u8 * 17);
            write_cifar_batch(&dir.join(name), &l, &p).unwrap();
            labels.extend(l);
            images.extend(p);
        }
        write_cifar_batch(&dir.join(TEST_FILES[0]), &[9, 0, 5], &pixels(3, 0xaa)).unwrap();
        (labels, images)
    }

    #[test]
    fn round_trip_train_and_test() {
        let dir = scratch_dir("cifar-ok");
        let (labels, images) = write_all(&dir);
        let train = load_cifar10(&dir, CifarSplit::Train).unwrap();
        assert_eq!((train.len(), train.channels, train.height, train.width, train.classes), (20, 3, 32, 32, 10));
        assert_eq!(train.labels, labels, "batches must be concatenated in order");
        assert!(train.images == images);
        let test = load_cifar10(&dir, CifarSplit::Test).unwrap();
        assert_eq!(test.labels, vec![9, 0, 5]);
        assert!(test.images == pixels(3, 0xaa));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn planes_land_in_channels() {
        let dir = scratch_dir("cifar-planes");
        let plane = SIDE * SIDE;
        let image: Vec<u8> = (0..CIFAR_PIXELS).map(|i| (i / plane + 1) as u8).collect();
        write_cifar_batch(&dir.join("test_batch.bin"), &[3], &image).unwrap();
        let set = load_cifar10(&dir, CifarSplit::Test).unwrap();
        let img = set.image(0);
        for c in 0..CHANNELS {
            assert!(img[c * plane..(c + 1) * plane].iter().all(|&p| p == c as u8 + 1), "channel {c}");
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_truncated_and_bad_label() {
        let dir = scratch_dir("cifar-bad");
        let err = load_cifar10(&dir, CifarSplit::Train).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::CifarMissing { .. }), "{msg}");
        assert!(msg.contains(&dir.join("data_batch_1.bin").display().to_string()), "{msg}");
        assert!(msg.contains("data.dir") && msg.contains("CIFAR-10 binary version"), "{msg}");
        assert!(!msg.contains('\n'));

        write_all(&dir);
        fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
        let msg = load_cifar10(&dir, CifarSplit::Train).unwrap_err().to_string();
        assert!(msg.contains("data_batch_4.bin") && msg.contains("not bundled"), "{msg}");

        let test = dir.join("test_batch.bin");
        let mut bytes = fs::read(&test).unwrap();
        bytes.pop();
        fs::write(&test, &bytes).unwrap();
        let err = load_cifar10(&dir, CifarSplit::Test).unwrap_err();
        assert!(matches!(err, DataError::RecordLength { actual_bytes: 9218, record_bytes: 3073, .. }), "{err}");
        assert!(err.to_string().contains("multiple of 3073"), "{err}");
        fs::write(&test, b"").unwrap();
        let err = load_cifar10(&dir, CifarSplit::Test).unwrap_err();
        assert!(matches!(err, DataError::RecordLength { actual_bytes: 0, .. }), "{err}");

        write_cifar_batch(&test, &[1, 10], &pixels(2, 0)).unwrap();
        let err = load_cifar10(&dir, CifarSplit::Test).unwrap_err();
        assert!(matches!(err, DataError::BadLabel { index: 1, label: 10, classes: 10, .. }), "{err}");
        assert!(err.to_string().contains("test_batch.bin"), "{err}");

        assert_eq!(write_cifar_batch(&test, &[1], &[0; 5]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let _ = fs::remove_dir_all(dir);
    }
}
