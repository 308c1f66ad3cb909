use std::sync::{Arc, Mutex, MutexGuard};

use burn::prelude::*;
use coppice_data::SplitMix64;
use coppice_models::{LayerKind, Network, Prunable, PrunableLayer, float_params};
use coppice_train::{Callback, UpdateMasks};

use crate::PruneError;
use crate::allocation::{Allocation, LayerScores, WeightLayout, allocate};
use crate::criteria::Criterion;
use crate::mask::{MaskSet, host_values};
use crate::records::{RoundRecord, round_seed};
use crate::schedule::{Schedule, agp_sparsity};
use crate::strategy::Strategy;

/// Unstructured pruning: zero the least important weights and keep them zero.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightPruning {
    /// Magnitude or random.
    pub criterion: Criterion,
    pub allocation: Allocation,
    pub schedule: Schedule,
    /// Prune biases too, scored and allocated with their layer's weights.
    pub include_bias: bool,
    pub seed: u64,
}

/// The weight-pruning strategy and its training callback; clones share their masks.
#[derive(Clone)]
pub struct WeightPruner {
    config: WeightPruning,
    device: Device,
    state: Arc<Mutex<State>>,
}

struct State {
    masks: MaskSet,
    rng: SplitMix64,
    /// Optimizer steps since the round started, for AGP.
    round_steps: usize,
    last_target: Option<f64>,
}

impl WeightPruner {
    pub fn new(config: WeightPruning, device: Device) -> Self {
        let state =
            State { masks: MaskSet::default(), rng: SplitMix64::new(config.seed), round_steps: 0, last_target: None };
        Self { config, device, state: Arc::new(Mutex::new(state)) }
    }

    pub fn masks(&self) -> MaskSet {
        self.lock().masks.clone()
    }

    /// Recomputes the masks so that each layer reaches `target_now(its final target)`, and
    /// applies them.
    pub fn prune_to(&self, net: Network, target_now: &dyn Fn(f64) -> f64) -> Network {
        let mut state = self.lock();
        let layers = net.prunable_layers();
        let params = float_params(&net);
        let tensors: Vec<Vec<(String, Vec<f32>)>> = layers
            .iter()
            .map(|layer| {
                self.pruned_paths(layer)
                    .into_iter()
                    .filter_map(|path| {
                        let p = params.iter().find(|p| p.path == path)?;
                        Some((path, host_values(p.values.clone())))
                    })
                    .collect()
            })
            .collect();
        let values: Vec<Vec<f32>> =
            tensors.iter().map(|t| t.iter().flat_map(|(_, v)| v.iter().copied()).collect()).collect();
        let state = &mut *state;
        let scores: Vec<LayerScores> = layers
            .iter()
            .zip(&tensors)
            .zip(&values)
            .map(|((layer, parts), values)| {
                let keep: Vec<bool> = parts.iter().flat_map(|(path, v)| state.masks.keep(path, v.len())).collect();
                LayerScores {
                    name: &layer.name,
                    scores: self.config.criterion.weight_scores(values, &keep, &mut state.rng),
                    values,
                    layout: (values.len() == layer.weight_count()).then(|| layout(layer)),
                }
            })
            .collect();
        let keeps = allocate(&self.config.allocation, &scores, target_now);
        for (parts, keep) in tensors.iter().zip(keeps) {
            let mut offset = 0;
            for (path, v) in parts {
                state.masks.set(path, keep[offset..offset + v.len()].to_vec(), &self.device);
                offset += v.len();
            }
        }
        let total: usize = values.iter().map(Vec::len).sum();
        state.last_target = layers
            .iter()
            .zip(&values)
            .map(|(layer, v)| self.config.allocation.layer_target(&layer.name).map(|t| target_now(t) * v.len() as f64))
            .sum::<Option<f64>>()
            .map(|pruned| pruned / total.max(1) as f64);
        state.masks.apply(net)
    }

    fn pruned_paths(&self, layer: &PrunableLayer) -> Vec<String> {
        let bias = layer.bias_path.clone().filter(|_| self.config.include_bias);
        std::iter::once(layer.weight_path.clone()).chain(bias).collect()
    }

    /// A round starts: AGP counts its steps from here, and random scores draw from the
    /// round's own stream, so that a resumed run draws what an uninterrupted one would.
    fn start_round(&self, round: usize) {
        let mut state = self.lock();
        state.round_steps = 0;
        state.rng = SplitMix64::new(round_seed(self.config.seed, round));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Strategy for WeightPruner {
    fn rounds(&self) -> usize {
        self.config.schedule.rounds()
    }

    fn prune(&mut self, net: &Network, round: usize, _attempt: usize) -> Result<Network, PruneError> {
        self.start_round(round);
        let schedule = self.config.schedule;
        Ok(self.prune_to(net.clone(), &|target| schedule.round_target(target, round)))
    }

    fn target(&self) -> Option<f64> {
        self.lock().last_target
    }

    fn callbacks(&self, _pruned: &Network) -> Vec<Box<dyn Callback>> {
        vec![Box::new(self.clone())]
    }

    fn rewind(&self, pruned: Network, initial: &Network) -> Network {
        drop(pruned);
        self.lock().masks.apply(initial.clone())
    }

    fn resume(&mut self, _dense: &Network, net: &Network, _records: &[RoundRecord]) {
        let paths: Vec<String> = net.prunable_layers().iter().flat_map(|l| self.pruned_paths(l)).collect();
        self.lock().masks = MaskSet::from_zeros(net, &paths, &self.device);
    }
}

/// Where a layer's weights of one output sit, for N:M groups along its inputs.
fn layout(layer: &PrunableLayer) -> WeightLayout {
    let shape = &layer.weight_shape;
    match layer.kind {
        LayerKind::Linear => WeightLayout::linear(shape[0], shape[1]),
        LayerKind::Conv2d => WeightLayout::conv(shape[0], shape[1..].iter().product()),
    }
}

impl Callback for WeightPruner {
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        let step = {
            let mut state = self.lock();
            state.round_steps += 1;
            state.round_steps
        };
        if let Schedule::Agp { initial, start, end, frequency } = self.config.schedule
            && step >= start
            && step <= end
            && (step - start) % frequency.max(1) == 0
        {
            return self.prune_to(net, &|target| agp_sparsity(initial, target, start, end - start, step));
        }
        self.lock().masks.hold(net)
    }

    fn update_masks(&self) -> Option<UpdateMasks> {
        Some(self.lock().masks.update_masks())
    }
}
