//! The `[prune]` section of a config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use coppice_prune::{
    Allocation, Granularity, LayerWise, NeuronPruning, Schedule, UnitCriterion, WeightCriterion, WeightPruning,
};
use serde::{Deserialize, Serialize};

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

/// Every criterion name; each strategy accepts its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriterionName {
    Magnitude,
    Random,
    L1,
    L2,
    Activation,
    Apoz,
    Taylor,
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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneConfig {
    pub strategy: StrategyKind,
    pub criterion: CriterionName,
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
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            strategy: StrategyKind::Weight,
            criterion: CriterionName::Magnitude,
            allocation: AllocationKind::Layer,
            target: None,
            threshold: None,
            quality: None,
            layers: BTreeMap::new(),
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
        }
    }
}

type Problem = (String, String);

fn problem(field: &str, text: String) -> Problem {
    (format!("prune.{field}"), text)
}

fn sparsity(field: &str, value: f64) -> Result<f64, Problem> {
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(problem(field, format!("{value} is not a sparsity in [0, 1); fix: e.g. 0.9 prunes 90 % of the weights")))
    }
}

impl PruneConfig {
    /// Range and consistency checks that need no model.
    pub fn validate(&self) -> Result<(), Problem> {
        if self.targets == TargetSource::Sensitivity {
            if !(self.tolerance.is_finite() && self.tolerance >= 0.0 && self.tolerance < 1.0) {
                return Err(problem(
                    "tolerance",
                    format!("{} must be a fraction in [0, 1), e.g. 0.005", self.tolerance),
                ));
            }
            if self.allocation != AllocationKind::Layer {
                return Err(problem(
                    "targets",
                    "\"sensitivity\" sets per-layer targets: allocation = \"layer\"".into(),
                ));
            }
            if self.strategy == StrategyKind::Neuron {
                return Err(problem("targets", "\"sensitivity\" feeds weight or layer-wise pruning".into()));
            }
        } else {
            self.allocation()?;
        }
        if self.strategy == StrategyKind::Layerwise {
            return self.validate_layerwise();
        }
        if self.rounds == 0 {
            return Err(problem("rounds", "0: there must be at least one round; fix: rounds = 1 for one-shot".into()));
        }
        if !(self.retrain_lr_scale.is_finite() && self.retrain_lr_scale > 0.0) {
            return Err(problem("retrain_lr_scale", format!("{} must be positive, e.g. 0.1", self.retrain_lr_scale)));
        }
        if let Some(decay) = self.retrain_weight_decay
            && !(decay.is_finite() && decay >= 0.0)
        {
            return Err(problem("retrain_weight_decay", format!("{decay} must be 0 or positive, e.g. 3e-4")));
        }
        let magnitude_only = matches!(self.allocation, AllocationKind::Threshold | AllocationKind::Quality);
        if self.strategy == StrategyKind::Neuron {
            return self.validate_neuron();
        }
        self.weight_criterion()?;
        if magnitude_only && self.criterion != CriterionName::Magnitude {
            return Err(problem(
                "criterion",
                "threshold and quality allocations compare magnitudes; fix: criterion = \"magnitude\"".into(),
            ));
        }
        if self.schedule == ScheduleKind::Agp {
            if magnitude_only {
                return Err(problem(
                    "schedule",
                    "agp needs a target; fix: allocation = \"layer\" or \"global\"".into(),
                ));
            }
            sparsity("agp_initial", self.agp_initial)?;
            if self.retrain_epochs == 0 {
                return Err(problem(
                    "retrain_epochs",
                    "agp prunes during retraining, which needs at least 1 epoch".into(),
                ));
            }
            let end = self.agp_end_epoch();
            if !(self.agp_start_epoch >= 0.0 && self.agp_start_epoch < end && end <= self.retrain_epochs as f64) {
                return Err(problem(
                    "agp_end_epoch",
                    format!(
                        "the ramp {}..{end} must lie in 0..retrain_epochs ({})",
                        self.agp_start_epoch, self.retrain_epochs
                    ),
                ));
            }
            if self.agp_frequency == 0 {
                return Err(problem("agp_frequency", "must be at least 1 step".into()));
            }
        }
        if self.rewind == RewindKind::Init && self.from.is_some() {
            return Err(problem(
                "rewind",
                "\"init\" needs the initial weights, which a saved run does not keep; fix: remove prune.from or set rewind = \"none\"".into(),
            ));
        }
        Ok(())
    }

