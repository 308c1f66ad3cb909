//! Layer-wise pruning: from the input layer to the output, prune one layer, retrain, move on.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::prelude::*;
use coppice_data::ImageBatch;
use coppice_models::{Network, ParamEditor, Prunable, edit_param, edit_params, float_params};
use coppice_train::{Callback, Callbacks, Evaluation, evaluate, fit};
use serde::{Deserialize, Serialize};

use crate::PruneError;
use crate::allocation::Allocation;
use crate::criteria::WeightCriterion;
use crate::neuron::{NeuronPruner, NeuronPruning, UnitCriterion};
use crate::report::{SparsityReport, sparsity_report};
use crate::rounds::Rounds;
use crate::schedule::Schedule;
use crate::weight::{WeightPruner, WeightPruning};

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
    pub unit_criterion: UnitCriterion,
    /// Final sparsity (weights) or fraction of units per layer; layers not named stay dense.
    pub targets: BTreeMap<String, f64>,
    /// Earlier, already pruned layers keep their values while later layers retrain.
    pub freeze_pruned: bool,
    /// Accepted drop of validation accuracy below the dense network, as a fraction.
    pub max_drop: f64,
    pub max_retries: usize,
    pub seed: u64,
}

/// One try at one layer; the accepted try of each layer is that layer's round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerAttempt {
    pub layer: String,
    /// 0 for the first try, then one more per back-off.
    pub attempt: usize,
    pub target: f64,
    pub valid_accuracy: f64,
    pub accepted: bool,
    pub sparsity: SparsityReport,
    pub test: Evaluation,
    pub seconds: f64,
    pub epochs: Vec<coppice_train::EpochRecord>,
}

/// The layers in forward order, as the granularity sees them.
pub fn layer_order(net: &Network, granularity: Granularity) -> Vec<String> {
    match granularity {
        Granularity::Weight => net.prunable_layers().into_iter().map(|l| l.name).collect(),
        Granularity::Unit => net.unit_groups().into_iter().map(|g| g.layer).collect(),
    }
}

/// Walks the layers in forward order. Each layer is pruned to its target and the network
/// retrained; when validation accuracy then lies more than `max_drop` below the dense network's,
/// the sparsity added in that step is halved and the layer tried again from where it started,
/// at most `max_retries` times. `on_attempt` sees every try.
///
/// With `done` (an interrupted run's tries and its dense network), `net` is the network after
/// the last accepted try, and the walk goes on at the next layer; the tries of a layer that was
/// not accepted yet are made again, as they were.
pub fn run_layerwise(
    mut net: Network,
    config: &LayerWise,
    rounds: &Rounds,
    calibration: Vec<ImageBatch>,
    done: Option<LayerwiseDone>,
    on_attempt: &mut dyn FnMut(&LayerAttempt, &Network),
) -> Result<(Network, Vec<LayerAttempt>), PruneError> {
    let device = rounds.retrain.device.clone();
    let batch = rounds.retrain.config.eval_batch_size;
    let valid_of = |n: &Network| evaluate(n, rounds.valid.clone(), rounds.batcher.clone(), batch, &device);
    let test_of = |n: &Network| evaluate(n, rounds.test.clone(), rounds.batcher.clone(), batch, &device);
    let (dense_valid, mut attempts) = match done {
        Some(LayerwiseDone { attempts, dense }) => (valid_of(&dense)?.accuracy, attempts),
        None => (valid_of(&net)?.accuracy, Vec::new()),
    };
    let mut accepted: BTreeMap<String, f64> =
        attempts.iter().filter(|a| a.accepted).map(|a| (a.layer.clone(), a.target)).collect();
    let order = layer_order(&net, config.granularity);
    for (index, layer) in order.iter().enumerate() {
        let Some(&final_target) = config.targets.get(layer) else { continue };
        if accepted.contains_key(layer) {
            continue;
        }
        let mut added = final_target;
        for attempt in 0..=config.max_retries {
            let started = std::time::Instant::now();
            let target = added;
            let (candidate, masks) = prune_layer(&net, config, &accepted, layer, target, &calibration, &device)?;
            let mut callbacks: Vec<Box<dyn Callback>> = Vec::new();
            if let Some(masks) = masks {
                callbacks.push(Box::new(masks));
            }
            if config.freeze_pruned {
                callbacks.push(Box::new(Freeze::of(&candidate, &order[..index])));
            }
            let mut candidate = candidate;
            let mut epochs = Vec::new();
            if rounds.retrain.config.epochs > 0 {
                let setup = rounds.retrain_setup(
                    &format!("{layer}-{attempt}"),
                    index as u64,
                    format!("{layer} try {}", attempt + 1),
                );
                let outcome = fit(
                    candidate,
                    rounds.train.clone(),
                    rounds.valid.clone(),
                    rounds.batcher.clone(),
                    &setup,
                    &Callbacks::new(callbacks),
                )?;
                candidate = outcome.net;
                epochs = outcome.epochs;
            }
            let valid_accuracy = valid_of(&candidate)?.accuracy;
            let ok = dense_valid - valid_accuracy <= config.max_drop || attempt == config.max_retries;
            let record = LayerAttempt {
                layer: layer.clone(),
                attempt,
                target,
                valid_accuracy,
                accepted: ok,
                sparsity: sparsity_report(&candidate),
                test: test_of(&candidate)?,
                seconds: started.elapsed().as_secs_f64(),
                epochs,
            };
            on_attempt(&record, &candidate);
            attempts.push(record);
            if ok {
                net = candidate;
                accepted.insert(layer.clone(), target);
                break;
            }
            added /= 2.0;
        }
    }
    Ok((net, attempts))
}

/// What an interrupted layer-wise run finished: its tries up to the last accepted one, and its
/// network before the first layer (the accuracy every try is held against).
pub struct LayerwiseDone {
    pub attempts: Vec<LayerAttempt>,
    pub dense: Network,
}

impl LayerwiseDone {
    /// Drops the tries at a layer that was not accepted before the interruption: they are made
    /// again.
    pub fn new(mut attempts: Vec<LayerAttempt>, dense: Network) -> Self {
        attempts.truncate(attempts.iter().rposition(|a| a.accepted).map_or(0, |last| last + 1));
        Self { attempts, dense }
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
            let mut overrides = accepted.clone();
            overrides.insert(layer.to_string(), target);
            let pruning = WeightPruning {
                criterion: WeightCriterion::Magnitude,
                allocation: Allocation::Layer { target: 0.0, overrides },
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
                allocation: Allocation::Layer { target: 0.0, overrides: BTreeMap::from([(layer.to_string(), target)]) },
                schedule: Schedule::OneShot,
                normalize: false,
                min_units: 1,
                seed: config.seed,
            };
            let data = if config.unit_criterion.needs_data() { calibration.to_vec() } else { Vec::new() };
            let mut pruner = NeuronPruner::new(pruning, data, device.clone())?;
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
