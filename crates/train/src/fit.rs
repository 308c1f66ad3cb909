use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder, DataLoaderIterator};
use burn::prelude::*;
use burn::train::logger::InMemoryMetricLogger;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{
    EarlyStoppingStrategy, ExecutionStrategy, Interrupter, Learner, MultiDeviceOptim, SupervisedTraining,
};
use coppice_data::{ImageBatch, ImageBatcher, ImageDataset};
use coppice_models::Network;

use crate::callback::{Callbacks, EpochRecord};
use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::evaluate::evaluation_batch;
use crate::lr::{EpochLr, lr_at};
use crate::optim::optimizer;
use crate::quiet::QuietRenderer;
use crate::shard::ShardedLoader;
use crate::stop::{self, StopCause};
use crate::trainee::{LossWatch, Trainee};

/// How training shows progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// burn-train's terminal UI when stdout is a terminal, else one line per epoch.
    Auto,
    /// One line per epoch on stdout.
    Lines,
    /// Nothing (tests).
    Quiet,
}

#[derive(Clone)]
pub struct TrainSetup {
    pub config: TrainConfig,
    /// A plain (not autodiff) device; training adds autodiff itself.
    pub device: Device,
    /// Where burn-train writes its per-epoch checkpoints (`checkpoint/model-<epoch>.bpk`).
    pub artifact_dir: PathBuf,
    /// Seeds the shuffling of the training data.
    pub seed: u64,
    pub progress: Progress,
    /// Shown in progress lines, e.g. `dense` or `round 2`.
    pub label: String,
    /// Training on several devices at once; `None` trains on `device` alone.
    pub parallel: Option<DataParallel>,
}

/// Data-parallel training through burn-train's multi-device strategy: each step's batch
/// (`config.batch_size`, the same as on one device) is split over `devices`, and the devices'
/// gradients are summed into one optimizer step. `devices[0]` is `TrainSetup::device`.
#[derive(Clone, Debug)]
pub struct DataParallel {
    pub devices: Vec<Device>,
    pub optimizer: OptimizerPlacement,
}

/// Where the optimizer runs in data-parallel training: burn-train's `MultiDeviceOptim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerPlacement {
    /// On the first device, with every gradient moved there (`OptimMainDevice`).
    Main,
    /// Each parameter's update on the device that holds its gradient (`OptimSharded`).
    Sharded,
}

pub struct TrainOutcome {
    /// On the plain device, ready for evaluation or the next round.
    pub net: Network,
    pub epochs: Vec<EpochRecord>,
}

/// Trains `net` for `setup.config.epochs` epochs with a fresh optimizer. The callbacks run
/// after every optimizer step and at each epoch end.
pub fn fit(
    net: Network,
    train: ImageDataset,
    valid: ImageDataset,
    batcher: ImageBatcher,
    setup: &TrainSetup,
    callbacks: &Callbacks,
) -> Result<TrainOutcome, TrainError> {
    fit_after(net, train, valid, batcher, setup, callbacks, Vec::new())
}

