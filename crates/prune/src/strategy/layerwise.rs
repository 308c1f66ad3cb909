//! Layer-wise pruning: from the input layer to the output, prune one layer, retrain, judge
//! the result on the validation split, and back off (halve the layer's step) when it cost too
//! much; each layer is one round.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::prelude::*;
use coppice_data::ImageBatch;
use coppice_models::{Network, ParamEditor, Prunable, edit_param, edit_params, float_params};
use coppice_train::Callback;
use serde::{Deserialize, Serialize};

use crate::PruneError;
use crate::allocation::Allocation;
use crate::criteria::Criterion;
use crate::records::RoundRecord;
use crate::schedule::Schedule;
use crate::strategy::neuron::{NeuronPruner, NeuronPruning};
use crate::strategy::weight::{WeightPruner, WeightPruning};
use crate::strategy::{Retraining, Strategy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Mask individual weights of the layer (magnitude).
    Weight,
    /// Remove the layer's neurons or filters.
    Unit,
}

#[derive(Clone, Debug)]
pub struct LayerWise {
    pub granularity: Granularity,
    /// For `Unit`: how units are ranked.
    pub unit_criterion: Criterion,
    /// Final sparsity (weights) or fraction of units per layer; layers not named stay dense.
    pub targets: BTreeMap<String, f64>,
    /// Earlier, already pruned layers keep their values while later layers retrain.
    pub freeze_pruned: bool,
    /// Accepted drop of validation accuracy below the dense network, as a fraction.
    pub max_drop: f64,
    pub max_retries: usize,
    pub seed: u64,
}

/// The layers in forward order, as the granularity sees them.
pub fn layer_order(net: &Network, granularity: Granularity) -> Vec<String> {
    match granularity {
        Granularity::Weight => net.prunable_layers().into_iter().map(|l| l.name).collect(),
        Granularity::Unit => net.unit_groups().into_iter().map(|g| g.layer).collect(),
    }
}

/// The layer-wise strategy: round r prunes the r-th layer with a target, try `a` at the
/// target halved `a` times.
pub struct LayerWisePruner {
    config: LayerWise,
    /// Training batches for data-driven unit criteria.
    calibration: Vec<ImageBatch>,
    device: Device,
    /// Every layer in forward order, and the rounds' layers as indices into it.
    order: Vec<String>,
    rounds: Vec<usize>,
    /// The targets earlier layers were accepted at.
    accepted: BTreeMap<String, f64>,
    /// The try under way: its round and target, and for weight granularity the masks that hold
    /// during its retraining.
    current: Option<(usize, f64)>,
    masks: Option<WeightPruner>,
}

impl LayerWisePruner {
    pub fn new(config: LayerWise, net: &Network, calibration: Vec<ImageBatch>, device: Device) -> Self {
        let order = layer_order(net, config.granularity);
        let rounds = (0..order.len()).filter(|&i| config.targets.contains_key(&order[i])).collect();
        let calibration = if config.unit_criterion.needs_data() { calibration } else { Vec::new() };
        LayerWisePruner {
            config,
            calibration,
            device,
            order,
            rounds,
            accepted: BTreeMap::new(),
            current: None,
            masks: None,
        }
    }

    fn layer(&self, round: usize) -> (usize, &str) {
        let index = self.rounds[round - 1];
        (index, &self.order[index])
    }
}

impl Strategy for LayerWisePruner {
    fn rounds(&self) -> usize {
        self.rounds.len()
    }

    fn prune(&mut self, net: &Network, round: usize, attempt: usize) -> Result<Network, PruneError> {
        // A new round starts only after the driver accepted the try before it.
        if let Some((done, target)) = self.current.filter(|(r, _)| *r < round) {
            self.accepted.insert(self.layer(done).1.to_string(), target);
        }
        let layer = self.layer(round).1.to_string();
        let target = self.config.targets[&layer] / 2f64.powi(attempt as i32);
        self.current = Some((round, target));
        let (pruned, masks) =
            prune_layer(net, &self.config, &self.accepted, &layer, target, &self.calibration, &self.device)?;
        self.masks = masks;
        Ok(pruned)
    }

