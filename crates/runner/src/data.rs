//! The splits of an experiment: loaded, checked against each other, split and limited.

use anyhow::{Context, Result, anyhow};
use burn::data::dataloader::batcher::Batcher;
use coppice_data::{
    CifarSplit, ImageBatch, ImageBatcher, ImageDataset, ImageItem, ImageSet, MnistSplit, Normalization, load_cifar10,
    load_mnist, train_valid_split,
};
use coppice_models::{InputShape, Network};
use coppice_train::{Evaluation, evaluate};

use crate::config::{Config, DatasetKind};

/// The splits of one experiment, after the seeded split and any limits.
pub struct Data {
    pub train: ImageSet,
    pub valid: ImageSet,
    pub test: ImageSet,
    pub batcher: ImageBatcher,
}

impl Data {
    pub fn load(config: &Config) -> Result<Data> {
        let d = &config.data;
        let context = || format!("data.dir = {:?}", d.dir.display().to_string());
        let (full, mut test) = match d.dataset {
            DatasetKind::Mnist => (
                load_mnist(&d.dir, MnistSplit::Train).with_context(context)?,
                load_mnist(&d.dir, MnistSplit::Test).with_context(context)?,
            ),
            DatasetKind::Cifar10 => (
                load_cifar10(&d.dir, CifarSplit::Train).with_context(context)?,
                load_cifar10(&d.dir, CifarSplit::Test).with_context(context)?,
            ),
        };
        let shape = |set: &ImageSet| (set.channels, set.height, set.width);
        if shape(&full) != shape(&test) {
            let (c, h, w) = shape(&test);
            let (tc, th, tw) = shape(&full);
            return Err(anyhow!(
                "{}: the test images are {c}x{h}x{w} and the training images {tc}x{th}x{tw}; fix: point data.dir at test and training files of one size",
                context()
            ));
        }
        let (mut train, valid) = train_valid_split(&full, d.valid_fraction, config.seed);
        if d.train_limit > 0 {
            train = train.take(d.train_limit);
        }
        if d.test_limit > 0 {
            test = test.take(d.test_limit);
        }
        if valid.is_empty() || train.is_empty() {
            let split = if valid.is_empty() { "validation" } else { "training" };
            return Err(anyhow!(
                "data.valid_fraction: {} of the {} training images leaves no {split} images; fix: a valid_fraction that leaves some to both, e.g. 0.1",
                d.valid_fraction,
                full.len()
            ));
        }
        if test.is_empty() {
            return Err(anyhow!("{}: the test files hold no images; fix: point data.dir at a full dataset", context()));
        }
        let batcher = ImageBatcher::for_set(&train, Normalization { mean: d.mean, std: d.std });
        Ok(Data { train, valid, test, batcher })
    }

    pub fn input(&self) -> InputShape {
        InputShape { channels: self.train.channels, height: self.train.height, width: self.train.width }
    }

    pub fn classes(&self) -> usize {
        self.train.classes
    }

    /// The first `count` batches of the training split, in order (the last may be short): what
    /// data-driven unit criteria are measured on, and what the benchmark trains on.
    pub fn train_batches(&self, batch_size: usize, count: usize, device: &burn::prelude::Device) -> Vec<ImageBatch> {
        self.batches(&self.train, batch_size, count, device)
    }

    /// The whole test split in order.
    pub fn test_batches(&self, batch_size: usize, device: &burn::prelude::Device) -> Vec<ImageBatch> {
        self.batches(&self.test, batch_size, self.test.len().div_ceil(batch_size), device)
    }

    pub fn batches(
        &self,
        set: &ImageSet,
        batch_size: usize,
        count: usize,
        device: &burn::prelude::Device,
    ) -> Vec<ImageBatch> {
        let per_image = set.pixels_per_image();
        (0..count)
            .map(|b| b * batch_size..((b + 1) * batch_size).min(set.len()))
            .filter(|range| !range.is_empty())
            .map(|range| {
                let items = range
                    .map(|i| ImageItem {
                        pixels: set.images[i * per_image..(i + 1) * per_image].to_vec(),
                        label: set.labels[i],
                    })
                    .collect();
                self.batcher.batch(items, device)
            })
            .collect()
    }
}

pub fn evaluate_test(
    net: &Network,
    data: &Data,
    config: &Config,
    device: &burn::prelude::Device,
) -> Result<Evaluation> {
    Ok(evaluate(net, ImageDataset::new(data.test.clone()), data.batcher.clone(), config.train.eval_batch_size, device)?)
}
