//! A stop through burn-train's own interrupter, the path its terminal screen's "stop the
//! training" takes, leaves a training that goes on to the uninterrupted result. Its own test
//! binary: a stop reaches whichever training of the process runs.

use std::sync::{Arc, Mutex};

use burn::prelude::*;
use coppice_data::{ImageBatcher, ImageDataset, Normalization, synthetic_images};
use coppice_models::{InputShape, presets};
use coppice_train::*;

/// Asks for a stop as the screen does, at the end of epoch `at`, and keeps the epochs it saw.
struct StopAt {
    at: usize,
    seen: Arc<Mutex<Vec<EpochRecord>>>,
}

impl Callback for StopAt {
    fn on_epoch_end(&mut self, record: &EpochRecord) {
        self.seen.lock().unwrap().push(record.clone());
        if record.epoch == self.at {
            assert!(stop::stop_training(), "a training is under way");
        }
    }
}

fn setup(tag: &str) -> TrainSetup {
    let artifact_dir = std::env::temp_dir().join(format!("coppice-stop-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&artifact_dir);
    TrainSetup {
        config: TrainConfig { epochs: 3, batch_size: 16, lr: 0.05, ..TrainConfig::default() },
        device: Device::flex(),
        artifact_dir,
        seed: 1,
        progress: Progress::Quiet,
        label: "test".into(),
        parallel: None,
    }
}

/// An epoch without its wall time, which no two trainings share.
fn timeless(epochs: &[EpochRecord]) -> Vec<EpochRecord> {
    epochs.iter().map(|e| EpochRecord { seconds: 0.0, train_seconds: 0.0, ..e.clone() }).collect()
}

#[test]
fn a_stop_through_the_interrupter_is_an_interruption_and_the_training_resumes_to_the_same_result() {
    let all = synthetic_images(192, 4, 1, 6, 6, 2);
    let train = ImageDataset::new(all.subset(&(0..128).collect::<Vec<_>>()));
    let valid = ImageDataset::new(all.subset(&(128..192).collect::<Vec<_>>()));
    let batcher = ImageBatcher::for_set(&all, Normalization::uniform(0.5, 0.5));
    let net = presets::mlp(InputShape { channels: 1, height: 6, width: 6 }, &[16], 4).init(&Device::flex()).unwrap();

    let whole = setup("whole");
    let uninterrupted =
        fit(net.clone(), train.clone(), valid.clone(), batcher.clone(), &whole, &Callbacks::default()).unwrap();

    let stopped = setup("stopped");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let callbacks = Callbacks::new(vec![Box::new(StopAt { at: 1, seen: seen.clone() })]);
    match fit(net.clone(), train.clone(), valid.clone(), batcher.clone(), &stopped, &callbacks) {
        Err(TrainError::Interrupted { epochs, cause }) => {
            assert_eq!(epochs, 1, "the stop came at the end of epoch 1");
            assert_eq!(cause, StopCause::Screen);
            assert_eq!(cause.exit_code(), 130);
        }
        Err(other) => panic!("a stop is an interruption, not {other}"),
        Ok(outcome) => panic!("a stop is not a finished training: {} epochs", outcome.epochs.len()),
    }
    let done = seen.lock().unwrap().clone();
    assert_eq!(resumable_epochs(&stopped.artifact_dir, &done, 3), 1, "epoch 1 is checkpointed");

    let resumed = fit_after(net, train, valid.clone(), batcher.clone(), &stopped, &Callbacks::default(), done).unwrap();
    assert_eq!(timeless(&resumed.epochs), timeless(&uninterrupted.epochs), "the same epochs as uninterrupted");
    let device = Device::flex();
    let a = evaluate(&uninterrupted.net, valid.clone(), batcher.clone(), 64, &device).unwrap();
    let b = evaluate(&resumed.net, valid, batcher, 64, &device).unwrap();
    assert_eq!((a.loss, a.accuracy), (b.loss, b.accuracy), "the same network as uninterrupted");
}
