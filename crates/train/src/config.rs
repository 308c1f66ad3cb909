use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScheduleKind {
    Constant,
    /// Multiply by `lr_gamma` every `lr_step_epochs` epochs, or at each of `lr_milestones`.
    Step,
    /// Cosine annealing from `lr` to `lr_min` over all epochs, updated every step.
    Cosine,
}

/// The `[train]` section of a config. Every field has a default, so `[train]` may be empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Batch size for validation and test evaluation; it does not change results.
    pub eval_batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// SGD momentum (no dampening, as in PyTorch); 0 turns it off. Ignored by Adam.
    pub momentum: f64,
    pub nesterov: bool,
    /// L2 penalty added to the gradient (coupled weight decay), for SGD and Adam.
    pub weight_decay: f64,
    pub lr_schedule: LrScheduleKind,
    pub lr_step_epochs: usize,
    /// With the step schedule: the epochs after which the rate drops (He et al.'s 82 and 123 of
    /// 164); empty: every `lr_step_epochs`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lr_milestones: Vec<usize>,
    pub lr_gamma: f64,
    pub lr_min: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 64,
            eval_batch_size: 1000,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
            lr_schedule: LrScheduleKind::Cosine,
            lr_step_epochs: 10,
            lr_milestones: Vec::new(),
            lr_gamma: 0.1,
            lr_min: 0.0,
        }
    }
}

/// A value outside its range; `field` is the key as written in the config (`train.lr`).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field} = {value}: {reason}")]
pub struct TrainConfigError {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), TrainConfigError> {
        let fail = |field, value: String, reason| Err(TrainConfigError { field, value, reason });
        if self.epochs == 0 {
            return fail("train.epochs", self.epochs.to_string(), "must be at least 1");
        }
        if self.batch_size == 0 {
            return fail("train.batch_size", self.batch_size.to_string(), "must be at least 1");
        }
        if self.eval_batch_size == 0 {
            return fail("train.eval_batch_size", self.eval_batch_size.to_string(), "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail("train.lr", self.lr.to_string(), "must be a positive number, e.g. 0.05");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return fail("train.momentum", self.momentum.to_string(), "must be in [0, 1), e.g. 0.9");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail("train.weight_decay", self.weight_decay.to_string(), "must be 0 or positive, e.g. 1e-4");
        }
        if self.lr_step_epochs == 0 {
            return fail("train.lr_step_epochs", self.lr_step_epochs.to_string(), "must be at least 1");
        }
        if self.lr_milestones.first() == Some(&0) || self.lr_milestones.windows(2).any(|w| w[0] >= w[1]) {
            let value = format!("{:?}", self.lr_milestones);
            return fail("train.lr_milestones", value, "must be increasing epochs from 1, e.g. [82, 123]");
        }
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0 && self.lr_gamma <= 1.0) {
            return fail("train.lr_gamma", self.lr_gamma.to_string(), "must be in (0, 1], e.g. 0.1");
        }
        if !(self.lr_min.is_finite() && self.lr_min >= 0.0 && self.lr_min < self.lr) {
            return fail("train.lr_min", self.lr_min.to_string(), "must be 0 or positive and below train.lr");
        }
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum == 0.0) {
            return fail("train.nesterov", "true".into(), "needs optimizer = \"sgd\" with momentum > 0");
        }
        Ok(())
    }
}
