//! Range and consistency checks of `[prune]`: each names its field and the fix.

use std::collections::BTreeMap;

use crate::allocation::Allocation;
use crate::config::{AllocationKind, PruneConfig, RewindKind, ScheduleKind, StrategyKind, TargetSource};
use crate::criteria::Criterion;
use crate::strategy::layerwise::Granularity;

/// A problem in the config: the field, and what is wrong with it and how to fix it.
pub type Problem = (String, String);

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
        if let Some(pattern) = &self.pattern {
            self.validate_pattern(pattern)?;
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
        if magnitude_only && self.criterion != Criterion::Magnitude {
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
        if self.scratch.is_some() && !self.removes_units() {
            return Err(problem(
                "scratch",
                "trains the architecture that pruning found, so the method must remove units; fix: strategy = \"neuron\" (or \"layerwise\" with granularity = \"unit\"), or remove scratch".into(),
            ));
        }
        if self.rewind == RewindKind::Init && self.from.is_some() {
            return Err(problem(
                "rewind",
                "\"init\" needs the initial weights, which a saved run does not keep; fix: remove prune.from or set rewind = \"none\"".into(),
            ));
        }
        Ok(())
    }

    fn validate_pattern(&self, pattern: &str) -> Result<(), Problem> {
        let (n, m) = parse_pattern(pattern)?;
        if self.strategy != StrategyKind::Weight {
            return Err(problem(
                "pattern",
                "N:M keeps weights, so it is weight pruning; fix: strategy = \"weight\"".into(),
            ));
        }
        if self.target.is_some() || !self.layers.is_empty() || self.allocation != AllocationKind::Layer {
            return Err(problem(
                "pattern",
                format!(
                    "\"{n}:{m}\" sets the sparsity of every layer ({:.0} %); fix: remove target, layers and allocation",
                    (1.0 - n as f64 / m as f64) * 100.0
                ),
            ));
        }
        if self.include_bias {
            return Err(problem(
                "include_bias",
                "N:M groups run along a layer's weights; fix: include_bias = false".into(),
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

    fn validate_neuron(&self) -> Result<(), Problem> {
        if self.schedule == ScheduleKind::Agp {
            return Err(problem("schedule", "neuron pruning runs \"oneshot\" or \"iterative\"".into()));
        }
        if self.rewind != RewindKind::None || self.include_bias {
            return Err(problem("rewind", "rewind and include_bias apply to weight pruning only".into()));
        }
        self.neuron_pruning(0)?.check(self.calibration_batches).map_err(|(field, text)| problem(field, text))
    }

    pub(super) fn weight_criterion(&self) -> Result<Criterion, Problem> {
        if self.criterion.scores_weights() {
            Ok(self.criterion)
        } else {
            Err(problem(
                "criterion",
                format!("{:?} scores units; weight pruning takes \"magnitude\" or \"random\"", self.criterion),
            ))
        }
    }

    pub(super) fn unit_criterion(&self) -> Result<Criterion, Problem> {
        if self.criterion.scores_units() {
            Ok(self.criterion)
        } else {
            Err(problem("criterion", "neuron pruning takes l1, l2, activation, apoz, taylor or random".into()))
        }
    }

    /// Per-layer overrides must name layers of the model.
    /// The network's layers against `layers` overrides and `min_units`, before any training:
    /// `unit_layers` are the layers whose units can go, with their counts (every layer but the
    /// output). A mismatch would otherwise show only after dense training, or not at all.
    pub fn check_network(&self, layer_names: &[String], unit_layers: &[(String, usize)]) -> Result<(), Problem> {
        let removes_units = self.removes_units();
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

    pub(super) fn agp_end_epoch(&self) -> f64 {
        self.agp_end_epoch.unwrap_or(self.retrain_epochs as f64 * 2.0 / 3.0)
    }

    pub(super) fn allocation(&self) -> Result<Allocation, Problem> {
        let required = |value: Option<f64>, key: &str| {
            value.ok_or_else(|| {
                problem(key, format!("allocation = \"{}\" needs {key}; fix: add it to [prune]", self.allocation_name()))
            })
        };
        if let Some(pattern) = &self.pattern {
            let (n, m) = parse_pattern(pattern)?;
            return Ok(Allocation::NofM { n, m });
        }
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
}

/// `"N:M"` with 0 < N < M.
fn parse_pattern(pattern: &str) -> Result<(usize, usize), Problem> {
    let parsed = pattern.split_once(':').and_then(|(n, m)| Some((n.trim().parse().ok()?, m.trim().parse().ok()?)));
    match parsed {
        Some((n, m)) if 0 < n && n < m => Ok((n, m)),
        _ => Err(problem("pattern", format!("{pattern:?} is not \"N:M\" with 0 < N < M; fix: e.g. \"2:4\""))),
    }
}