    fn target(&self) -> Option<f64> {
        self.current.map(|(_, target)| target)
    }

    fn callbacks(&self, pruned: &Network) -> Vec<Box<dyn Callback>> {
        let mut callbacks: Vec<Box<dyn Callback>> = Vec::new();
        if let Some(masks) = &self.masks {
            callbacks.push(Box::new(masks.clone()));
        }
        if self.config.freeze_pruned
            && let Some((round, _)) = self.current
        {
            callbacks.push(Box::new(Freeze::of(pruned, &self.order[..self.layer(round).0])));
        }
        callbacks
    }

    fn retraining(&self, round: usize, attempt: usize) -> Retraining {
        let (index, layer) = self.layer(round);
        Retraining {
            folder: format!("{layer}-{attempt}"),
            seed_offset: index as u64,
            label: format!("{layer} try {}", attempt + 1),
        }
    }

    fn round_name(&self, round: usize) -> String {
        self.layer(round).1.to_string()
    }

    fn judges(&self) -> bool {
        true
    }

    fn accepts(&self, dense_valid: f64, valid_accuracy: f64, attempt: usize) -> bool {
        dense_valid - valid_accuracy <= self.config.max_drop || attempt == self.config.max_retries
    }

    fn resume(&mut self, _dense: &Network, _net: &Network, records: &[RoundRecord]) {
        for record in records.iter().filter(|r| r.round > 0) {
            let layer = self.layer(record.round).1.to_string();
            self.accepted.insert(layer, record.target.unwrap_or(0.0));
        }
        self.current = None;
    }
}

/// Prunes `layer` to `target`, keeping earlier layers at what they were accepted at. Weight
/// granularity returns the masks that must hold during retraining.
fn prune_layer(
    net: &Network,
    config: &LayerWise,
    accepted: &BTreeMap<String, f64>,
    layer: &str,
    target: f64,
    calibration: &[ImageBatch],
    device: &Device,
) -> Result<(Network, Option<WeightPruner>), PruneError> {
    match config.granularity {
        Granularity::Weight => {
            let mut targets = accepted.clone();
            targets.insert(layer.to_string(), target);
            let pruning = WeightPruning {
                criterion: Criterion::Magnitude,
                allocation: Allocation::PerLayer(targets),
                schedule: Schedule::OneShot,
                include_bias: false,
                seed: config.seed,
            };
            let pruner = WeightPruner::new(pruning, device.clone());
            let pruned = pruner.prune_to(net.deep_clone(), &|t| t);
            Ok((pruned, Some(pruner)))
        }
        Granularity::Unit => {
            let pruning = NeuronPruning {
                criterion: config.unit_criterion,
                allocation: Allocation::PerLayer(BTreeMap::from([(layer.to_string(), target)])),
                schedule: Schedule::OneShot,
                normalize: false,
                min_units: 1,
                seed: config.seed,
            };
            let mut pruner = NeuronPruner::new(pruning, calibration.to_vec(), device.clone())?;
            Ok((pruner.prune_to(net.deep_clone(), &|t| t)?, None))
        }
    }
}

/// Puts the frozen layers' tensors back after every optimizer step, so they keep exactly the
/// values they had when their layer was pruned.
struct Freeze {
    values: BTreeMap<String, Tensor<1>>,
}

impl Freeze {
    fn of(net: &Network, layers: &[String]) -> Freeze {
        let mut paths = Vec::new();
        for layer in net.prunable_layers().into_iter().filter(|l| layers.contains(&l.name)) {
            paths.push(layer.weight_path);
            paths.extend(layer.bias_path);
        }
        let values =
            float_params(net).into_iter().filter(|p| paths.contains(&p.path)).map(|p| (p.path, p.values)).collect();
        Freeze { values }
    }
}

impl Callback for Freeze {
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        if self.values.is_empty() {
            return net;
        }
        edit_params(net, self)
    }
}

impl ParamEditor for Freeze {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.get(path) {
            Some(frozen) => edit_param(param, |value| {
                let shape = value.shape();
                frozen.clone().inner().reshape(shape)
            }),
            None => param,
        }
    }
}