/// Goes on with a training that an interrupted process began with the same setup: `done` are
/// the epochs it recorded. Training restarts after the last of them that burn-train checkpointed
/// in `setup.artifact_dir` (model, optimizer and learning-rate schedule), or from the start when
/// there is none; the returned epochs include the earlier ones, and the later epochs see the
/// batches an uninterrupted training would have seen.
pub fn fit_after(
    net: Network,
    train: ImageDataset,
    valid: ImageDataset,
    batcher: ImageBatcher,
    setup: &TrainSetup,
    callbacks: &Callbacks,
    mut done: Vec<EpochRecord>,
) -> Result<TrainOutcome, TrainError> {
    let resume_after = resumable_epochs(&setup.artifact_dir, &done, setup.config.epochs);
    done.truncate(resume_after);
    train.start_at_epoch(resume_after);
    let config = &setup.config;
    if train.set().is_empty() || valid.set().is_empty() {
        return Err(TrainError::Data("training and validation sets must not be empty".into()));
    }
    let steps_per_epoch = train.set().len().div_ceil(config.batch_size);
    let (train_batcher, batch_size, seed, device) =
        (batcher.clone(), config.batch_size, setup.seed, setup.device.clone());
    let new_train_loader = move || -> Arc<dyn DataLoader<ImageBatch>> {
        let loader = DataLoaderBuilder::new(train_batcher.clone())
            .batch_size(batch_size)
            .shuffle(seed)
            .set_device(device.clone())
            .build(train.clone());
        match resume_after {
            0 => loader,
            epochs_done => Arc::new(ResumedLoader { inner: loader, epochs_done }),
        }
    };
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(evaluation_batch(config.eval_batch_size, valid.set().len()))
        .set_device(setup.device.clone())
        .build(valid);

    let train_loader: Arc<dyn DataLoader<_>> = match &setup.parallel {
        Some(parallel) => Arc::new(ShardedLoader::new(Arc::new(new_train_loader), parallel.devices.len())),
        None => new_train_loader(),
    };
    let use_tui = setup.progress == Progress::Auto && std::io::stdout().is_terminal();
    let interrupter = Interrupter::new();
    let devices = setup.parallel.as_ref().map_or(1, |p| p.devices.len());
    let watch = LossWatch::new(interrupter.clone(), devices);
    let print = !use_tui && setup.progress != Progress::Quiet;
    let epoch_end = EpochEnd::new(setup, callbacks.clone(), print, done, watch.clone());
    let mut training = SupervisedTraining::new(&setup.artifact_dir, train_loader, valid_loader)
        .with_interrupter(interrupter.clone())
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .with_metric_logger(InMemoryMetricLogger::default())
        .with_application_logger(None)
        .with_default_checkpointers()
        .early_stopping(epoch_end.clone())
        .num_epochs(config.epochs);
    if resume_after > 0 {
        training = training.checkpoint(resume_after);
    }
    if let Some(parallel) = &setup.parallel {
        let optim = match parallel.optimizer {
            OptimizerPlacement::Main => MultiDeviceOptim::OptimMainDevice,
            OptimizerPlacement::Sharded => MultiDeviceOptim::OptimSharded,
        };
        training = training.with_training_strategy(ExecutionStrategy::multi(parallel.devices.clone(), optim).into());
    }
    if !use_tui {
        training = training.renderer(Box::new(QuietRenderer));
    }

    let optim = optimizer(config, &net, callbacks.update_masks().as_ref());
    let trainee = Trainee::new(net, callbacks.clone(), watch.clone()).train();
    let schedule = EpochLr::new(config.clone(), steps_per_epoch).after_epochs(resume_after);
    let learner = Learner::new(trainee, optim, schedule);
    let result = {
        let _stops = stop::Training::start(&interrupter, use_tui);
        training.launch(learner)
    };
    if let Some((step, loss)) = watch.first_non_finite() {
        let epoch = resume_after + (step - 1) / steps_per_epoch + 1;
        return Err(TrainError::Diverged { epoch, step: (step - 1) % steps_per_epoch + 1, loss });
    }
    if let Some(error) = result.error {
        return Err(TrainError::Failed(error.to_string()));
    }
    // A stop may leave no trace in the result: burn-train's screen forgets it when training
    // ends. Fewer epochs than asked for is the sign of one.
    let epochs = epoch_end.records();
    if result.interrupted.is_some() || epochs.len() < config.epochs {
        let cause = stop::signalled().map_or(StopCause::Screen, StopCause::Signal);
        return Err(TrainError::Interrupted { epochs: epochs.len(), cause });
    }
    Ok(TrainOutcome { net: result.model.net.valid(), epochs })
}

/// The training loader of a resumed training. burn-train moves its loader to the training device,
/// which forks the shuffling generator, and then draws one order per epoch from the fork: drawing
/// the finished epochs' orders right after that move leaves the fork where an uninterrupted
/// training's would be.
struct ResumedLoader<O> {
    inner: Arc<dyn DataLoader<O>>,
    epochs_done: usize,
}

