//! The optimizer of training, and the pruning masks it folds into its update.
//!
//! Pruned weights must stay exactly zero while the network retrains. Multiplying each masked
//! tensor by its mask after every step keeps them zero, but it is a pass of its own over the
//! tensor (read the weights and the mask, write the weights). The optimizer already scales the
//! gradient as it enters SGD's velocity (by 1 − dampening) or Adam's first moment (by 1 − β₁);
//! scaling by the mask times that factor instead costs one more read, of the mask. Where the
//! mask is 0, the velocity or the first moment then stays 0, so the update is exactly 0 and a
//! weight that is 0 stays 0, for any learning rate, momentum, weight decay or second moment.
//!
//! The update itself is one pass over parameter, gradient and state (`coppice_kernels`), with
//! burn's arithmetic: a test compares it with burn's `Sgd` and `Adam` bit for bit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use burn::module::ParamGroup;
use burn::optim::{
    AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource,
    join_path,
};
use burn::prelude::*;
use coppice_kernels::{AdamStep, SgdStep, adam_update, sgd_update};
use coppice_models::{Network, float_params};

use crate::config::{OptimizerKind, TrainConfig};

/// burn's `AdamConfig` defaults, which coppice trains with.
const ADAM_BETA_1: f32 = 0.9;
const ADAM_BETA_2: f32 = 0.999;
const ADAM_EPSILON: f32 = 1e-5;

/// The optimizer `config` asks for. With `masks`, every float parameter of `net` gets a group of
/// its own whose update folds in the mask set for its path, whenever one is set; a parameter
/// without a mask is updated exactly as burn's optimizer would.
pub fn optimizer(config: &TrainConfig, net: &Network, masks: Option<&UpdateMasks>) -> ModuleOptimizer {
    let update = Update::of(config);
    let mut optim = match config.optimizer {
        OptimizerKind::Sgd => ModuleOptimizer::from(Sgd(Method { update, mask: None })),
        OptimizerKind::Adam => ModuleOptimizer::from(Adam(Method { update, mask: None })),
    };
    let Some(masks) = masks else {
        return optim;
    };
    for param in float_params(net) {
        let group = ParamGroup::from_ids(vec![param.id]);
        let method = Method { update, mask: Some(MaskOf { path: param.path, masks: masks.clone() }) };
        optim = match config.optimizer {
            OptimizerKind::Sgd => optim.with_group(group, Sgd(method), None),
            OptimizerKind::Adam => optim.with_group(group, Adam(method), None),
        };
    }
    optim
}

/// 0/1 factors by parameter path, shared by whoever prunes and the optimizer of the training
/// under way.
#[derive(Clone, Default)]
pub struct UpdateMasks {
    inner: Arc<Mutex<BTreeMap<String, UpdateMask>>>,
}

struct UpdateMask {
    factors: Tensor<1>,
    /// The optimizer's state may still hold velocity or moment where this mask is 0 (the mask
    /// came in the middle of a training); the next update clears it there.
    state_stale: bool,
    /// An update folded this mask in since the last [`UpdateMasks::take_unfolded`].
    folded: bool,
}

impl std::fmt::Debug for UpdateMasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpdateMasks({:?})", self.lock().keys().collect::<Vec<_>>())
    }
}

impl UpdateMasks {
    /// From now on, the updates of the tensor at `path` are 0 where `factors` is 0. The tensor's
    /// entries there must already be 0: the optimizer keeps them so, it does not zero them.
    pub fn set(&self, path: &str, factors: Tensor<1>) {
        let mask = UpdateMask { factors, state_stale: true, folded: false };
        self.lock().insert(path.to_string(), mask);
    }

    /// The paths whose mask no update folded in since the last call: a parameter that got no
    /// gradient, or one the optimizer was not built for. Whoever keeps the weights zero applies
    /// these masks by hand.
    pub fn take_unfolded(&self) -> Vec<String> {
        let mut masks = self.lock();
        let unfolded = masks.iter().filter(|(_, m)| !m.folded).map(|(path, _)| path.clone()).collect();
        masks.values_mut().for_each(|m| m.folded = false);
        unfolded
    }

