//! Physical removal of units: one generic function over the unit groups models describe.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Param;
use burn::prelude::*;
use coppice_models::{LayerKind, Network, ParamEditor, UnitGroup, UnitOp, edit_params, float_params};

use crate::PruneError;
use crate::mask::host_values;

/// The units of `group` to keep (`keep[k]`), in unit order.
#[derive(Clone, Debug)]
pub struct UnitCut {
    pub group: UnitGroup,
    pub keep: Vec<bool>,
}

/// A tensor on the host while surgery edits it.
struct HostTensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Removes the units each cut drops, with every coupled slice, and folds what a removed unit
/// still sent (its bias through the ops between the layers; its weights count as zero) into the
/// consumers' biases where the group folds (a coupled group's units are sums of several
/// producers: nothing is folded). The network that comes out computes what the network with
/// those units' incoming weights zeroed computed, exactly for linear consumers and valid
/// convolutions, and away from the borders for padded ones. Changed tensors get fresh parameter ids, so training
/// goes on with a fresh optimizer.
pub fn cut_units(net: Network, cuts: &[UnitCut]) -> Result<Network, PruneError> {
    // Mapping rewrites BatchNorm running statistics in place, in every clone of `net`.
    let net = net.deep_clone();
    let mut tensors: BTreeMap<String, HostTensor> = float_params(&net)
        .into_iter()
        .map(|p| (p.path, HostTensor { shape: p.shape, values: host_values(p.values) }))
        .collect();
    let mut changed = BTreeSet::new();
    for cut in cuts {
        let group = &cut.group;
        if cut.keep.len() != group.units {
            return Err(PruneError::Invalid(format!(
                "{}: {} keep flags for {} units",
                group.layer,
                cut.keep.len(),
                group.units
            )));
        }
        if !cut.keep.iter().any(|k| *k) {
            return Err(PruneError::Invalid(format!("{}: cannot remove every unit of a layer", group.layer)));
        }
        if cut.keep.iter().all(|k| *k) {
            continue;
        }
        fold_removed(&mut tensors, group, &cut.keep, &mut changed)?;
        for slice in group.slices() {
            let tensor = tensors
                .get_mut(&slice.path)
                .ok_or_else(|| PruneError::Invalid(format!("{}: no tensor {}", group.layer, slice.path)))?;
            let kept: Vec<usize> = (0..tensor.shape[slice.dim]).filter(|i| cut.keep[i / slice.block]).collect();
            *tensor = select(tensor, slice.dim, &kept);
            changed.insert(slice.path.clone());
        }
    }
    let mut replace = Replace { tensors, changed };
    Ok(edit_params(net, &mut replace))
}

/// Adds to the consumer's bias what each removed unit sent it: the constant the unit outputs
/// with zero incoming weights, times the consumer weights that read it.
fn fold_removed(
    tensors: &mut BTreeMap<String, HostTensor>,
    group: &UnitGroup,
    keep: &[bool],
    changed: &mut BTreeSet<String>,
) -> Result<(), PruneError> {
    if !group.folds {
        return Ok(());
    }
    let value = |path: &str, k: usize| tensors.get(path).map(|t| t.values[k]);
    let producer_bias = group.producer.iter().find(|s| s.path.ends_with(".bias"));
    let mut constants = vec![0.0f32; group.units];
    for (k, constant) in constants.iter_mut().enumerate().filter(|(k, _)| !keep[*k]) {
        let mut c = producer_bias.and_then(|b| value(&b.path, k)).unwrap_or(0.0);
        for op in &group.between {
            c = match op {
                UnitOp::Relu => c.max(0.0),
                UnitOp::BatchNorm { module, epsilon } => {
                    let get = |name: &str| value(&format!("{module}.{name}"), k).unwrap_or(0.0);
                    let (gamma, beta, mean, var) = (get("gamma"), get("beta"), get("running_mean"), get("running_var"));
                    gamma * (c - mean) / (var + *epsilon as f32).sqrt() + beta
                }
            };
        }
        *constant = c;
    }
    if constants.iter().all(|c| *c == 0.0) {
        return Ok(());
    }
    for consumer in &group.consumers {
        // A consumer without a bias (a ResNet's conv before its BatchNorm) has nowhere to take
        // the constant: it is dropped, as Torch-Pruning drops it, and retraining makes up for it.
        let Some(bias_path) = &consumer.bias else { continue };
        let weight = tensors
            .get(&consumer.slice.path)
            .ok_or_else(|| PruneError::Invalid(format!("{}: no tensor {}", group.layer, consumer.slice.path)))?;
        // Linear weights are [in, out]; conv weights [out, in, kh, kw].
        let out_dim = match consumer.kind {
            LayerKind::Linear => 1,
            LayerKind::Conv2d => 0,
        };
        let (shape, in_dim, block) = (&weight.shape, consumer.slice.dim, consumer.slice.block);
        let mut delta = vec![0.0f32; shape[out_dim]];
        let strides: Vec<usize> = (0..shape.len()).map(|d| shape[d + 1..].iter().product()).collect();
        for (index, w) in weight.values.iter().enumerate() {
            let unit = (index / strides[in_dim]) % shape[in_dim] / block;
            if constants[unit] != 0.0 {
                delta[(index / strides[out_dim]) % shape[out_dim]] += constants[unit] * w;
            }
        }
        let bias = tensors
            .get_mut(bias_path)
            .ok_or_else(|| PruneError::Invalid(format!("{}: no tensor {bias_path}", consumer.layer)))?;
        bias.values.iter_mut().zip(delta).for_each(|(b, d)| *b += d);
        changed.insert(bias_path.clone());
    }
    Ok(())
}

/// The entries at positions `kept` along `dim`.
fn select(tensor: &HostTensor, dim: usize, kept: &[usize]) -> HostTensor {
    let outer: usize = tensor.shape[..dim].iter().product();
    let inner: usize = tensor.shape[dim + 1..].iter().product();
    let len = tensor.shape[dim];
    let mut values = Vec::with_capacity(outer * kept.len() * inner);
    for o in 0..outer {
        for &j in kept {
            let start = (o * len + j) * inner;
            values.extend_from_slice(&tensor.values[start..start + inner]);
        }
    }
    let mut shape = tensor.shape.clone();
    shape[dim] = kept.len();
    HostTensor { shape, values }
}

struct Replace {
    tensors: BTreeMap<String, HostTensor>,
    changed: BTreeSet<String>,
}

impl ParamEditor for Replace {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.changed.contains(path) {
            return param;
        }
        let Some(tensor) = self.tensors.remove(path) else { return param };
        let device = param.val().device();
        let shape: [usize; D] = tensor.shape.clone().try_into().expect("surgery keeps the rank");
        let value = Tensor::from_data(TensorData::new(tensor.values, shape), &device.inner());
        Param::from_tensor(value)
    }
}
