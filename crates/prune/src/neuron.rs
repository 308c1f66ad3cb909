//! Structured pruning: score units, remove the least important for real.

use std::collections::BTreeMap;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use coppice_data::{ImageBatch, SplitMix64};
use coppice_models::{Activation, Network, Prunable, UnitGroup, float_params};
use coppice_train::Callback;
use serde::{Deserialize, Serialize};

use crate::PruneError;
use crate::allocation::{Allocation, LayerScores, allocate};
use crate::mask::host_values;
use crate::rounds::{Strategy, round_seed};
use crate::schedule::Schedule;
use crate::surgery::{UnitCut, cut_units};

/// How important each unit (neuron or filter) is; the lowest go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitCriterion {
    /// L1 norm of the unit's incoming weights.
    L1,
    /// L2 norm of the unit's incoming weights.
    L2,
    /// Mean activation over calibration batches.
    Activation,
    /// 1 - APoZ, the average percentage of zero activations (Hu et al. 2016).
    Apoz,
    /// |mean over batches of activation x gradient| (Molchanov et al. 2017).
    Taylor,
    /// The baseline.
    Random,
}

impl UnitCriterion {
    pub fn needs_data(self) -> bool {
        matches!(self, UnitCriterion::Activation | UnitCriterion::Apoz | UnitCriterion::Taylor)
    }
}

#[derive(Clone, Debug)]
pub struct NeuronPruning {
    pub criterion: UnitCriterion,
    /// `Layer` or `Global`; targets are fractions of each layer's original units.
    pub allocation: Allocation,
    pub schedule: Schedule,
    /// Divide each layer's scores by their L2 norm, so a global ranking compares layers fairly.
    pub normalize: bool,
    /// Units every layer keeps at least.
    pub min_units: usize,
    pub seed: u64,
}

pub struct NeuronPruner {
    config: NeuronPruning,
    /// Training batches for data-driven criteria, on the plain device.
    calibration: Vec<ImageBatch>,
    device: Device,
    rng: SplitMix64,
    original_units: BTreeMap<String, usize>,
    last_target: Option<f64>,
}

impl NeuronPruner {
    pub fn new(config: NeuronPruning, calibration: Vec<ImageBatch>, device: Device) -> Result<Self, PruneError> {
        if config.criterion.needs_data() && calibration.is_empty() {
            return Err(PruneError::Invalid(format!(
                "criterion {:?} scores units on data, but no calibration batches were given",
                config.criterion
            )));
        }
        let rng = SplitMix64::new(config.seed);
        Ok(Self { config, calibration, device, rng, original_units: BTreeMap::new(), last_target: None })
    }

    /// Per unit group, one score per current unit.
    pub fn scores(&mut self, net: &Network) -> Vec<Vec<f64>> {
        let groups = net.unit_groups();
        let mut scores = match self.config.criterion {
            UnitCriterion::L1 | UnitCriterion::L2 => {
                weight_norms(net, &groups, self.config.criterion == UnitCriterion::L1)
            }
            UnitCriterion::Random => {
                groups.iter().map(|g| (0..g.units).map(|_| self.rng.next_f64()).collect()).collect()
            }
            UnitCriterion::Activation | UnitCriterion::Apoz => {
                activation_statistics(net, &groups, &self.calibration, self.config.criterion)
            }
            UnitCriterion::Taylor => taylor(net, &groups, &self.calibration, &self.device),
        };
        if self.config.normalize {
            for layer in &mut scores {
                let norm = layer.iter().map(|s| s * s).sum::<f64>().sqrt();
                if norm > 0.0 {
                    layer.iter_mut().for_each(|s| *s /= norm);
                }
            }
        }
        scores
    }

