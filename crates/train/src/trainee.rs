use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use coppice_data::ImageBatch;
use coppice_models::{Classifier, Network};

use crate::callback::Callbacks;

/// A network as burn-train sees it: the model plus the callbacks that run after each step.
#[derive(Module, Debug)]
pub struct Trainee {
    pub net: Network,
    #[module(skip)]
    pub callbacks: Callbacks,
}

impl Trainee {
    pub fn new(net: Network, callbacks: Callbacks) -> Self {
        Self { net, callbacks }
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
        let output = self.forward_classification(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }

    fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
        let callbacks = self.callbacks.clone();
        let stepped = optim.step(lr, self, grads);
        Trainee { net: callbacks.after_step(stepped.net), callbacks }
    }

    fn optimize_multi(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
        let callbacks = self.callbacks.clone();
        let stepped = optim.step_multi(lr, self, grads);
        Trainee { net: callbacks.after_step(stepped.net), callbacks }
    }
}

impl InferenceStep for Trainee {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}
