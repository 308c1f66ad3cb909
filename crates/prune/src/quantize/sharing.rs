//! The quantized layers during retraining: a training callback that moves each shared value
//! by its members' updates and puts every member back on it.
//!
//! After an optimizer step every kept weight `w_i` of cluster `c` has moved from the shared
//! value `c` to `w_i'`. The callback sets `c <- c + sum_i (w_i' - c)` and every `w_i <- c`. With
//! plain SGD, `w_i' - c = -lr g_i`, so this is `c <- c - lr sum_i g_i`: the paper's rule, the
//! gradient of a shared value being the sum of its weights' gradients. With momentum each
//! member's velocity accumulates its own gradients, and velocities add up, so the sum of the
//! members' steps is exactly what momentum SGD on the summed gradient would take: the rule
//! holds step for step. Weight decay enters each member's gradient as `decay * c`, so a shared
//! value decays by `decay * c` times its cluster's size (the paper's Caffe did the same). With
//! Adam each member's step is normalized by its own second moment, so the sum is a heuristic
//! there, not the gradient rule.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::f16;
use coppice_models::{LayerKind, Network, ParamEditor, Prunable, edit_param, edit_params, float_params};
use coppice_train::Callback;

use super::codebook::{kmeans_codebook, nearest};
use super::{QuantizeConfig, QuantizeMethod, Quantized};
use crate::mask::host_values;

/// One layer's weights as codes.
pub struct LayerCodebook {
    /// The name configs use (`fc1`).
    pub name: String,
    pub path: String,
    pub bits: u32,
    coding: Coding,
}

enum Coding {
    /// Weight sharing: each kept weight's cluster (`PRUNED` for a pruned one) and the shared
    /// values.
    Shared { cluster: Vec<u32>, values: Vec<f32> },
    /// Symmetric integers per output channel. Updates smaller than a step would round away, so
    /// the weights train in float (`latent`) and the network holds them rounded (a
    /// straight-through estimate).
    Linear { channel: Vec<u32>, scales: Vec<f32>, levels: f32, latent: Vec<f32> },
}

const PRUNED: u32 = u32::MAX;

/// The training callback of the quantization stage; the network it gets must hold the values
/// [`WeightSharing::quantize`] returned it with, updated by one optimizer step.
pub struct WeightSharing {
    pub layers: Vec<LayerCodebook>,
    method: QuantizeMethod,
}

impl WeightSharing {
    /// Quantizes every prunable layer's weights (a weight that is 0 stays 0, as pruned) and
    /// returns the network holding the codes' values.
    pub fn quantize(net: Network, config: &QuantizeConfig) -> (Network, WeightSharing) {
        let params = float_params(&net);
        let mut layers = Vec::new();
        for layer in net.prunable_layers() {
            let Some(param) = params.iter().find(|p| p.path == layer.weight_path) else { continue };
            let weights = host_values(param.values.clone());
            let bits = config.bits(layer.kind);
            let coding = match config.method {
                QuantizeMethod::Kmeans => {
                    let kept: Vec<f32> = weights.iter().copied().filter(|w| *w != 0.0).collect();
                    let values = kmeans_codebook(&kept, bits);
                    let cluster =
                        weights.iter().map(|w| if *w == 0.0 { PRUNED } else { nearest(&values, *w) as u32 }).collect();
                    Coding::Shared { cluster, values }
                }
                QuantizeMethod::Linear => {
                    let shape = &layer.weight_shape;
                    let channel: Vec<u32> = (0..weights.len())
                        .map(|i| match layer.kind {
                            // burn keeps a linear layer's weight as [inputs, outputs].
                            LayerKind::Linear => (i % shape[1]) as u32,
                            LayerKind::Conv2d => (i / (weights.len() / shape[0]).max(1)) as u32,
                        })
                        .collect();
                    let units = match layer.kind {
                        LayerKind::Linear => shape[1],
                        LayerKind::Conv2d => shape[0],
                    };
                    let mut largest = vec![0.0f32; units];
                    for (w, c) in weights.iter().zip(&channel) {
                        largest[*c as usize] = largest[*c as usize].max(w.abs());
                    }
                    let levels = ((1u32 << (bits - 1)) - 1) as f32;
                    let scales = largest.iter().map(|m| if *m > 0.0 { m / levels } else { 1.0 }).collect();
                    Coding::Linear { channel, scales, levels, latent: weights.clone() }
                }
            };
            layers.push(LayerCodebook { name: layer.name.clone(), path: layer.weight_path.clone(), bits, coding });
        }
        let mut sharing = WeightSharing { layers, method: config.method };
        let net = sharing.snap(net, false);
        (net, sharing)
    }

