//! What makes a weight or a unit important: every criterion, with the paper it comes from.
//! The lowest scores are pruned first.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use coppice_data::{ImageBatch, SplitMix64};
use coppice_models::{Activation, Network, Prunable, UnitGroup, float_params};
use serde::{Deserialize, Serialize};

use crate::mask::host_values;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Weights: |w| (Han et al. 2015, "Learning both Weights and Connections").
    Magnitude,
    /// Weights or units: uniform noise, the baseline every criterion should beat (Blalock et
    /// al. 2020, "What is the State of Neural Network Pruning?").
    Random,
    /// Units: L1 norm of the unit's incoming weights (Li et al. 2017, "Pruning Filters for
    /// Efficient ConvNets").
    L1,
    /// Units: L2 norm of the unit's incoming weights (He et al. 2018, "Soft Filter Pruning").
    L2,
    /// Units: mean activation over calibration batches (Polyak & Wolf 2015, "Channel-Level
    /// Acceleration of Deep Face Representations").
    Activation,
    /// Units: 1 - APoZ, the average percentage of zero activations (Hu et al. 2016, "Network
    /// Trimming").
    Apoz,
    /// Units: |mean over batches of activation x gradient| (Molchanov et al. 2017, "Pruning
    /// Convolutional Neural Networks for Resource Efficient Inference").
    Taylor,
}

impl Criterion {
    /// Whether it scores single weights (weight pruning) rather than units.
    pub fn scores_weights(self) -> bool {
        matches!(self, Criterion::Magnitude | Criterion::Random)
    }

    /// Whether it scores units (neuron and filter pruning).
    pub fn scores_units(self) -> bool {
        self != Criterion::Magnitude
    }

    /// Whether it measures units on calibration batches.
    pub fn needs_data(self) -> bool {
        matches!(self, Criterion::Activation | Criterion::Apoz | Criterion::Taylor)
    }

    /// Scores for `values`; weights already pruned (`keep[i] == false`) score lowest, so that
    /// pruning is cumulative and a pruned weight never comes back. Criteria that score units
    /// score weights by magnitude.
    pub fn weight_scores(self, values: &[f32], keep: &[bool], rng: &mut SplitMix64) -> Vec<f32> {
        values
            .iter()
            .zip(keep)
            .map(|(&value, &kept)| match (kept, self) {
                (false, _) => f32::NEG_INFINITY,
                (true, Criterion::Random) => rng.next_f64() as f32,
                (true, _) => value.abs(),
            })
            .collect()
    }

    /// Per unit group of `net`, one score per current unit. Data-driven criteria measure on
    /// `calibration`.
    pub fn unit_scores(
        self,
        net: &Network,
        calibration: &[ImageBatch],
        device: &Device,
        rng: &mut SplitMix64,
    ) -> Vec<Vec<f64>> {
        let groups = net.unit_groups();
        match self {
            Criterion::L1 | Criterion::L2 | Criterion::Magnitude => weight_norms(net, &groups, self != Criterion::L2),
            Criterion::Random => groups.iter().map(|g| (0..g.units).map(|_| rng.next_f64()).collect()).collect(),
            Criterion::Activation | Criterion::Apoz => activation_statistics(net, &groups, calibration, self),
            Criterion::Taylor => taylor(net, &groups, calibration, device),
        }
    }
}

fn weight_norms(net: &Network, groups: &[UnitGroup], l1: bool) -> Vec<Vec<f64>> {
    let params = float_params(net);
    groups
        .iter()
        .map(|g| {
            let mut sums = vec![0.0f64; g.units];
            for slice in g.producer_weights() {
                let Some(p) = params.iter().find(|p| p.path == slice.path) else { continue };
                let values = host_values(p.values.clone());
                let stride: usize = p.shape[slice.dim + 1..].iter().product();
                let mut norms = vec![0.0f64; g.units];
                for (index, v) in values.iter().enumerate() {
                    let unit = (index / stride) % p.shape[slice.dim] / slice.block;
                    norms[unit] += if l1 { v.abs() as f64 } else { (*v as f64).powi(2) };
                }
                // A coupled group's score is the sum of its producers' norms.
                for (sum, norm) in sums.iter_mut().zip(norms) {
                    *sum += if l1 { norm } else { norm.sqrt() };
                }
            }
            sums
        })
        .collect()
}

