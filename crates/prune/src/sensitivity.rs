//! Per-layer sensitivity: how much accuracy each layer loses when it alone is pruned.

use std::collections::BTreeMap;

use burn::prelude::*;
use coppice_data::Table;
use coppice_models::{Network, Prunable};
use coppice_train::Evaluation;
use serde::Serialize;

use crate::PruneError;
use crate::allocation::Allocation;
use crate::criteria::WeightCriterion;
use crate::schedule::Schedule;
use crate::weight::{WeightPruner, WeightPruning};

/// The levels `coppice sensitivity` tries when none are given.
pub const DEFAULT_LEVELS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensitivityPoint {
    pub layer: String,
    /// Sparsity of this layer alone; every other layer is dense.
    pub sparsity: f64,
    pub accuracy: f64,
    pub loss: f64,
}

/// Prunes each layer alone (magnitude, exact per-layer counts) at every level and evaluates
/// without retraining. The first point of every layer is the unpruned network.
pub fn sensitivity(
    net: &Network,
    levels: &[f64],
    device: &Device,
    evaluate: &mut dyn FnMut(&Network) -> Result<Evaluation, PruneError>,
) -> Result<Vec<SensitivityPoint>, PruneError> {
    if let Some(bad) = levels.iter().find(|l| !(0.0..1.0).contains(*l)) {
        return Err(PruneError::Invalid(format!("sensitivity level {bad} is not a sparsity in [0, 1)")));
    }
    let dense = evaluate(net)?;
    let mut points = Vec::new();
    for layer in net.prunable_layers() {
        points.push(SensitivityPoint {
            layer: layer.name.clone(),
            sparsity: 0.0,
            accuracy: dense.accuracy,
            loss: dense.loss,
        });
        for &level in levels {
            let pruning = WeightPruning {
                criterion: WeightCriterion::Magnitude,
                allocation: Allocation::Layer { target: 0.0, overrides: BTreeMap::from([(layer.name.clone(), level)]) },
                schedule: Schedule::OneShot,
                include_bias: false,
                seed: 0,
            };
            let pruned = WeightPruner::new(pruning, device.clone()).prune_to(net.clone(), &|t| t);
            let result = evaluate(&pruned)?;
            points.push(SensitivityPoint {
                layer: layer.name.clone(),
                sparsity: level,
                accuracy: result.accuracy,
                loss: result.loss,
            });
        }
    }
    Ok(points)
}

/// `sensitivity.csv`.
pub fn sensitivity_csv(points: &[SensitivityPoint]) -> String {
    let mut table = Table::new(["layer", "sparsity", "accuracy", "loss"]);
    for p in points {
        table.push([
            p.layer.clone(),
            format!("{:.4}", p.sparsity),
            format!("{:.6}", p.accuracy),
            format!("{:.6}", p.loss),
        ]);
    }
    table.to_csv()
}

/// For each layer, the largest level whose accuracy stays within `tolerance` (a fraction, e.g.
/// 0.005 for half a point) of the unpruned network: the layer's share of pruning.
pub fn tolerated_sparsity(points: &[SensitivityPoint], tolerance: f64) -> BTreeMap<String, f64> {
    let mut best: BTreeMap<String, f64> = BTreeMap::new();
    let dense: BTreeMap<&str, f64> =
        points.iter().filter(|p| p.sparsity == 0.0).map(|p| (p.layer.as_str(), p.accuracy)).collect();
    for p in points {
        let entry = best.entry(p.layer.clone()).or_insert(0.0);
        if dense.get(p.layer.as_str()).is_some_and(|d| d - p.accuracy <= tolerance) && p.sparsity > *entry {
            *entry = p.sparsity;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(layer: &str, sparsity: f64, accuracy: f64) -> SensitivityPoint {
        SensitivityPoint { layer: layer.into(), sparsity, accuracy, loss: 0.0 }
    }

    #[test]
    fn tolerated_sparsity_is_the_largest_level_within_tolerance() {
        let points = [
            point("fc1", 0.0, 0.98),
            point("fc1", 0.5, 0.979),
            point("fc1", 0.9, 0.97),
            point("fc2", 0.0, 0.98),
            point("fc2", 0.5, 0.95),
        ];
        let best = tolerated_sparsity(&points, 0.005);
        assert_eq!(best["fc1"], 0.5);
        assert_eq!(best["fc2"], 0.0);
    }
}
