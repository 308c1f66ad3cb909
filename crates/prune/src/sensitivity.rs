//! Per-layer sensitivity: how much accuracy each layer loses when it alone is pruned.

use std::collections::BTreeMap;

use burn::prelude::*;
use coppice_models::{Network, Prunable};
use coppice_train::Evaluation;
use serde::Serialize;

use crate::PruneError;
use crate::allocation::Allocation;
use crate::criteria::Criterion;
use crate::schedule::Schedule;
use crate::strategy::weight::{WeightPruner, WeightPruning};

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

/// Sensitivity levels must be sparsities in [0, 1).
pub fn check_levels(levels: &[f64]) -> Result<(), PruneError> {
    match levels.iter().find(|l| !(0.0..1.0).contains(*l)) {
        Some(bad) => Err(PruneError::Invalid(format!("sensitivity level {bad} is not a sparsity in [0, 1)"))),
        None => Ok(()),
    }
}

/// Prunes each layer alone (magnitude, exact per-layer counts) at every level and evaluates
/// without retraining. The first point of every layer is the unpruned network, evaluated once.
/// `on_point` sees each evaluation as it ends (the unpruned one first, as a point of sparsity 0),
/// for progress.
pub fn sensitivity(
    net: &Network,
    levels: &[f64],
    device: &Device,
    evaluate: &mut dyn FnMut(&Network) -> Result<Evaluation, PruneError>,
    on_point: &mut dyn FnMut(&SensitivityPoint),
) -> Result<Vec<SensitivityPoint>, PruneError> {
    check_levels(levels)?;
    let dense = evaluate(net)?;
    let layers = net.prunable_layers();
    if let Some(first) = layers.first() {
        on_point(&SensitivityPoint {
            layer: first.name.clone(),
            sparsity: 0.0,
            accuracy: dense.accuracy,
            loss: dense.loss,
        });
    }
    let mut points = Vec::new();
    for layer in layers {
        points.push(SensitivityPoint {
            layer: layer.name.clone(),
            sparsity: 0.0,
            accuracy: dense.accuracy,
            loss: dense.loss,
        });
        for &level in levels {
            let pruning = WeightPruning {
                criterion: Criterion::Magnitude,
                allocation: Allocation::PerLayer(BTreeMap::from([(layer.name.clone(), level)])),
                schedule: Schedule::OneShot,
                include_bias: false,
                seed: 0,
            };
            let pruned = WeightPruner::new(pruning, device.clone()).prune_to(net.clone(), &|t| t);
            let result = evaluate(&pruned)?;
            let point = SensitivityPoint {
                layer: layer.name.clone(),
                sparsity: level,
                accuracy: result.accuracy,
                loss: result.loss,
            };
            on_point(&point);
            points.push(point);
        }
    }
    Ok(points)
}
