//! burn `Dataset` and `Batcher` adapters over an [`ImageSet`].

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;

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
}

impl ImageDataset {
    pub fn new(set: ImageSet) -> Self {
        ImageDataset { set: Arc::new(set) }
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
        Ok(ImageItem { pixels: self.set.image(index).to_vec(), label: self.set.labels[index] })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// Maps a u8 pixel `p` to `(p / 255 - mean) / std`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Default for Normalization {
    /// Mean and standard deviation of the MNIST training pixels.
    fn default() -> Self {
        Normalization { mean: 0.1307, std: 0.3081 }
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
        let scale = 1.0 / (255.0 * self.norm.std);
        let offset = self.norm.mean / self.norm.std;
        let mut pixels = Vec::with_capacity(items.len() * c * h * w);
        let mut targets = Vec::with_capacity(items.len());
        for item in &items {
            assert_eq!(item.pixels.len(), c * h * w, "image item does not match the batcher's {c}x{h}x{w} shape");
            pixels.extend(item.pixels.iter().map(|&p| f32::from(p) * scale - offset));
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
        assert!((at(1, 0, 1, 1) - (1.0 - norm.mean) / norm.std).abs() < 1e-5);
        assert!((at(1, 1, 0, 0) + norm.mean / norm.std).abs() < 1e-5);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn get_past_end_panics() {
        let _ = ImageDataset::new(synthetic_images(2, 2, 1, 2, 2, 1)).get(2);
    }
}