    pub fn record(&self) -> Quantized {
        Quantized { method: self.method, bits: self.layers.iter().map(|l| (l.name.clone(), l.bits)).collect() }
    }

    /// Puts every weight on its code's value; with `update`, first moves the values by the step
    /// the optimizer just took (see the module's documentation).
    fn snap(&mut self, net: Network, update: bool) -> Network {
        let params = float_params(&net);
        let mut edited = BTreeMap::new();
        for layer in &mut self.layers {
            let Some(param) = params.iter().find(|p| p.path == layer.path) else { continue };
            let weights = host_values(param.values.clone());
            let snapped: Vec<f32> = match &mut layer.coding {
                Coding::Shared { cluster, values } => {
                    if update {
                        let mut moved = vec![0.0f64; values.len()];
                        for (w, c) in weights.iter().zip(cluster.iter()).filter(|(_, c)| **c != PRUNED) {
                            moved[*c as usize] += (*w - values[*c as usize]) as f64;
                        }
                        values.iter_mut().zip(&moved).for_each(|(v, m)| *v = (*v as f64 + m) as f32);
                    }
                    cluster.iter().map(|c| if *c == PRUNED { 0.0 } else { values[*c as usize] }).collect()
                }
                Coding::Linear { channel, scales, levels, latent } => {
                    let round = |v: f32, scale: f32| (v / scale).round().clamp(-*levels, *levels) * scale;
                    let mut out = Vec::with_capacity(weights.len());
                    for ((w, c), l) in weights.iter().zip(channel.iter()).zip(latent.iter_mut()) {
                        let scale = scales[*c as usize];
                        if *l == 0.0 {
                            out.push(0.0);
                            continue;
                        }
                        if update {
                            // The step the optimizer took from the rounded value it was given.
                            *l += *w - round(*l, scale);
                        }
                        // A kept weight that rounds to 0 would read as pruned; it keeps a step.
                        let q = round(*l, scale);
                        out.push(if q == 0.0 { scale.copysign(*l) } else { q });
                    }
                    out
                }
            };
            edited.insert(layer.path.clone(), snapped);
        }
        edit_params(net, &mut Replace { values: &edited })
    }
}

impl Callback for WeightSharing {
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        self.snap(net, true)
    }
}

/// The network with every prunable layer's weights and bias rounded to half precision, as the
/// quantization stage leaves them: the compressed file then stores codebooks and biases in 2
/// bytes a value, and the accuracy the run reports is that file's. Weights that share a value
/// still share one after rounding. A kept weight that would round to zero keeps the smallest
/// half of its sign, so that it does not read as pruned.
pub fn to_half_precision(net: Network) -> Network {
    let half = |v: f32| match f16::from_f32(v).to_f32() {
        0.0 if v != 0.0 => f16::from_bits(1).to_f32().copysign(v),
        rounded => rounded,
    };
    let params = float_params(&net);
    let mut edited = BTreeMap::new();
    for layer in net.prunable_layers() {
        for path in std::iter::once(&layer.weight_path).chain(&layer.bias_path) {
            if let Some(param) = params.iter().find(|p| &p.path == path) {
                edited.insert(path.clone(), host_values(param.values.clone()).into_iter().map(half).collect());
            }
        }
    }
    edit_params(net, &mut Replace { values: &edited })
}

/// Puts new values into the parameters at the given paths.
struct Replace<'a> {
    values: &'a BTreeMap<String, Vec<f32>>,
}

impl ParamEditor for Replace<'_> {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.get(path) {
            Some(values) => edit_param(param, |value| {
                let (dims, device) = (value.dims(), value.device());
                Tensor::from_data(TensorData::new(values.clone(), dims), &device)
            }),
            None => param,
        }
    }
}