impl<O: 'static> DataLoader<O> for ResumedLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        self.inner.iter()
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        let moved = self.inner.to_device(device);
        for _ in 0..self.epochs_done {
            drop(moved.iter());
        }
        moved
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(ResumedLoader { inner: self.inner.slice(start, end), epochs_done: self.epochs_done })
    }
}

/// How many of the `done` epochs a training in `artifact_dir` can go on after: the last one for
/// which burn-train finished writing the model, optimizer and schedule (it writes them in the
/// background, so a killed process may have recorded an epoch whose checkpoint is incomplete).
pub fn resumable_epochs(artifact_dir: &Path, done: &[EpochRecord], epochs: usize) -> usize {
    let checkpointed = |epoch: usize| {
        ["model", "optim", "scheduler"]
            .iter()
            .all(|kind| artifact_dir.join("checkpoint").join(format!("{kind}-{epoch}.bpk")).is_file())
    };
    (1..=done.len().min(epochs)).rev().find(|&e| checkpointed(e)).unwrap_or(0)
}

/// burn-train's synchronous epoch-end hook, used to read the epoch's metrics and hand them to
/// the callbacks; it never asks to stop.
#[derive(Clone)]
struct EpochEnd {
    state: Arc<Mutex<EpochEndState>>,
}

struct EpochEndState {
    config: TrainConfig,
    callbacks: Callbacks,
    print: bool,
    label: String,
    last: Instant,
    records: Vec<EpochRecord>,
    /// The steps' loss checks, whose last one ends an epoch's training.
    watch: LossWatch,
    /// Epochs trained before a resume: burn-train's in-memory metric logger numbers the epochs
    /// it has seen from 1, so epoch `e` of the training is its epoch `e - resumed_after`.
    resumed_after: usize,
}

impl EpochEnd {
    fn new(setup: &TrainSetup, callbacks: Callbacks, print: bool, earlier: Vec<EpochRecord>, watch: LossWatch) -> Self {
        let state = EpochEndState {
            watch,
            config: setup.config.clone(),
            callbacks,
            print,
            label: setup.label.clone(),
            last: Instant::now(),
            resumed_after: earlier.len(),
            records: earlier,
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    fn records(&self) -> Vec<EpochRecord> {
        self.state.lock().map(|s| s.records.clone()).unwrap_or_default()
    }
}

impl EarlyStoppingStrategy for EpochEnd {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        let logged_epoch = epoch - state.resumed_after;
        let metric = |name: &str, split: Split| store.find_metric(name, logged_epoch, Aggregate::Mean, &split);
        let now = Instant::now();
        let record = EpochRecord {
            epoch,
            train_loss: metric("Loss", Split::Train).unwrap_or(f64::NAN),
            train_accuracy: metric("Accuracy", Split::Train).map_or(f64::NAN, |a| a / 100.0),
            valid_loss: metric("Loss", Split::Valid),
            valid_accuracy: metric("Accuracy", Split::Valid).map(|a| a / 100.0),
            lr: lr_at(&state.config, (epoch - 1) as f64),
            seconds: (now - state.last).as_secs_f64(),
            train_seconds: state
                .watch
                .last_step()
                .map_or(0.0, |end| end.saturating_duration_since(state.last).as_secs_f64()),
        };
        state.last = now;
        if state.print {
            println!("{}", epoch_line(&state.label, state.config.epochs, &record));
        }
        state.callbacks.on_epoch_end(&record);
        state.records.push(record);
        false
    }
}

fn epoch_line(label: &str, epochs: usize, r: &EpochRecord) -> String {
    let pct = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
    let loss = |l: Option<f64>| l.map_or("-".to_string(), |l| format!("{l:.4}"));
    format!(
        "{label} epoch {}/{epochs}: train loss {:.4} acc {} | valid loss {} acc {} | lr {:.5} | {:.1}s",
        r.epoch,
        r.train_loss,
        pct(Some(r.train_accuracy)),
        loss(r.valid_loss),
        pct(r.valid_accuracy),
        r.lr,
        r.seconds
    )
}
