//! The `[prune]` section of a config, and the pruning method it builds: as burn builds a module
//! from its `Config`, [`PruneConfig::init`] builds the strategy, and the runner only reads the
//! TOML. The checks live in `config/validate.rs`.

mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::Device;
use coppice_data::{ImageBatch, ImageBatcher, ImageDataset};
use coppice_models::Network;
use coppice_train::{Evaluation, TrainConfig, TrainSetup};
use serde::{Deserialize, Serialize};

use crate::PruneError;
use crate::allocation::Allocation;
use crate::criteria::Criterion;
use crate::rounds::{Rewind, Rounds};
use crate::schedule::Schedule;
use crate::scratch::{Scratch, ScratchBudget};
use crate::sensitivity::DEFAULT_LEVELS;
use crate::strategy::Strategy;
use crate::strategy::layerwise::{Granularity, LayerWise, LayerWisePruner, layer_order};
use crate::strategy::neuron::{NeuronPruner, NeuronPruning};
use crate::strategy::weight::{WeightPruner, WeightPruning};
use crate::targets::sensitivity_targets;

pub use validate::Problem;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    Weight,
    Neuron,
    Layerwise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetSource {
    /// `target` and `layers` as written.
    Config,
    /// Per layer, the largest level of a sensitivity analysis within `tolerance` of dense.
    Sensitivity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllocationKind {
    Threshold,
    Layer,
    Global,
    Quality,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Oneshot,
    Iterative,
    Agp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewindKind {
    None,
    Init,
    Random,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneConfig {
    pub strategy: StrategyKind,
    pub criterion: Criterion,
    pub allocation: AllocationKind,
    /// Final sparsity for `layer` (every layer) and `global` (all layers together), in [0, 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// `threshold` allocation: prune |w| below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `quality` allocation (Han et al. 2015): prune |w| below quality x std of the layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
    /// Per-layer final sparsity overriding `target` for `layer` allocation, e.g. `fc3 = 0.74`.
    pub layers: BTreeMap<String, f64>,
    /// N:M semi-structured sparsity, e.g. `"2:4"`: of every M consecutive weights along a
    /// layer's input, the N largest stay (weight pruning; instead of `target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub schedule: ScheduleKind,
    pub rounds: usize,
    pub retrain_epochs: usize,
    pub retrain_lr_scale: f64,
    /// Weight decay while retraining; absent: `train.weight_decay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrain_weight_decay: Option<f64>,
    pub include_bias: bool,
    pub rewind: RewindKind,
    /// Start from a saved run's model instead of training dense.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    pub agp_initial: f64,
    /// AGP ramps from `agp_start_epoch` to `agp_end_epoch` of the retraining (fractions allowed).
    pub agp_start_epoch: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agp_end_epoch: Option<f64>,
    /// AGP updates the masks every this many optimizer steps.
    pub agp_frequency: usize,
    /// Neuron: divide each layer's unit scores by their L2 norm (fair global ranking).
    pub normalize: bool,
    /// Neuron: units every layer keeps at least.
    pub min_units: usize,
    /// Neuron: training batches that activation, APoZ and Taylor scores are measured on.
    pub calibration_batches: usize,
    /// Where per-layer targets come from (weight with `layer` allocation, and layer-wise).
    pub targets: TargetSource,
    /// `targets = "sensitivity"`: accepted accuracy drop of one layer pruned alone, a fraction.
    pub tolerance: f64,
    /// Layer-wise: `"weight"` masks weights, `"unit"` removes neurons or filters.
    pub granularity: Granularity,
    /// Layer-wise: keep already pruned layers fixed while later layers retrain.
    pub freeze_pruned: bool,
    /// Layer-wise: back off a layer when validation accuracy falls more than this below dense.
    pub max_drop: f64,
    /// Layer-wise: back-offs per layer at most.
    pub max_retries: usize,
    /// After the last round, train the pruned architecture from a fresh initialization (Liu et
    /// al.'s Scratch-E or Scratch-B); the methods that remove units only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchBudget>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            strategy: StrategyKind::Weight,
            criterion: Criterion::Magnitude,
            allocation: AllocationKind::Layer,
            target: None,
            threshold: None,
            quality: None,
            layers: BTreeMap::new(),
            pattern: None,
            schedule: ScheduleKind::Iterative,
            rounds: 1,
            retrain_epochs: 3,
            retrain_lr_scale: 0.1,
            retrain_weight_decay: None,
            include_bias: false,
            rewind: RewindKind::None,
            from: None,
            agp_initial: 0.0,
            agp_start_epoch: 0.0,
            agp_end_epoch: None,
            agp_frequency: 100,
            normalize: true,
            min_units: 1,
            calibration_batches: 10,
            targets: TargetSource::Config,
            tolerance: 0.005,
            granularity: Granularity::Weight,
            freeze_pruned: false,
            max_drop: 0.01,
            max_retries: 2,
            scratch: None,
        }
    }
}

/// What building a method needs besides its config.
pub struct PruneContext<'a> {
    pub seed: u64,
    /// Places the AGP ramp in optimizer steps.
    pub steps_per_epoch: usize,
    pub device: Device,
    /// The first `n` training batches, for criteria that measure units on data.
    pub calibration: &'a dyn Fn(usize) -> Vec<ImageBatch>,
    /// Evaluation on the validation split, for targets from a sensitivity analysis.
    pub evaluate_valid: &'a mut dyn FnMut(&Network) -> Result<Evaluation, PruneError>,
}

