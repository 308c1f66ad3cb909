//! Neuron and filter pruning: score units, remove the least important for real.

use std::collections::BTreeMap;

use burn::prelude::*;
use coppice_data::{ImageBatch, SplitMix64};
use coppice_models::{Network, Prunable, UnitGroup};
use coppice_train::Callback;

use crate::PruneError;
use crate::allocation::{Allocation, LayerScores, allocate};
use crate::criteria::Criterion;
use crate::records::{RoundRecord, round_seed};
use crate::schedule::Schedule;
use crate::strategy::Strategy;
use crate::surgery::{UnitCut, cut_units};

#[derive(Clone, Debug)]
pub struct NeuronPruning {
    /// One that scores units.
    pub criterion: Criterion,
    /// `Layer` or `Global`; targets are fractions of each layer's original units.
    pub allocation: Allocation,
    pub schedule: Schedule,
    /// Divide each layer's scores by their L2 norm, so a global ranking compares layers fairly.
    pub normalize: bool,
    /// Units every layer keeps at least.
    pub min_units: usize,
    pub seed: u64,
}

impl NeuronPruning {
    /// What neuron pruning can work with, given `calibration_batches` batches of data: the
    /// field at fault (as `[prune]` names it) and what is wrong. The config's checks and the
    /// pruner's both ask this.
    pub fn check(&self, calibration_batches: usize) -> Result<(), (&'static str, String)> {
        if !self.criterion.scores_units() {
            return Err(("criterion", "neuron pruning takes l1, l2, activation, apoz, taylor or random".into()));
        }
        if !matches!(self.allocation, Allocation::Layer { .. } | Allocation::PerLayer(_) | Allocation::Global(_)) {
            return Err(("allocation", "neuron pruning allocates \"layer\" or \"global\" fractions of units".into()));
        }
        if self.min_units == 0 {
            return Err(("min_units", "0 would let a layer be emptied; fix: min_units = 1 or more".into()));
        }
        if self.criterion.needs_data() && calibration_batches == 0 {
            return Err((
                "calibration_batches",
                format!("criterion {:?} scores units on data; fix: calibration_batches = 10", self.criterion),
            ));
        }
        Ok(())
    }
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
        config.check(calibration.len()).map_err(|(field, text)| PruneError::Invalid(format!("{field}: {text}")))?;
        let rng = SplitMix64::new(config.seed);
        Ok(Self { config, calibration, device, rng, original_units: BTreeMap::new(), last_target: None })
    }

    /// Per unit group, one score per current unit.
    pub fn scores(&mut self, net: &Network) -> Vec<Vec<f64>> {
        let mut scores = self.config.criterion.unit_scores(net, &self.calibration, &self.device, &mut self.rng);
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
            Allocation::Layer { .. } | Allocation::PerLayer(_) => Allocation::PerLayer(
                groups
                    .iter()
                    .map(|g| {
                        let target = target_now(self.config.allocation.layer_target(&g.layer).unwrap_or(0.0));
                        (g.layer.clone(), now_fraction(g, target))
                    })
                    .collect(),
            ),
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
            .map(|(g, s)| LayerScores { name: &g.layer, scores: s.clone(), values: &empty, layout: None })
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

/// The neuron strategy in prune-retrain rounds; nothing runs during retraining, because the
/// removed units are gone.
impl Strategy for NeuronPruner {
    fn rounds(&self) -> usize {
        self.config.schedule.rounds()
    }

    fn prune(&mut self, net: &Network, round: usize, _attempt: usize) -> Result<Network, PruneError> {
        // A stream of its own per round, so that a resumed run draws what an uninterrupted one would.
        self.rng = SplitMix64::new(round_seed(self.config.seed, round));
        let schedule = self.config.schedule;
        self.prune_to(net.clone(), &|target| schedule.round_target(target, round))
    }

    fn target(&self) -> Option<f64> {
        self.last_target
    }

    fn callbacks(&self, _pruned: &Network) -> Vec<Box<dyn Callback>> {
        Vec::new()
    }

    fn resume(&mut self, dense: &Network, _net: &Network, _records: &[RoundRecord]) {
        self.original_units = dense.unit_groups().into_iter().map(|g| (g.layer, g.units)).collect();
    }
}