    /// Removes units until each layer has lost `target_now(final)` of its original units.
    pub fn prune_to(&mut self, net: Network, target_now: &dyn Fn(f64) -> f64) -> Result<Network, PruneError> {
        let groups = net.unit_groups();
        for g in &groups {
            self.original_units.entry(g.layer.clone()).or_insert(g.units);
        }
        for g in &groups {
            if g.units < self.config.min_units {
                return Err(PruneError::Invalid(format!(
                    "{} has {} units, fewer than min_units = {}; fix: lower prune.min_units",
                    g.layer, g.units, self.config.min_units
                )));
            }
        }
        let scores = self.scores(&net);
        let f32_scores: Vec<Vec<f32>> = scores.iter().map(|s| s.iter().map(|&v| v as f32).collect()).collect();
        let empty: Vec<f32> = Vec::new();
        // Cumulative targets are fractions of the original units; turn them into fractions of
        // the units left now, so that pruning never compounds.
        let original = |g: &UnitGroup| self.original_units[&g.layer];
        let now_fraction = |g: &UnitGroup, target: f64| {
            let removed_by_then = (target * original(g) as f64).round();
            let removed_so_far = (original(g) - g.units) as f64;
            ((removed_by_then - removed_so_far) / g.units as f64).max(0.0)
        };
        let allocation = match &self.config.allocation {
            Allocation::Layer { .. } => Allocation::Layer {
                target: 0.0,
                overrides: groups
                    .iter()
                    .map(|g| {
                        (
                            g.layer.clone(),
                            now_fraction(g, target_now(self.config.allocation.layer_target(&g.layer).unwrap_or(0.0))),
                        )
                    })
                    .collect(),
            },
            Allocation::Global(target) => {
                let total_original: usize = groups.iter().map(original).sum();
                let total_now: usize = groups.iter().map(|g| g.units).sum();
                let removed_by_then = (target_now(*target) * total_original as f64).round();
                let fraction = ((removed_by_then - (total_original - total_now) as f64) / total_now as f64).max(0.0);
                Allocation::Global(fraction)
            }
            other => {
                return Err(PruneError::Invalid(format!(
                    "neuron pruning allocates per layer or globally, not {other:?}"
                )));
            }
        };
        let layers: Vec<LayerScores> = groups
            .iter()
            .zip(&f32_scores)
            .map(|(g, s)| LayerScores { name: &g.layer, scores: s.clone(), values: &empty })
            .collect();
        let keeps = allocate(&allocation, &layers, &|t| t);
        let cuts: Vec<UnitCut> = groups
            .into_iter()
            .zip(keeps)
            .zip(&scores)
            .map(|((group, keep), scores)| UnitCut { keep: with_floor(keep, scores, self.config.min_units), group })
            .collect();
        let total_original: usize = self.original_units.values().sum();
        let removed: usize =
            cuts.iter().map(|c| self.original_units[&c.group.layer] - c.keep.iter().filter(|k| **k).count()).sum();
        self.last_target = Some(removed as f64 / total_original.max(1) as f64);
        cut_units(net, &cuts)
    }
}

/// Keeps the best `floor` units of a layer when the allocation would keep fewer.
fn with_floor(mut keep: Vec<bool>, scores: &[f64], floor: usize) -> Vec<bool> {
    let kept = keep.iter().filter(|k| **k).count();
    if kept >= floor {
        return keep;
    }
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| !keep[i]).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    for &i in order.iter().take(floor - kept) {
        keep[i] = true;
    }
    keep
}

fn weight_norms(net: &Network, groups: &[UnitGroup], l1: bool) -> Vec<Vec<f64>> {
    let params = float_params(net);
    groups
        .iter()
        .map(|g| {
            let slice = &g.producer[0];
            let Some(p) = params.iter().find(|p| p.path == slice.path) else { return vec![0.0; g.units] };
            let values = host_values(p.values.clone());
            let stride: usize = p.shape[slice.dim + 1..].iter().product();
            let mut sums = vec![0.0f64; g.units];
            for (index, v) in values.iter().enumerate() {
                let unit = (index / stride) % p.shape[slice.dim] / slice.block;
                sums[unit] += if l1 { v.abs() as f64 } else { (*v as f64).powi(2) };
            }
            if !l1 {
                sums.iter_mut().for_each(|s| *s = s.sqrt());
            }
            sums
        })
        .collect()
}

/// Per-unit means of a statistic of an activation: over the batch, and the pixels of a map.
fn per_unit_mean(activation: &Activation) -> Vec<f64> {
    let per_unit: Tensor<1> = match activation {
        Activation::Dense(x) => x.clone().mean_dim(0).flatten(0, 1),
        Activation::Spatial(x) => x.clone().mean_dim(0).mean_dim(2).mean_dim(3).flatten(0, 3),
    };
    host_values(per_unit).into_iter().map(f64::from).collect()
}

