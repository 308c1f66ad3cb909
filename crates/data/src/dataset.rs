//! burn `Dataset` and `Batcher` adapters over an [`ImageSet`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;

use crate::augment::Augment;
use crate::images::ImageSet;

#[derive(Clone, Debug)]
pub struct ImageItem {
    pub pixels: Vec<u8>,
    pub label: u8,
}

/// Cheap to clone: the data loader clones datasets per worker, and the pixels are shared.
#[derive(Clone)]
pub struct ImageDataset {
    set: Arc<ImageSet>,
    augment: Option<Augmented>,
}

/// A training set's augmentation. Each epoch fetches every sample exactly once, so the number of
/// times a sample was fetched is the epoch it is fetched in: counting per sample keeps the draws
/// right however the loader orders, shards or parallelizes the fetches.
#[derive(Clone)]
struct Augmented {
    augment: Augment,
    seed: u64,
    fetches: Arc<Vec<AtomicU64>>,
}

impl ImageDataset {
    pub fn new(set: ImageSet) -> Self {
        ImageDataset { set: Arc::new(set), augment: None }
    }

    /// A training set whose samples `augment` changes each epoch, drawn from `seed`.
    pub fn augmented(set: ImageSet, augment: Augment, seed: u64) -> Self {
        let fetches = Arc::new((0..set.len()).map(|_| AtomicU64::new(0)).collect());
        let augment = (!augment.is_none()).then_some(Augmented { augment, seed, fetches });
        ImageDataset { set: Arc::new(set), augment }
    }

    /// Makes the next fetch of every sample part of epoch `epochs_done` (0-based), for a training
    /// that starts, or resumes, after that many epochs.
    pub fn start_at_epoch(&self, epochs_done: usize) {
        if let Some(augmented) = &self.augment {
            augmented.fetches.iter().for_each(|f| f.store(epochs_done as u64, Ordering::Relaxed));
        }
    }

    pub fn set(&self) -> &ImageSet {
        &self.set
    }
}

impl Dataset<ImageItem> for ImageDataset {
    /// Panics if `index >= len()`, as burn's `Dataset` contract requires.
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        let len = self.set.len();
        assert!(index < len, "Index out of bounds for dataset: {index} >= {len}");
        let mut pixels = self.set.image(index).to_vec();
        if let Some(a) = &self.augment {
            let epoch = a.fetches[index].fetch_add(1, Ordering::Relaxed);
            let shape = [self.set.channels, self.set.height, self.set.width];
            a.augment.apply(&mut pixels, shape, a.seed, epoch, index as u64);
        }
        Ok(ImageItem { pixels, label: self.set.labels[index] })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// Maps a u8 pixel `p` of channel `c` to `(p / 255 - mean[c]) / std[c]`; a list of one value
/// applies to every channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Default for Normalization {
    /// Mean and standard deviation of the MNIST training pixels.
    fn default() -> Self {
        Normalization::uniform(0.1307, 0.3081)
    }
}

impl Normalization {
    /// The same mean and std for every channel.
    pub fn uniform(mean: f32, std: f32) -> Self {
        Normalization { mean: vec![mean], std: vec![std] }
    }

