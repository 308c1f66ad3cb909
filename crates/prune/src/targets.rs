//! Per-layer targets from a sensitivity analysis: each layer's share of pruning is what it
//! tolerates alone.

use std::collections::BTreeMap;

use burn::prelude::Device;
use coppice_models::Network;
use coppice_train::Evaluation;

use crate::PruneError;
use crate::sensitivity::{SensitivityPoint, sensitivity};

/// Prunes each layer alone at every level, evaluates it with `evaluate` (the validation split),
/// and gives each layer the largest level within `tolerance` of the unpruned network.
pub fn sensitivity_targets(
    net: &Network,
    levels: &[f64],
    tolerance: f64,
    device: &Device,
    evaluate: &mut dyn FnMut(&Network) -> Result<Evaluation, PruneError>,
) -> Result<BTreeMap<String, f64>, PruneError> {
    Ok(tolerated_sparsity(&sensitivity(net, levels, device, evaluate, &mut |_| {})?, tolerance))
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