/// Per-unit means of a statistic of an activation: over the batch, and the pixels of a map.
fn per_unit_mean(activation: &Activation) -> Vec<f64> {
    let per_unit: Tensor<1> = match activation {
        Activation::Dense(x) => x.clone().mean_dim(0).flatten(0, 1),
        Activation::Spatial(x) => x.clone().mean_dim(0).mean_dim(2).mean_dim(3).flatten(0, 3),
    };
    host_values(per_unit).into_iter().map(f64::from).collect()
}

fn map_activation(activation: &Activation, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Activation {
    match activation {
        Activation::Dense(x) => {
            let [b, n] = x.dims();
            let y = f(x.clone().reshape([b, n, 1, 1]));
            Activation::Dense(y.reshape([b, n]))
        }
        Activation::Spatial(x) => Activation::Spatial(f(x.clone())),
    }
}

fn activation_statistics(
    net: &Network,
    groups: &[UnitGroup],
    batches: &[ImageBatch],
    criterion: Criterion,
) -> Vec<Vec<f64>> {
    let mut sums: Vec<Vec<f64>> = groups.iter().map(|g| vec![0.0; g.units]).collect();
    for batch in batches {
        net.forward_tapped(batch.images.clone(), &mut |g, a| {
            let stat = match criterion {
                Criterion::Apoz => map_activation(&a, |x| x.equal_elem(0.0).float()),
                _ => a.clone(),
            };
            for (sum, v) in sums[g].iter_mut().zip(per_unit_mean(&stat)) {
                *sum += v;
            }
            a
        });
    }
    let n = batches.len().max(1) as f64;
    sums.into_iter()
        .map(|s| s.into_iter().map(|v| if criterion == Criterion::Apoz { 1.0 - v / n } else { v / n }).collect())
        .collect()
}

/// First-order Taylor. Each activation gets a zero "probe" leaf added to it: the gradient with
/// respect to the probe is the gradient with respect to the activation, and the graph upstream
/// stays whole, so one backward pass serves every group.
fn taylor(net: &Network, groups: &[UnitGroup], batches: &[ImageBatch], device: &Device) -> Vec<Vec<f64>> {
    let tracked_device = device.clone().autodiff();
    let tracked = net.clone().fork(&tracked_device).train();
    let loss_fn = CrossEntropyLossConfig::new().init(&tracked_device);
    let mut sums: Vec<Vec<f64>> = groups.iter().map(|g| vec![0.0; g.units]).collect();
    for batch in batches {
        let mut probes: Vec<(usize, Activation, Activation)> = Vec::new();
        let images = batch.images.clone().autodiff();
        let logits = tracked.forward_tapped(images, &mut |g, a| {
            let (probe, probed) = match &a {
                Activation::Dense(x) => {
                    let probe = Tensor::zeros(x.dims(), &tracked_device).require_grad();
                    (Activation::Dense(probe.clone()), Activation::Dense(x.clone() + probe))
                }
                Activation::Spatial(x) => {
                    let probe = Tensor::zeros(x.dims(), &tracked_device).require_grad();
                    (Activation::Spatial(probe.clone()), Activation::Spatial(x.clone() + probe))
                }
            };
            probes.push((g, a, probe));
            probed
        });
        let loss = loss_fn.forward(logits, batch.targets.clone().autodiff());
        let grads = loss.backward();
        // A coupled group is tapped once per point its consumers read it: the sum over them.
        for (g, activation, probe) in probes {
            let product = match (activation, probe) {
                (Activation::Dense(x), Activation::Dense(p)) => {
                    p.grad(&grads).map(|grad| Activation::Dense(x.inner() * grad))
                }
                (Activation::Spatial(x), Activation::Spatial(p)) => {
                    p.grad(&grads).map(|grad| Activation::Spatial(x.inner() * grad))
                }
                _ => None,
            };
            if let Some(product) = product {
                for (sum, v) in sums[g].iter_mut().zip(per_unit_mean(&product)) {
                    *sum += v;
                }
            }
        }
    }
    let n = batches.len().max(1) as f64;
    sums.into_iter().map(|s| s.into_iter().map(|v| (v / n).abs()).collect()).collect()
}