/// A method built from its config.
pub struct Pruning {
    pub strategy: Box<dyn Strategy>,
    /// With `targets = "sensitivity"`: the per-layer targets the analysis found.
    pub sensitivity_targets: Option<BTreeMap<String, f64>>,
}

impl PruneConfig {
    /// The method this config describes, for `dense` (the network before round 1).
    pub fn init(&self, dense: &Network, context: PruneContext) -> Result<Pruning, PruneError> {
        let invalid = |(field, text): Problem| PruneError::Invalid(format!("{field}: {text}"));
        let sensitivity_targets = match self.targets {
            TargetSource::Config => None,
            TargetSource::Sensitivity => Some(sensitivity_targets(
                dense,
                &DEFAULT_LEVELS,
                self.tolerance,
                &context.device,
                context.evaluate_valid,
            )?),
        };
        let calibration =
            |needed: bool| if needed { (context.calibration)(self.calibration_batches) } else { Vec::new() };
        let strategy: Box<dyn Strategy> = match self.strategy {
            StrategyKind::Weight => {
                let mut pruning = self.weight_pruning(context.seed, context.steps_per_epoch).map_err(invalid)?;
                if let Some(targets) = &sensitivity_targets {
                    pruning.allocation = Allocation::PerLayer(targets.clone());
                }
                Box::new(WeightPruner::new(pruning, context.device))
            }
            StrategyKind::Neuron => {
                let pruning = self.neuron_pruning(context.seed).map_err(invalid)?;
                let calibration = calibration(pruning.criterion.needs_data());
                Box::new(NeuronPruner::new(pruning, calibration, context.device)?)
            }
            StrategyKind::Layerwise => {
                let targets = match &sensitivity_targets {
                    Some(targets) => targets.clone(),
                    None => self.config_targets(&layer_order(dense, self.granularity)),
                };
                let layer_wise = self.layer_wise(targets, context.seed).map_err(invalid)?;
                let data_needed = layer_wise.granularity == Granularity::Unit && layer_wise.unit_criterion.needs_data();
                Box::new(LayerWisePruner::new(layer_wise, dense, calibration(data_needed), context.device))
            }
        };
        Ok(Pruning { strategy, sensitivity_targets })
    }

