//! Where the benchmark's training steps take their batches from: batches built once before the
//! timing (the network's speed alone), or built in each step from the training set's samples,
//! as training's data loader builds them, optionally augmented (`--loader`, `--augment`).

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::Device;
use coppice_data::{ImageBatch, ImageBatcher, ImageDataset};

pub enum Batches {
    Fixed(Vec<ImageBatch>),
    Loaded { dataset: ImageDataset, batcher: ImageBatcher, batch_size: usize, count: usize, device: Device },
}

impl Batches {
    pub fn is_empty(&self) -> bool {
        match self {
            Batches::Fixed(batches) => batches.is_empty(),
            Batches::Loaded { count, .. } => *count == 0,
        }
    }

    /// Batch `k`, cycling through the batches there are.
    pub fn get(&self, k: usize) -> ImageBatch {
        match self {
            Batches::Fixed(batches) => batches[k % batches.len()].clone(),
            Batches::Loaded { dataset, batcher, batch_size, count, device } => {
                let start = (k % count) * batch_size;
                let items = (start..start + batch_size).filter_map(|i| dataset.get(i).ok()).collect();
                batcher.batch(items, device)
            }
        }
    }
}