    /// Mean and std of channel `c`.
    pub fn channel(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.mean), pick(&self.std))
    }

    /// Each channel's mean and standard deviation over the pixels of `set`, scaled to [0, 1].
    /// A channel of one value everywhere gets std 1, which leaves it centred instead of dividing
    /// by zero.
    pub fn measure(set: &ImageSet) -> Normalization {
        let (c, plane) = (set.channels, set.height * set.width);
        // Sums of u8 values are exact in u64 for any set that fits in memory.
        let (mut sums, mut squares) = (vec![0u64; c], vec![0u64; c]);
        for image in set.images.chunks_exact(c * plane) {
            for (ch, pixels) in image.chunks_exact(plane).enumerate() {
                sums[ch] += pixels.iter().map(|&p| u64::from(p)).sum::<u64>();
                squares[ch] += pixels.iter().map(|&p| u64::from(p) * u64::from(p)).sum::<u64>();
            }
        }
        let n = (set.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sums.iter().map(|&s| s as f64 / n / 255.0).collect();
        let std = squares
            .iter()
            .zip(&mean)
            .map(|(&q, m)| {
                let std = (q as f64 / n / (255.0 * 255.0) - m * m).max(0.0).sqrt();
                if std > 1e-6 { std as f32 } else { 1.0 }
            })
            .collect();
        Normalization { mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }
}

#[derive(Clone, Debug)]
pub struct ImageBatcher {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub norm: Normalization,
}

impl ImageBatcher {
    pub fn for_set(set: &ImageSet, norm: Normalization) -> Self {
        ImageBatcher { channels: set.channels, height: set.height, width: set.width, norm }
    }
}

#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// `[batch, channels, height, width]`, normalized.
    pub images: Tensor<4>,
    pub targets: Tensor<1, Int>,
    /// The share of its optimizer step's batch this batch holds: 1, or a device's part of the
    /// batch in data-parallel training, where the loss is scaled by it before the backward pass
    /// so that the devices' gradients add up to the gradient of the whole batch's mean loss.
    pub loss_share: f32,
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    /// # Panics
    /// If an item does not hold `channels * height * width` pixels; that means the
    /// batcher was built for a different set, and no error can be returned here.
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let (c, h, w) = (self.channels, self.height, self.width);
        // Folding the division into one multiply-add keeps the per-pixel loop cheap.
        let (scale, offset): (Vec<f32>, Vec<f32>) = (0..c)
            .map(|ch| {
                let (mean, std) = self.norm.channel(ch);
                (1.0 / (255.0 * std), mean / std)
            })
            .unzip();
        let mut pixels = Vec::with_capacity(items.len() * c * h * w);
        let mut targets = Vec::with_capacity(items.len());
        for item in &items {
            assert_eq!(item.pixels.len(), c * h * w, "image item does not match the batcher's {c}x{h}x{w} shape");
            for (ch, plane) in item.pixels.chunks_exact(h * w).enumerate() {
                let (scale, offset) = (scale[ch], offset[ch]);
                pixels.extend(plane.iter().map(|&p| f32::from(p) * scale - offset));
            }
            targets.push(i64::from(item.label));
        }
        let b = items.len();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(pixels, [b, c, h, w]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b]), device),
            loss_share: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::synthetic_images;

    #[test]
    fn dataset_and_batcher_shapes_and_values() {
        let mut set = synthetic_images(5, 3, 2, 3, 4, 1);
        set.images[24 + 5] = 255; // image 1, channel 0, row 1, col 1
        set.images[24 + 12] = 0; // image 1, channel 1, row 0, col 0
        let ds = ImageDataset::new(set);
        assert_eq!(ds.len(), 5);
        let items: Vec<ImageItem> = (0..3).map(|i| ds.get(i).unwrap()).collect();
        assert_eq!((items[1].pixels.len(), items[1].label), (24, 1));

        let norm = Normalization::default();
        let batcher = ImageBatcher::for_set(ds.set(), norm.clone());
        let device = Device::default();
        let batch = batcher.batch(items, &device);
        assert_eq!(batch.images.dims(), [3, 2, 3, 4]);
        assert_eq!(batch.targets.to_data().try_to_vec_as::<i64>().unwrap(), vec![0, 1, 2]);
        let values = batch.images.to_data().try_to_vec_as::<f32>().unwrap();
        let at = |b: usize, c: usize, y: usize, x: usize| values[((b * 2 + c) * 3 + y) * 4 + x];
        let (mean, std) = norm.channel(0);
        assert!((at(1, 0, 1, 1) - (1.0 - mean) / std).abs() < 1e-5);
        assert!((at(1, 1, 0, 0) + mean / std).abs() < 1e-5);

        // Per channel: channel 1 of image 1 is normalized by its own values.
        let per_channel = Normalization { mean: vec![0.0, 0.5], std: vec![1.0, 0.25] };
        let batcher = ImageBatcher::for_set(ds.set(), per_channel);
        let items: Vec<ImageItem> = (0..3).map(|i| ds.get(i).unwrap()).collect();
        let values = batcher.batch(items, &device).images.to_data().try_to_vec_as::<f32>().unwrap();
        assert!((values[36] - (0.0 - 0.5) / 0.25).abs() < 1e-5, "pixel 0 of image 1, channel 1");
        assert!((values[29] - 1.0).abs() < 1e-5, "pixel 255 of image 1, channel 0");
    }

    #[test]
    fn measured_statistics_per_channel() {
        let mut set = synthetic_images(2, 2, 2, 1, 2, 3);
        // Channel 0: 0, 255, 0, 255; channel 1: 51 everywhere.
        set.images = vec![0, 255, 51, 51, 0, 255, 51, 51];
        let norm = Normalization::measure(&set);
        assert!((norm.mean[0] - 0.5).abs() < 1e-6 && (norm.std[0] - 0.5).abs() < 1e-6, "{norm:?}");
        assert!((norm.mean[1] - 0.2).abs() < 1e-6, "{norm:?}");
        assert_eq!(norm.std[1], 1.0, "a constant channel is centred, not divided by zero");
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn get_past_end_panics() {
        let _ = ImageDataset::new(synthetic_images(2, 2, 1, 2, 2, 1)).get(2);
    }
}
