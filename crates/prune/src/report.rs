use burn::module::Module;
use coppice_models::{Network, Prunable, count_nonzero, float_params};
use serde::{Deserialize, Serialize};

use crate::mask::host_values;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    pub name: String,
    pub weights: usize,
    pub zeros: usize,
    pub sparsity: f64,
}

/// Sparsity as ShrinkBench defines it: over prunable weights, and compression over all
/// parameters (total / non-zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    pub layers: Vec<LayerSparsity>,
    /// The fraction of prunable weights that are zero.
    pub sparsity: f64,
    pub params_total: usize,
    pub params_nonzero: usize,
    pub compression_ratio: f64,
    pub flops_dense: usize,
    /// FLOPs counting only non-zero weights.
    pub flops_effective: usize,
}

pub fn sparsity_report(net: &Network) -> SparsityReport {
    let params = float_params(net);
    let mut layers = Vec::new();
    let mut flops_effective = 0;
    let costs = net.layer_costs();
    for layer in net.prunable_layers() {
        let values = params.iter().find(|p| p.path == layer.weight_path).map(|p| host_values(p.values.clone()));
        let zeros = values.map_or(0, |v| v.iter().filter(|x| **x == 0.0).count());
        let weights = layer.weight_count();
        flops_effective += (weights - zeros) * layer.uses_per_weight;
        layers.push(LayerSparsity {
            name: layer.name.clone(),
            weights,
            zeros,
            sparsity: zeros as f64 / weights.max(1) as f64,
        });
    }
    let (zeros, weights) = layers.iter().fold((0, 0), |(z, w), l| (z + l.zeros, w + l.weights));
    let params_total = net.num_params();
    let params_nonzero = count_nonzero(net);
    SparsityReport {
        layers,
        sparsity: zeros as f64 / weights.max(1) as f64,
        params_total,
        params_nonzero,
        compression_ratio: params_total as f64 / params_nonzero.max(1) as f64,
        flops_dense: costs.iter().map(|c| c.flops).sum(),
        flops_effective,
    }
}