    /// The rounds' training: `retrain_epochs` epochs at the dense rate scaled by
    /// `retrain_lr_scale`, with `retrain_weight_decay` where it is set.
    pub fn retraining(&self, dense: &TrainConfig) -> TrainConfig {
        TrainConfig {
            epochs: self.retrain_epochs,
            lr: dense.lr * self.retrain_lr_scale,
            lr_min: dense.lr_min * self.retrain_lr_scale,
            weight_decay: self.retrain_weight_decay.unwrap_or(dense.weight_decay),
            ..dense.clone()
        }
    }

    /// The rounds of this config over the given splits: `dense_training` is the dense training's
    /// setup, whose folder and seed the rounds build on; `initial` the network's initial
    /// weights, which `rewind = "init"` resets the survivors to.
    pub fn rounds(
        &self,
        dense_training: &TrainSetup,
        splits: [ImageDataset; 3],
        batcher: ImageBatcher,
        initial: Network,
    ) -> Rounds {
        let [train, valid, test] = splits;
        Rounds {
            retrain: TrainSetup {
                config: self.retraining(&dense_training.config),
                label: String::new(),
                ..dense_training.clone()
            },
            train,
            valid,
            test,
            batcher,
            rewind: match self.rewind {
                RewindKind::None => Rewind::None,
                RewindKind::Init => Rewind::Init(initial),
                RewindKind::Random => Rewind::Random { like: initial, seed: dense_training.seed },
            },
            quantize: None,
            scratch: self.scratch.map(|budget| Scratch { budget, dense: dense_training.config.clone() }),
        }
    }

    /// Whether the method removes units (and never the output layer's).
    pub fn removes_units(&self) -> bool {
        self.strategy == StrategyKind::Neuron
            || (self.strategy == StrategyKind::Layerwise && self.granularity == Granularity::Unit)
    }

    /// Layer-wise settings, with the final target of every layer named in `targets`.
    fn layer_wise(&self, targets: BTreeMap<String, f64>, seed: u64) -> Result<LayerWise, Problem> {
        Ok(LayerWise {
            granularity: self.granularity,
            unit_criterion: if self.granularity == Granularity::Unit { self.unit_criterion()? } else { Criterion::L1 },
            targets,
            freeze_pruned: self.freeze_pruned,
            max_drop: self.max_drop,
            max_retries: self.max_retries,
            seed,
        })
    }

    /// Each layer's final target from `target` and the `layers` overrides.
    pub fn config_targets(&self, layer_names: &[String]) -> BTreeMap<String, f64> {
        layer_names
            .iter()
            .map(|name| (name.clone(), self.layers.get(name).copied().or(self.target).unwrap_or(0.0)))
            .collect()
    }

    pub(crate) fn neuron_pruning(&self, seed: u64) -> Result<NeuronPruning, Problem> {
        let schedule = match self.schedule {
            ScheduleKind::Iterative => Schedule::Iterative { rounds: self.rounds },
            _ => Schedule::OneShot,
        };
        Ok(NeuronPruning {
            criterion: self.unit_criterion()?,
            allocation: self.allocation()?,
            schedule,
            normalize: self.normalize,
            min_units: self.min_units,
            seed,
        })
    }

    /// The strategy's settings; `steps_per_epoch` places the AGP ramp in optimizer steps.
    pub fn weight_pruning(&self, seed: u64, steps_per_epoch: usize) -> Result<WeightPruning, Problem> {
        let schedule = match self.schedule {
            ScheduleKind::Oneshot => Schedule::OneShot,
            ScheduleKind::Iterative => Schedule::Iterative { rounds: self.rounds },
            ScheduleKind::Agp => Schedule::Agp {
                initial: self.agp_initial,
                start: (self.agp_start_epoch * steps_per_epoch as f64).round() as usize,
                end: (self.agp_end_epoch() * steps_per_epoch as f64).round() as usize,
                frequency: self.agp_frequency,
            },
        };
        Ok(WeightPruning {
            criterion: self.weight_criterion()?,
            allocation: self.allocation()?,
            schedule,
            include_bias: self.include_bias,
            seed,
        })
    }
}
