//! The splits of an experiment: loaded, checked against each other, split and limited.

use anyhow::{Context, Result, anyhow};
use burn::data::dataloader::batcher::Batcher;
use coppice_data::{
    Augment, CIFAR10_CLASSES, CifarSplit, FolderOptions, ImageBatch, ImageBatcher, ImageDataset, ImageItem, ImageSet,
    MnistSplit, Normalization, load_cifar10, load_folder, load_mnist, train_valid_split,
};
use coppice_models::{InputShape, Network};
use coppice_train::{Evaluation, evaluate};

use crate::alloc::available_memory;
use crate::config::{Config, DatasetKind, Statistic};

/// The splits of one experiment, after the seeded split and any limits.
pub struct Data {
    pub train: ImageSet,
    pub valid: ImageSet,
    pub test: ImageSet,
    pub batcher: ImageBatcher,
    /// The name of each label: a folder's class folders, CIFAR-10's names, MNIST's digits.
    pub class_names: Vec<String>,
    augment: Augment,
    seed: u64,
}

impl Data {
    pub fn load(config: &Config) -> Result<Data> {
        let d = &config.data;
        let context = || format!("data.dir = {:?}", d.dir.display().to_string());
        let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let (full, mut test, own_valid, class_names) = match d.dataset {
            DatasetKind::Mnist => (
                load_mnist(&d.dir, MnistSplit::Train).with_context(context)?,
                load_mnist(&d.dir, MnistSplit::Test).with_context(context)?,
                None,
                names(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]),
            ),
            DatasetKind::Cifar10 => (
                load_cifar10(&d.dir, CifarSplit::Train).with_context(context)?,
                load_cifar10(&d.dir, CifarSplit::Test).with_context(context)?,
                None,
                names(&CIFAR10_CLASSES),
            ),
            DatasetKind::Folder => {
                let options = FolderOptions {
                    channels: d.channels,
                    size: d.size,
                    skip_bad_images: d.skip_bad_images,
                    available_memory: available_memory(),
                };
                let folder = load_folder(&d.dir, &options).with_context(context)?;
                for warning in &folder.warnings {
                    eprintln!("warning: {warning}");
                }
                (folder.train, folder.test, folder.valid, folder.class_names)
            }
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
        let full_len = full.len();
        // A folder's own valid/ replaces the split.
        let (mut train, valid) = match own_valid {
            Some(valid) => (full, valid),
            None => train_valid_split(&full, d.valid_fraction, config.seed),
        };
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
                full_len
            ));
        }
        if test.is_empty() {
            return Err(anyhow!("{}: the test files hold no images; fix: point data.dir at a full dataset", context()));
        }
        let batcher = ImageBatcher::for_set(&train, normalization(config, &train)?);
        if d.augment.crop >= train.height.min(train.width) {
            return Err(anyhow!(
                "data.augment.crop: {} pixels of padding for {}x{} images would crop some to black alone; fix: less than the shorter side, e.g. 4",
                d.augment.crop,
                train.height,
                train.width
            ));
        }
        Ok(Data { train, valid, test, batcher, class_names, augment: d.augment, seed: config.seed })
    }

    /// The training split as training reads it: augmented with `[data.augment]`.
    pub fn train_dataset(&self) -> ImageDataset {
        ImageDataset::augmented(self.train.clone(), self.augment, self.seed)
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

/// `data.mean` and `data.std` for the training split's channels; `"auto"` measures them on the
/// training split alone, after the validation images are held out.
fn normalization(config: &Config, train: &ImageSet) -> Result<Normalization> {
    let measured = Normalization::measure(train);
    let channels = train.channels;
    let resolve = |field: &str, statistic: &Statistic, measured: Vec<f32>| match statistic {
        Statistic::Auto => Ok(measured),
        Statistic::Values(values) if values.len() == 1 || values.len() == channels => Ok(values.clone()),
        Statistic::Values(values) => Err(anyhow!(
            "{field}: {} values for images of {channels} channels; fix: one value, {channels} values, or \"auto\"",
            values.len()
        )),
    };
    Ok(Normalization {
        mean: resolve("data.mean", &config.data.mean, measured.mean)?,
        std: resolve("data.std", &config.data.std, measured.std)?,
    })
}

pub fn evaluate_test(
    net: &Network,
    data: &Data,
    config: &Config,
    device: &burn::prelude::Device,
) -> Result<Evaluation> {
    Ok(evaluate(net, ImageDataset::new(data.test.clone()), data.batcher.clone(), config.train.eval_batch_size, device)?)
}