fn map_activation(activation: &Activation, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Activation {
    match activation {
        Activation::Dense(x) => {
            let [b, n] = x.dims();
            let y = f(x.clone().reshape([b, n, 1, 1]));
            Activation::Dense(y.reshape([b, n]))
        }
        Activation::Spatial(x) => Activation::Spatial(f(x.clone())),
    }
}

fn activation_statistics(
    net: &Network,
    groups: &[UnitGroup],
    batches: &[ImageBatch],
    criterion: UnitCriterion,
) -> Vec<Vec<f64>> {
    let mut sums: Vec<Vec<f64>> = groups.iter().map(|g| vec![0.0; g.units]).collect();
    for batch in batches {
        net.forward_tapped(batch.images.clone(), &mut |g, a| {
            let stat = match criterion {
                UnitCriterion::Apoz => map_activation(&a, |x| x.equal_elem(0.0).float()),
                _ => a.clone(),
            };
            for (sum, v) in sums[g].iter_mut().zip(per_unit_mean(&stat)) {
                *sum += v;
            }
            a
        });
    }
    let n = batches.len().max(1) as f64;
    sums.into_iter()
        .map(|s| s.into_iter().map(|v| if criterion == UnitCriterion::Apoz { 1.0 - v / n } else { v / n }).collect())
        .collect()
}

/// First-order Taylor. Each activation gets a zero "probe" leaf added to it: the gradient with
/// respect to the probe is the gradient with respect to the activation, and the graph upstream
/// stays whole, so one backward pass serves every group.
fn taylor(net: &Network, groups: &[UnitGroup], batches: &[ImageBatch], device: &Device) -> Vec<Vec<f64>> {
    let tracked_device = device.clone().autodiff();
    let tracked = net.clone().fork(&tracked_device).train();
    let loss_fn = CrossEntropyLossConfig::new().init(&tracked_device);
    let mut sums: Vec<Vec<f64>> = groups.iter().map(|g| vec![0.0; g.units]).collect();
    for batch in batches {
        let mut probes: Vec<(Activation, Activation)> = Vec::new();
        let images = batch.images.clone().autodiff();
        let logits = tracked.forward_tapped(images, &mut |_, a| {
            let (probe, probed) = match &a {
                Activation::Dense(x) => {
                    let probe = Tensor::zeros(x.dims(), &tracked_device).require_grad();
                    (Activation::Dense(probe.clone()), Activation::Dense(x.clone() + probe))
                }
                Activation::Spatial(x) => {
                    let probe = Tensor::zeros(x.dims(), &tracked_device).require_grad();
                    (Activation::Spatial(probe.clone()), Activation::Spatial(x.clone() + probe))
                }
            };
            probes.push((a, probe));
            probed
        });
        let loss = loss_fn.forward(logits, batch.targets.clone().autodiff());
        let grads = loss.backward();
        for (g, (activation, probe)) in probes.into_iter().enumerate() {
            let product = match (activation, probe) {
                (Activation::Dense(x), Activation::Dense(p)) => {
                    p.grad(&grads).map(|grad| Activation::Dense(x.inner() * grad))
                }
                (Activation::Spatial(x), Activation::Spatial(p)) => {
                    p.grad(&grads).map(|grad| Activation::Spatial(x.inner() * grad))
                }
                _ => None,
            };
            if let Some(product) = product {
                for (sum, v) in sums[g].iter_mut().zip(per_unit_mean(&product)) {
                    *sum += v;
                }
            }
        }
    }
    let n = batches.len().max(1) as f64;
    sums.into_iter().map(|s| s.into_iter().map(|v| (v / n).abs()).collect()).collect()
}

/// The neuron strategy in prune-retrain rounds; nothing runs during retraining, because the
/// removed units are gone.
impl Strategy for NeuronPruner {
    fn prune(&mut self, net: Network, round: usize) -> Result<Network, PruneError> {
        // A stream of its own per round, so that a resumed run draws what an uninterrupted one would.
        self.rng = SplitMix64::new(round_seed(self.config.seed, round));
        let schedule = self.config.schedule;
        self.prune_to(net, &|target| schedule.round_target(target, round))
    }

    fn target(&self, _round: usize) -> Option<f64> {
        self.last_target
    }

    fn callback(&self) -> Box<dyn Callback> {
        Box::new(NoCallback)
    }

    fn rewind(&self, pruned: Network, _initial: &Network) -> Network {
        pruned
    }

    fn resume(&mut self, dense: &Network, _net: &Network) {
        self.original_units = dense.unit_groups().into_iter().map(|g| (g.layer, g.units)).collect();
    }
}

struct NoCallback;

impl Callback for NoCallback {}
