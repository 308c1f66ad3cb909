use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use std::sync::{Arc, Mutex};

use burn::train::{ClassificationOutput, InferenceStep, Interrupter, TrainOutput, TrainStep};
use coppice_data::ImageBatch;
use coppice_models::{Classifier, Network};

use crate::callback::Callbacks;

/// A network as burn-train sees it: the model plus the callbacks that run after each step.
#[derive(Module, Debug)]
pub struct Trainee {
    pub net: Network,
    #[module(skip)]
    pub callbacks: Callbacks,
    #[module(skip)]
    pub watch: LossWatch,
}

/// Stops the training at the first step whose loss is not a number (or infinite): from then on
/// every step would only spread NaN through the weights.
#[derive(Clone)]
pub struct LossWatch {
    inner: Arc<Mutex<WatchState>>,
}

impl std::fmt::Debug for LossWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LossWatch({:?})", self.first_non_finite())
    }
}

struct WatchState {
    interrupter: Interrupter,
    /// Devices that each check a part of every step's batch.
    devices: usize,
    /// Checks so far: parts of steps.
    checks: usize,
    /// The training step (counted from 1) and its loss.
    first_non_finite: Option<(usize, f64)>,
    /// When the latest step's loss was read: where an epoch's training ends and its validation
    /// begins.
    last_step: Option<std::time::Instant>,
}

impl LossWatch {
    pub fn new(interrupter: Interrupter, devices: usize) -> Self {
        let state =
            WatchState { interrupter, devices: devices.max(1), checks: 0, first_non_finite: None, last_step: None };
        Self { inner: Arc::new(Mutex::new(state)) }
    }

    /// Reads the loss back: a sync per step, which the loss metric makes anyway.
    fn check(&self, loss: &Tensor<1>) {
        let value = loss.clone().into_scalar::<f64>();
        let mut state = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.checks += 1;
        state.last_step = Some(std::time::Instant::now());
        if !value.is_finite() && state.first_non_finite.is_none() {
            let step = (state.checks - 1) / state.devices + 1;
            state.first_non_finite = Some((step, value));
            state.interrupter.stop(Some("the loss is not finite"));
        }
    }

    pub fn last_step(&self) -> Option<std::time::Instant> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).last_step
    }

    pub fn first_non_finite(&self) -> Option<(usize, f64)> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).first_non_finite
    }
}

impl Trainee {
    pub fn new(net: Network, callbacks: Callbacks, watch: LossWatch) -> Self {
        Self { net, callbacks, watch }
    }

    pub fn forward_classification(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.net.forward(batch.images);
        let loss = CrossEntropyLossConfig::new().init(&logits.device()).forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for Trainee {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let share = batch.loss_share;
        let output = self.forward_classification(batch);
        self.watch.check(&output.loss);
        let loss = if share == 1.0 { output.loss.clone() } else { output.loss.clone().mul_scalar(share) };
        TrainOutput::new(self, loss.backward(), output)
    }

    fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
        let callbacks = self.callbacks.clone();
        let watch = self.watch.clone();
        let stepped = optim.step(lr, self, grads);
        Trainee { net: callbacks.after_step(stepped.net), callbacks, watch }
    }

    fn optimize_multi(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
        let callbacks = self.callbacks.clone();
        let watch = self.watch.clone();
        let stepped = optim.step_multi(lr, self, grads);
        Trainee { net: callbacks.after_step(stepped.net), callbacks, watch }
    }
}

impl InferenceStep for Trainee {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}
