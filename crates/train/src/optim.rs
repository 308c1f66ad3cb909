//! The optimizer of training, and the pruning masks it folds into its update.
//!
//! Pruned weights must stay exactly zero while the network retrains. Multiplying each masked
//! tensor by its mask after every step keeps them zero, but it is a pass of its own over the
//! tensor (read the weights and the mask, write the weights). The optimizer already scales the
//! gradient as it enters SGD's velocity (by 1 − dampening) or Adam's first moment (by 1 − β₁);
//! scaling by the mask times that factor instead costs one more read, of the mask. Where the
//! mask is 0, the velocity or the first moment then stays 0, so the update is exactly 0 and a
//! weight that is 0 stays 0, for any learning rate, momentum, weight decay or second moment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer, RecordState, SgdConfig,
    StateSink, StateSource, join_path,
};
use burn::prelude::*;
use coppice_models::{Network, float_params};

use crate::config::{OptimizerKind, TrainConfig};

/// burn's `AdamConfig` defaults, which coppice trains with; a test checks that the masked
/// update matches burn's Adam bit for bit.
const ADAM_BETA_1: f32 = 0.9;
const ADAM_BETA_2: f32 = 0.999;
const ADAM_EPSILON: f32 = 1e-5;

/// The optimizer `config` asks for. With `masks`, every float parameter of `net` gets a group of
/// its own whose update folds in the mask set for its path, whenever one is set; a parameter
/// without a mask is updated exactly as burn's optimizer would.
pub fn optimizer(config: &TrainConfig, net: &Network, masks: Option<&UpdateMasks>) -> ModuleOptimizer {
    let update = Update::of(config);
    let decay = update.weight_decay.map(WeightDecayConfig::new);
    let mut optim = match config.optimizer {
        OptimizerKind::Sgd => {
            let momentum = (update.momentum > 0.0).then_some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: update.nesterov,
            });
            SgdConfig::new().with_momentum(momentum).with_weight_decay(decay).init()
        }
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
    };
    let Some(masks) = masks else {
        return optim;
    };
    for param in float_params(net) {
        let group = ParamGroup::from_ids(vec![param.id]);
        let masked = Masked { update: update.clone(), path: param.path, masks: masks.clone() };
        optim = match config.optimizer {
            OptimizerKind::Sgd => optim.with_group(group, MaskedSgd(masked), None),
            OptimizerKind::Adam => optim.with_group(group, MaskedAdam(masked), None),
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
    /// The factors times a constant of the optimizer (Adam's 1 − β₁), computed once.
    scaled: Option<(f32, Tensor<1>)>,
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
        let mask = UpdateMask { factors, scaled: None, state_stale: true, folded: false };
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

    fn fold<const D: usize>(&self, path: &str, scale: f32, shape: Shape) -> Option<Fold<D>> {
        let mut masks = self.lock();
        let mask = masks.get_mut(path)?;
        mask.folded = true;
        let scaled = match &mask.scaled {
            _ if scale == 1.0 => mask.factors.clone(),
            Some((s, scaled)) if *s == scale => scaled.clone(),
            _ => {
                let scaled = mask.factors.clone().mul_scalar(scale);
                mask.scaled = Some((scale, scaled.clone()));
                scaled
            }
        };
        let clear_state = std::mem::take(&mut mask.state_stale).then(|| mask.factors.clone().reshape(shape.clone()));
        Some(Fold { scaled: scaled.reshape(shape), clear_state })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, UpdateMask>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A mask as one update uses it.
struct Fold<const D: usize> {
    /// The factors times the optimizer's scale of the entering gradient.
    scaled: Tensor<D>,
    /// The bare factors, when the state must first be cleared where the mask is 0.
    clear_state: Option<Tensor<D>>,
}

/// The gradient as it enters the velocity or first moment: times the mask's scaled factors, or
/// times `scale` alone (the pass the mask replaces) when there is no mask.
fn entering<const D: usize>(fold: Option<&Fold<D>>, grad: Tensor<D>, scale: f32) -> Tensor<D> {
    match fold {
        Some(fold) => grad.mul(fold.scaled.clone()),
        None => grad.mul_scalar(scale),
    }
}

/// `tensor` times the mask, where no pass of the optimizer's own could carry it.
fn masked<const D: usize>(fold: Option<&Fold<D>>, tensor: Tensor<D>) -> Tensor<D> {
    match fold {
        Some(fold) => tensor.mul(fold.scaled.clone()),
        None => tensor,
    }
}

/// A velocity or first moment, cleared where a mask that came mid-training is 0.
fn cleared<const D: usize>(fold: Option<&Fold<D>>, state: Tensor<D>) -> Tensor<D> {
    match fold.and_then(|f| f.clear_state.as_ref()) {
        Some(factors) => state.mul(factors.clone()),
        None => state,
    }
}

/// The hyper-parameters both updates read from the training config.
#[derive(Clone, Debug)]
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

    /// The gradient plus the coupled L2 penalty, as burn's `WeightDecay` computes it.
    fn decayed<const D: usize>(&self, tensor: &Tensor<D>, grad: Tensor<D>) -> Tensor<D> {
        match self.weight_decay {
            Some(penalty) => tensor.clone().mul_scalar(penalty).add(grad),
            None => grad,
        }
    }
}

#[derive(Clone)]
struct Masked {
    update: Update,
    path: String,
    masks: UpdateMasks,
}

/// burn's SGD (no dampening, as coppice configures it) with the mask folded in.
#[derive(Clone)]
struct MaskedSgd(Masked);

/// Names its tensor as burn's `SgdState` does (`momentum.velocity`), so that either loads the
/// other's checkpoint; burn's keeps the velocity private, and clearing it needs it.
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

impl Optimizer for MaskedSgd {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdState<D>>,
    ) -> (Tensor<D>, Option<SgdState<D>>) {
        let Masked { update, path, masks } = &self.0;
        let fold = masks.fold::<D>(path, 1.0, grad.shape());
        let fold = fold.as_ref();
        let grad = update.decayed(&tensor, grad);
        if update.momentum == 0.0 {
            // No pass scales the gradient here, so the mask takes one of its own.
            let grad = masked(fold, grad);
            return (tensor - grad.mul_scalar(lr), Some(SgdState { velocity: None }));
        }
        let previous = state.and_then(|s| s.velocity);
        // The same operations as burn's `Momentum::transform`, whose `grad * (1 − dampening)`
        // becomes `grad * mask`.
        let velocity = match previous {
            None => masked(fold, grad.clone()),
            Some(v) => entering(fold, grad.clone(), 1.0).add(cleared(fold, v).mul_scalar(update.momentum)),
        };
        let direction = if update.nesterov {
            velocity.clone().mul_scalar(update.momentum).add(masked(fold, grad))
        } else {
            velocity.clone()
        };
        (tensor - direction.mul_scalar(lr), Some(SgdState { velocity: Some(velocity) }))
    }

    fn to_device<const D: usize>(state: SgdState<D>, device: &Device) -> SgdState<D> {
        SgdState { velocity: state.velocity.map(|v| v.to_device(device)) }
    }
}

/// burn's Adam (without AMSGrad, as coppice configures it) with the mask folded into the first
/// moment; its state is burn's, so checkpoints are interchangeable.
#[derive(Clone)]
struct MaskedAdam(Masked);

impl Optimizer for MaskedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let Masked { update, path, masks } = &self.0;
        let fold = masks.fold::<D>(path, 1.0 - ADAM_BETA_1, grad.shape());
        let fold = fold.as_ref();
        let grad = update.decayed(&tensor, grad);
        // The same operations, in the same order, as burn's `AdaptiveMomentum::transform`.
        let moments = match state {
            Some(AdamState { momentum: mut moments }) => {
                moments.moment_1 = cleared(fold, moments.moment_1).mul_scalar(ADAM_BETA_1).add(entering(
                    fold,
                    grad.clone(),
                    1.0 - ADAM_BETA_1,
                ));
                moments.moment_2 =
                    moments.moment_2.mul_scalar(ADAM_BETA_2).add(grad.square().mul_scalar(1.0 - ADAM_BETA_2));
                moments.time += 1;
                moments
            }
            None => {
                let moment_1 = entering(fold, grad.clone(), 1.0 - ADAM_BETA_1);
                AdaptiveMomentumState::new(1, moment_1, grad.square().mul_scalar(1.0 - ADAM_BETA_2))
            }
        };
        let time = moments.time as i32;
        let bias_correction_2 = (1.0 - ADAM_BETA_2.powi(time)).sqrt();
        let factor = bias_correction_2 / (1.0 - ADAM_BETA_1.powi(time));
        let direction = moments
            .moment_1
            .clone()
            .mul_scalar(factor)
            .div(moments.moment_2.clone().sqrt().add_scalar(ADAM_EPSILON * bias_correction_2));
        (tensor - direction.mul_scalar(lr), Some(AdamState::new(moments)))
    }

    fn to_device<const D: usize>(mut state: AdamState<D>, device: &Device) -> AdamState<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
