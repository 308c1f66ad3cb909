use std::sync::{Arc, Mutex, MutexGuard};

use coppice_models::Network;
use serde::{Deserialize, Serialize};

use crate::optim::UpdateMasks;

/// One epoch of training as `metrics.csv` records it. Accuracies are fractions in [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Counted from 1 within one call to `fit`.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub valid_loss: Option<f64>,
    pub valid_accuracy: Option<f64>,
    /// The learning rate at the epoch's first step.
    pub lr: f64,
    /// The whole epoch: its steps, then validation and checkpoints.
    pub seconds: f64,
    /// The epoch up to its last step: what the step rate of `coppice bench` becomes once data,
    /// metrics and running statistics are in (0 in records from before it was kept).
    #[serde(default)]
    pub train_seconds: f64,
}

/// Something that takes part in training: pruning strategies are callbacks.
///
/// `after_step` is the only place where the network may change during training; epoch-end
/// decisions that change the network are recorded in the callback and applied there.
pub trait Callback: Send {
    /// After every optimizer step. `step` counts steps from 1 across all of a run's training.
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        net
    }
    fn on_epoch_end(&mut self, _record: &EpochRecord) {}
    /// Masks the optimizer should fold into its update (see [`UpdateMasks`]); asked once at the
    /// start of each training.
    fn update_masks(&self) -> Option<UpdateMasks> {
        None
    }
}

/// The callbacks of one run, shared by every clone of the model that burn-train makes.
#[derive(Clone, Default)]
pub struct Callbacks {
    inner: Arc<Mutex<CallbackState>>,
}

#[derive(Default)]
struct CallbackState {
    steps: usize,
    callbacks: Vec<Box<dyn Callback>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        write!(f, "Callbacks({} callbacks, {} steps)", state.callbacks.len(), state.steps)
    }
}

impl Callbacks {
    pub fn new(callbacks: Vec<Box<dyn Callback>>) -> Self {
        Self { inner: Arc::new(Mutex::new(CallbackState { steps: 0, callbacks })) }
    }

    pub fn push(&self, callback: Box<dyn Callback>) {
        self.lock().callbacks.push(callback);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().callbacks.is_empty()
    }

    /// Optimizer steps taken so far under these callbacks.
    pub fn steps(&self) -> usize {
        self.lock().steps
    }

    pub fn after_step(&self, mut net: Network) -> Network {
        let mut state = self.lock();
        state.steps += 1;
        let step = state.steps;
        for callback in state.callbacks.iter_mut() {
            net = callback.after_step(net, step);
        }
        net
    }

    /// The first callback's masks that the optimizer folds in; any other callback holding masks
    /// applies them after the step itself.
    pub fn update_masks(&self) -> Option<UpdateMasks> {
        self.lock().callbacks.iter().find_map(|c| c.update_masks())
    }

    pub fn on_epoch_end(&self, record: &EpochRecord) {
        self.lock().callbacks.iter_mut().for_each(|c| c.on_epoch_end(record));
    }

    fn lock(&self) -> MutexGuard<'_, CallbackState> {
        // A callback that panicked has already failed the run; its state is still usable here.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
