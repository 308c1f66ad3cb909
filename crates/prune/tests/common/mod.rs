//! Helpers the prune tests share.
// Each test binary uses its own part of these.
#![allow(dead_code)]

use burn::prelude::Device;
use coppice_data::{ImageBatcher, ImageDataset, ImageSet, Normalization, synthetic_images};
use coppice_prune::{Rewind, Rounds};
use coppice_train::{Progress, TrainConfig, TrainSetup};

/// `draw` right after seeding `device`'s generator, which the tests running at the same time
/// share: without the lock, another test's draws could come in between and change the values.
pub fn seeded<T>(device: &Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    draw()
}

/// 384 synthetic 6x6 images of 4 classes: 320 to train on, 64 to validate and test on.
pub fn synthetic_split() -> (ImageSet, ImageSet) {
    let all = synthetic_images(384, 4, 1, 6, 6, 7);
    (all.subset(&(0..320).collect::<Vec<_>>()), all.subset(&(320..384).collect::<Vec<_>>()))
}

/// Training with `config` on flex, quietly, in a temporary folder of its own (`tag` names it
/// within a test binary), shuffling from `seed`.
pub fn quiet_setup(tag: &str, config: TrainConfig, seed: u64) -> TrainSetup {
    TrainSetup {
        config,
        device: Device::flex(),
        artifact_dir: std::env::temp_dir().join(format!("coppice-prune-{}-{tag}", std::process::id())),
        seed,
        progress: Progress::Quiet,
        label: tag.into(),
        parallel: None,
    }
}

/// Rounds over [`synthetic_split`] that retrain as `retrain` says, without rewinding and without
/// a stage after the last round.
pub fn synthetic_rounds(retrain: TrainSetup) -> Rounds {
    let (train, test) = synthetic_split();
    let batcher = ImageBatcher::for_set(&train, Normalization::uniform(0.5, 0.5));
    Rounds {
        retrain,
        train: ImageDataset::new(train),
        valid: ImageDataset::new(test.clone()),
        test: ImageDataset::new(test),
        batcher,
        rewind: Rewind::None,
        quantize: None,
        scratch: None,
    }
}
