//! Training with callbacks on tiny synthetic data.

use std::sync::{Arc, Mutex};

use burn::prelude::*;
use coppice_data::{ImageBatcher, ImageDataset, Normalization, synthetic_images};
use coppice_models::{InputShape, Network, ParamEditor, edit_param, edit_params, float_params, presets};
use coppice_train::*;

/// Pins weight (0, 0) of the first layer to zero after every step, and counts what it sees.
struct PinFirstWeight {
    log: Arc<Mutex<Vec<String>>>,
}

/// Zeroes the first layer's weight (0, 0).
struct ZeroFirstWeight;

impl ParamEditor for ZeroFirstWeight {
    fn edit<const D: usize>(
        &mut self,
        path: &str,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        if path != "fc1.weight" {
            return param;
        }
        edit_param(param, |w| {
            let (dims, device) = (w.dims(), w.device());
            let flat: Tensor<1> = w.reshape([dims.iter().product::<usize>()]);
            flat.slice_assign(0..1, Tensor::zeros([1], &device)).reshape(dims)
        })
    }
}

impl Callback for PinFirstWeight {
    fn after_step(&mut self, net: Network, step: usize) -> Network {
        self.log.lock().unwrap().push(format!("step {step}"));
        edit_params(net, &mut ZeroFirstWeight)
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) {
        self.log.lock().unwrap().push(format!("epoch {}", record.epoch));
    }
}

fn setup(dir: &str, epochs: usize) -> TrainSetup {
    TrainSetup {
        config: TrainConfig { epochs, batch_size: 16, lr: 0.05, ..TrainConfig::default() },
        device: Device::flex(),
        artifact_dir: std::env::temp_dir().join(format!("coppice-train-{}-{dir}", std::process::id())),
        seed: 1,
        progress: Progress::Quiet,
        label: "test".into(),
        parallel: None,
    }
}

#[test]
fn a_callback_that_changes_the_model_holds_through_training() {
    // One draw, split: the class patterns depend on the seed.
    let all = synthetic_images(320, 4, 1, 6, 6, 1);
    let train = all.subset(&(0..256).collect::<Vec<_>>());
    let valid = all.subset(&(256..320).collect::<Vec<_>>());
    let batcher = ImageBatcher::for_set(&train, Normalization::uniform(0.5, 0.5));
    let device = Device::flex();
    let net = presets::mlp(InputShape { channels: 1, height: 6, width: 6 }, &[16], 4).init(&device).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let callbacks = Callbacks::new(vec![Box::new(PinFirstWeight { log: log.clone() })]);

    let outcome = fit(
        net,
        ImageDataset::new(train),
        ImageDataset::new(valid.clone()),
        batcher.clone(),
        &setup("pin", 3),
        &callbacks,
    )
    .expect("training runs");

    let weight = float_params(&outcome.net).into_iter().find(|p| p.path == "fc1.weight").unwrap().values;
    let pinned = weight.clone().slice(0..1).into_scalar::<f32>();
    assert_eq!(pinned, 0.0, "the callback's change survives the last optimizer step");
    let other = weight.abs().sum().into_scalar::<f32>();
    assert!(other > 0.0);

    // 256 samples / 16 per batch = 16 steps per epoch; the epoch ends come after their steps.
    let log = log.lock().unwrap();
    assert_eq!(log.iter().filter(|l| l.starts_with("step")).count(), 48);
    assert_eq!(log[16], "epoch 1");
    assert_eq!(log.last().unwrap(), "epoch 3");
    assert_eq!(callbacks.steps(), 48);

    assert_eq!(outcome.epochs.len(), 3);
    let last = outcome.epochs.last().unwrap();
    assert!(last.valid_accuracy.unwrap() > 0.9, "synthetic classes are easy: {last:?}");
    let eval = evaluate(&outcome.net, ImageDataset::new(valid), batcher, 1000, &device).unwrap();
    assert!((eval.accuracy - last.valid_accuracy.unwrap()).abs() < 1e-9, "burn-train's metric and ours agree");
}

#[test]
fn training_writes_a_checkpoint_per_epoch() {
    let train = synthetic_images(64, 2, 1, 4, 4, 3);
    let batcher = ImageBatcher::for_set(&train, Normalization::uniform(0.5, 0.5));
    let net = presets::mlp(InputShape { channels: 1, height: 4, width: 4 }, &[4], 2).init(&Device::flex()).unwrap();
    let setup = setup("ckpt", 2);
    let _ = std::fs::remove_dir_all(&setup.artifact_dir);
    fit(net, ImageDataset::new(train.clone()), ImageDataset::new(train), batcher, &setup, &Callbacks::default())
        .unwrap();
    for epoch in [1, 2] {
        let path = setup.artifact_dir.join(format!("checkpoint/model-{epoch}.bpk"));
        assert!(path.is_file(), "{} exists", path.display());
    }
}

/// Records, after every step, which masks the optimizer did not fold into its update.
struct FoldWatch {
    masks: UpdateMasks,
    unfolded: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Callback for FoldWatch {
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        self.unfolded.lock().unwrap().push(self.masks.take_unfolded());
        net
    }

    fn update_masks(&self) -> Option<UpdateMasks> {
        Some(self.masks.clone())
    }
}

/// burn-train moves the network to the autodiff device and clones it; the optimizer `fit` builds
/// must still find the masked parameters, or every step would pay for the masks twice.
#[test]
fn fit_folds_the_callbacks_masks_into_every_update() {
    let train = synthetic_images(64, 2, 1, 4, 4, 3);
    let batcher = ImageBatcher::for_set(&train, Normalization::uniform(0.5, 0.5));
    let net = presets::mlp(InputShape { channels: 1, height: 4, width: 4 }, &[4], 2).init(&Device::flex()).unwrap();
    let masks = UpdateMasks::default();
    masks.set("fc1.weight", Tensor::ones([64], &Device::flex()));
    let unfolded = Arc::new(Mutex::new(Vec::new()));
    let callbacks = Callbacks::new(vec![Box::new(FoldWatch { masks, unfolded: unfolded.clone() })]);
    let setup = setup("fold", 2);
    fit(net, ImageDataset::new(train.clone()), ImageDataset::new(train), batcher, &setup, &callbacks).unwrap();
    let unfolded = unfolded.lock().unwrap();
    assert_eq!(unfolded.len(), 8, "64 samples / 16 per batch, 2 epochs");
    assert!(unfolded.iter().all(Vec::is_empty), "{unfolded:?}");
}