    fn validate_layerwise(&self) -> Result<(), Problem> {
        if self.allocation != AllocationKind::Layer {
            return Err(problem(
                "allocation",
                "layer-wise pruning takes per-layer targets: allocation = \"layer\"".into(),
            ));
        }
        if self.schedule != ScheduleKind::Iterative || self.rewind != RewindKind::None || self.include_bias {
            return Err(problem(
                "schedule",
                "layer-wise pruning runs one round per layer; schedule, rewind and include_bias do not apply".into(),
            ));
        }
        if !(self.max_drop.is_finite() && (0.0..1.0).contains(&self.max_drop)) {
            return Err(problem("max_drop", format!("{} must be a fraction in [0, 1), e.g. 0.01", self.max_drop)));
        }
        match self.granularity {
            Granularity::Weight => self.weight_criterion().map(|_| ()),
            Granularity::Unit => self.unit_criterion().map(|_| ()),
        }
    }

    /// Layer-wise settings, with the final target of every layer named in `targets`.
    pub fn layer_wise(&self, targets: BTreeMap<String, f64>, seed: u64) -> Result<LayerWise, Problem> {
        Ok(LayerWise {
            granularity: self.granularity,
            unit_criterion: if self.granularity == Granularity::Unit {
                self.unit_criterion()?
            } else {
                UnitCriterion::L1
            },
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

    fn validate_neuron(&self) -> Result<(), Problem> {
        self.unit_criterion()?;
        if !matches!(self.allocation, AllocationKind::Layer | AllocationKind::Global) {
            return Err(problem(
                "allocation",
                "neuron pruning allocates \"layer\" or \"global\" fractions of units".into(),
            ));
        }
        if self.schedule == ScheduleKind::Agp {
            return Err(problem("schedule", "neuron pruning runs \"oneshot\" or \"iterative\"".into()));
        }
        if self.rewind != RewindKind::None || self.include_bias {
            return Err(problem("rewind", "rewind and include_bias apply to weight pruning only".into()));
        }
        if self.min_units == 0 {
            return Err(problem("min_units", "0 would let a layer be emptied; fix: min_units = 1 or more".into()));
        }
        if self.unit_criterion()?.needs_data() && self.calibration_batches == 0 {
            return Err(problem(
                "calibration_batches",
                format!("criterion {:?} scores units on data; fix: calibration_batches = 10", self.criterion),
            ));
        }
        Ok(())
    }

    fn weight_criterion(&self) -> Result<WeightCriterion, Problem> {
        match self.criterion {
            CriterionName::Magnitude => Ok(WeightCriterion::Magnitude),
            CriterionName::Random => Ok(WeightCriterion::Random),
            other => Err(problem(
                "criterion",
                format!("{other:?} scores units; weight pruning takes \"magnitude\" or \"random\""),
            )),
        }
    }

    fn unit_criterion(&self) -> Result<UnitCriterion, Problem> {
        Ok(match self.criterion {
            CriterionName::L1 => UnitCriterion::L1,
            CriterionName::L2 => UnitCriterion::L2,
            CriterionName::Activation => UnitCriterion::Activation,
            CriterionName::Apoz => UnitCriterion::Apoz,
            CriterionName::Taylor => UnitCriterion::Taylor,
            CriterionName::Random => UnitCriterion::Random,
            CriterionName::Magnitude => {
                return Err(problem(
                    "criterion",
                    "neuron pruning takes l1, l2, activation, apoz, taylor or random".into(),
                ));
            }
        })
    }

    pub fn neuron_pruning(&self, seed: u64) -> Result<NeuronPruning, Problem> {
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

    /// Per-layer overrides must name layers of the model.
    /// The network's layers against `layers` overrides and `min_units`, before any training:
    /// `unit_layers` are the layers whose units can go, with their counts (every layer but the
    /// output). A mismatch would otherwise show only after dense training, or not at all.
    pub fn check_network(&self, layer_names: &[String], unit_layers: &[(String, usize)]) -> Result<(), Problem> {
        let removes_units = self.strategy == StrategyKind::Neuron
            || (self.strategy == StrategyKind::Layerwise && self.granularity == Granularity::Unit);
        for name in self.layers.keys() {
            if !layer_names.contains(name) {
                return Err(problem(
                    &format!("layers.{name}"),
                    format!("the model has no layer {name:?}; fix: use one of {}", layer_names.join(", ")),
                ));
            }
            if removes_units && !unit_layers.iter().any(|(layer, _)| layer == name) {
                return Err(problem(
                    &format!("layers.{name}"),
                    format!(
                        "{name} is the output layer, whose units are the classes, and unit pruning never removes them; fix: remove {name} from prune.layers"
                    ),
                ));
            }
        }
        if removes_units && let Some((layer, units)) = unit_layers.iter().find(|(_, units)| *units < self.min_units) {
            return Err(problem(
                "min_units",
                format!("{} is more than the {units} units of {layer}; fix: at most {units}", self.min_units),
            ));
        }
        Ok(())
    }

    fn agp_end_epoch(&self) -> f64 {
        self.agp_end_epoch.unwrap_or(self.retrain_epochs as f64 * 2.0 / 3.0)
    }

    fn allocation(&self) -> Result<Allocation, Problem> {
        let required = |value: Option<f64>, key: &str| {
            value.ok_or_else(|| {
                problem(key, format!("allocation = \"{}\" needs {key}; fix: add it to [prune]", self.allocation_name()))
            })
        };
        if !self.layers.is_empty() && self.allocation != AllocationKind::Layer {
            return Err(problem("layers", "per-layer overrides apply to allocation = \"layer\" only".into()));
        }
        Ok(match self.allocation {
            AllocationKind::Threshold => {
                let threshold = required(self.threshold, "threshold")?;
                if !(threshold.is_finite() && threshold >= 0.0) {
                    return Err(problem("threshold", format!("{threshold} must be 0 or positive, e.g. 0.05")));
                }
                Allocation::Threshold(threshold)
            }
            AllocationKind::Quality => {
                let quality = required(self.quality, "quality")?;
                if !(quality.is_finite() && quality > 0.0) {
                    return Err(problem("quality", format!("{quality} must be positive, e.g. 1.0")));
                }
                Allocation::Quality(quality)
            }
            AllocationKind::Global => Allocation::Global(sparsity("target", required(self.target, "target")?)?),
            AllocationKind::Layer => {
                let target = sparsity("target", required(self.target, "target")?)?;
                let mut overrides = BTreeMap::new();
                for (name, value) in &self.layers {
                    overrides.insert(name.clone(), sparsity(&format!("layers.{name}"), *value)?);
                }
                Allocation::Layer { target, overrides }
            }
        })
    }

    fn allocation_name(&self) -> &'static str {
        match self.allocation {
            AllocationKind::Threshold => "threshold",
            AllocationKind::Layer => "layer",
            AllocationKind::Global => "global",
            AllocationKind::Quality => "quality",
        }
    }

    pub fn rounds(&self) -> usize {
        match self.schedule {
            ScheduleKind::Iterative => self.rounds,
            ScheduleKind::Oneshot | ScheduleKind::Agp => 1,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(target: f64) -> PruneConfig {
        PruneConfig { target: Some(target), ..PruneConfig::default() }
    }

    #[test]
    fn layerwise_settings_are_checked() {
        let layerwise = PruneConfig { strategy: StrategyKind::Layerwise, ..layer(0.5) };
        assert!(layerwise.validate().is_ok());
        assert_eq!(field_of(&PruneConfig { max_drop: -0.1, ..layerwise.clone() }), "prune.max_drop");
        assert_eq!(
            field_of(&PruneConfig { allocation: AllocationKind::Global, ..layerwise.clone() }),
            "prune.allocation"
        );
        let unit = PruneConfig { granularity: Granularity::Unit, criterion: CriterionName::L2, ..layerwise.clone() };
        assert!(unit.validate().is_ok());
        let sensitivity = PruneConfig { targets: TargetSource::Sensitivity, target: None, ..layerwise };
        assert!(sensitivity.validate().is_ok(), "sensitivity needs no target");
        assert_eq!(field_of(&PruneConfig { tolerance: 1.5, ..sensitivity }), "prune.tolerance");
        let names = ["fc1".to_string(), "fc2".to_string()];
        let mut config = layer(0.5);
        config.layers.insert("fc2".into(), 0.9);
        assert_eq!(config.config_targets(&names), BTreeMap::from([("fc1".into(), 0.5), ("fc2".into(), 0.9)]));
    }

    #[test]
    fn neuron_settings_are_checked() {
        let neuron = |criterion| PruneConfig { strategy: StrategyKind::Neuron, criterion, ..layer(0.5) };
        assert!(neuron(CriterionName::L1).validate().is_ok());
        assert_eq!(field_of(&neuron(CriterionName::Magnitude)), "prune.criterion");
        assert_eq!(field_of(&PruneConfig { target: Some(1.0), ..neuron(CriterionName::L2) }), "prune.target");
        assert_eq!(field_of(&PruneConfig { min_units: 0, ..neuron(CriterionName::L2) }), "prune.min_units");
        let no_data = PruneConfig { calibration_batches: 0, ..neuron(CriterionName::Taylor) };
        assert_eq!(field_of(&no_data), "prune.calibration_batches");
        let weight_with_unit_criterion = PruneConfig { criterion: CriterionName::L1, ..layer(0.5) };
        assert_eq!(field_of(&weight_with_unit_criterion), "prune.criterion");
    }

    fn field_of(config: &PruneConfig) -> String {
        config.validate().expect_err("must be rejected").0
    }

    #[test]
    fn sparsity_outside_unit_interval_is_rejected() {
        assert_eq!(field_of(&layer(1.3)), "prune.target");
        assert_eq!(field_of(&layer(-0.1)), "prune.target");
        assert_eq!(field_of(&layer(1.0)), "prune.target");
        let mut config = layer(0.5);
        config.layers.insert("fc3".into(), 1.2);
        assert_eq!(field_of(&config), "prune.layers.fc3");
        assert!(layer(0.0).validate().is_ok());
    }

    #[test]
    fn negative_threshold_and_zero_rounds_are_rejected() {
        let config =
            PruneConfig { allocation: AllocationKind::Threshold, threshold: Some(-0.05), ..PruneConfig::default() };
        assert_eq!(field_of(&config), "prune.threshold");
        let config = PruneConfig { rounds: 0, ..layer(0.5) };
        assert_eq!(field_of(&config), "prune.rounds");
    }

    #[test]
    fn allocations_need_their_key() {
        assert_eq!(field_of(&PruneConfig::default()), "prune.target");
        let config = PruneConfig { allocation: AllocationKind::Quality, ..PruneConfig::default() };
        assert_eq!(field_of(&config), "prune.quality");
    }

    #[test]
    fn unknown_layer_override_is_named() {
        let mut config = layer(0.5);
        config.layers.insert("fc9".into(), 0.5);
        let (field, text) = config.check_network(&["fc1".into(), "fc2".into()], &[]).unwrap_err();
        assert_eq!(field, "prune.layers.fc9");
        assert!(text.contains("fc1, fc2"));
    }

    #[test]
    fn unit_pruning_refuses_the_output_layer_and_floors_above_a_layer() {
        let names = ["fc1".to_string(), "fc2".to_string()];
        let units = [("fc1".to_string(), 12)];
        let mut config = PruneConfig { strategy: StrategyKind::Neuron, criterion: CriterionName::L1, ..layer(0.5) };
        config.layers.insert("fc2".into(), 0.5);
        let (field, text) = config.check_network(&names, &units).unwrap_err();
        assert_eq!(field, "prune.layers.fc2");
        assert!(text.contains("output layer"), "{text}");
        config.layers.clear();
        config.min_units = 13;
        let (field, text) = config.check_network(&names, &units).unwrap_err();
        assert_eq!(field, "prune.min_units");
        assert!(text.contains("12 units of fc1"), "{text}");
        // Weight pruning may override the output layer.
        let mut weight = layer(0.5);
        weight.layers.insert("fc2".into(), 0.5);
        assert!(weight.check_network(&names, &units).is_ok());
    }

    #[test]
    fn agp_places_its_ramp_in_steps() {
        let config = PruneConfig {
            schedule: ScheduleKind::Agp,
            retrain_epochs: 3,
            agp_start_epoch: 0.5,
            agp_end_epoch: Some(2.0),
            agp_frequency: 10,
            ..layer(0.9)
        };
        config.validate().unwrap();
        let pruning = config.weight_pruning(1, 100).unwrap();
        assert_eq!(pruning.schedule, Schedule::Agp { initial: 0.0, start: 50, end: 200, frequency: 10 });
        let bad = PruneConfig { agp_end_epoch: Some(4.0), ..config };
        assert_eq!(field_of(&bad), "prune.agp_end_epoch");
    }
}