    fn fold<const D: usize>(&self, path: &str, shape: Shape) -> Option<Fold<D>> {
        let mut masks = self.lock();
        let mask = masks.get_mut(path)?;
        mask.folded = true;
        let factors = mask.factors.clone().reshape(shape);
        let clear_state = std::mem::take(&mut mask.state_stale).then(|| factors.clone());
        Some(Fold { factors, clear_state })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, UpdateMask>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A mask as one update uses it.
struct Fold<const D: usize> {
    factors: Tensor<D>,
    /// The factors again, when the optimizer's state must first be cleared where they are 0.
    clear_state: Option<Tensor<D>>,
}

/// The hyper-parameters both updates read from the training config.
#[derive(Clone, Copy, Debug)]
struct Update {
    momentum: f32,
    nesterov: bool,
    weight_decay: Option<f32>,
}

impl Update {
    fn of(config: &TrainConfig) -> Update {
        Update {
            momentum: config.momentum as f32,
            nesterov: config.nesterov,
            weight_decay: (config.weight_decay > 0.0).then_some(config.weight_decay as f32),
        }
    }
}

/// Which mask, if any, one parameter's update folds in.
#[derive(Clone)]
struct MaskOf {
    path: String,
    masks: UpdateMasks,
}

/// One parameter's update: the hyper-parameters and its mask.
#[derive(Clone)]
struct Method {
    update: Update,
    mask: Option<MaskOf>,
}

impl Method {
    /// The mask factors and, on the first update under a new mask, the factors that clear the
    /// state.
    fn masks<const D: usize>(&self, shape: Shape) -> (Option<Tensor<D>>, Option<Tensor<D>>) {
        let fold = self.mask.as_ref().and_then(|m| m.masks.fold::<D>(&m.path, shape));
        fold.map_or((None, None), |fold| (Some(fold.factors), fold.clear_state))
    }
}

/// burn's SGD (no dampening, as coppice configures it), the mask in the place of 1 − dampening.
#[derive(Clone)]
struct Sgd(Method);

/// Names its tensor as burn's `SgdState` does (`momentum.velocity`), so that either loads the
/// other's checkpoint; burn's keeps the velocity private, and the update needs it.
#[derive(Clone)]
struct SgdState<const D: usize> {
    velocity: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for SgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        if let Some(velocity) = &self.velocity {
            out.push_tensor(&join_path(prefix, "momentum"), "velocity", velocity.clone().into_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let velocity = src.take_tensor(&join_path(prefix, "momentum"), "velocity");
        Some(SgdState { velocity: velocity.map(|data| Tensor::from_data(data, device)) })
    }
}

impl Optimizer for Sgd {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdState<D>>,
    ) -> (Tensor<D>, Option<SgdState<D>>) {
        let Update { momentum, nesterov, weight_decay } = self.0.update;
        let (mask, clear) = self.0.masks::<D>(grad.shape());
        let velocity = state.and_then(|s| s.velocity);
        let step = SgdStep { lr, momentum, nesterov, weight_decay };
        let (tensor, velocity) = sgd_update(tensor, grad, velocity, mask, clear, step);
        (tensor, Some(SgdState { velocity }))
    }

    fn to_device<const D: usize>(state: SgdState<D>, device: &Device) -> SgdState<D> {
        SgdState { velocity: state.velocity.map(|v| v.to_device(device)) }
    }
}

/// burn's Adam (without AMSGrad, as coppice configures it), the mask folded into the factor
/// 1 − β₁ of the first moment; its state is burn's, so checkpoints are interchangeable.
#[derive(Clone)]
struct Adam(Method);

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let (mask, clear) = self.0.masks::<D>(grad.shape());
        let (time, moments) = match state {
            Some(AdamState { momentum }) => (momentum.time + 1, Some((momentum.moment_1, momentum.moment_2))),
            None => (1, None),
        };
        let step = AdamStep {
            lr,
            beta_1: ADAM_BETA_1,
            beta_2: ADAM_BETA_2,
            epsilon: ADAM_EPSILON,
            weight_decay: self.0.update.weight_decay,
            time: time as i32,
        };
        let (tensor, moment_1, moment_2) = adam_update(tensor, grad, moments, mask, clear, step);
        (tensor, Some(AdamState::new(AdaptiveMomentumState::new(time, moment_1, moment_2))))
    }

    fn to_device<const D: usize>(mut state: AdamState<D>, device: &Device) -> AdamState<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
