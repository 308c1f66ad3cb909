use std::collections::BTreeMap;

use burn::module::Param;
use burn::prelude::*;
use coppice_models::{Network, ParamEditor, edit_param, edit_params, float_params};
use coppice_train::{Callback, UpdateMasks};

/// Binary masks of pruned tensors, by parameter path. They keep pruned weights exactly zero
/// through training whatever the optimizer's momentum or moments would do: the optimizer folds
/// them into its update, and [`MaskSet::hold`] applies any it could not after the step.
#[derive(Clone, Debug, Default)]
pub struct MaskSet {
    masks: BTreeMap<String, Mask>,
    /// The same factors, for the optimizer; clones of the set share it.
    update: UpdateMasks,
}

#[derive(Clone, Debug)]
struct Mask {
    keep: Vec<bool>,
    /// The same as `keep`, as 0/1 on the device, ready to multiply.
    factors: Tensor<1>,
}

impl MaskSet {
    pub fn set(&mut self, path: &str, keep: Vec<bool>, device: &Device) {
        let factors: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let factors = Tensor::from_data(TensorData::new(factors, [keep.len()]), device);
        self.update.set(path, factors.clone());
        self.masks.insert(path.to_string(), Mask { keep, factors });
    }

    /// The survivors of `path`; everything survives in a tensor that has no mask yet.
    pub fn keep(&self, path: &str, len: usize) -> Vec<bool> {
        self.masks.get(path).map_or_else(|| vec![true; len], |m| m.keep.clone())
    }

    /// Masks that hold the zeros `net` already has in the tensors at `paths`: how a saved
    /// pruned network keeps its sparsity when it trains again.
    pub fn from_zeros(net: &Network, paths: &[String], device: &Device) -> MaskSet {
        let params = float_params(net);
        let mut masks = MaskSet::default();
        for param in params.into_iter().filter(|p| paths.contains(&p.path)) {
            let keep: Vec<bool> = host_values(param.values).iter().map(|v| *v != 0.0).collect();
            if keep.contains(&false) {
                masks.set(&param.path, keep, device);
            }
        }
        masks
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// Zeroes the pruned entries; parameter ids stay, so optimizer state stays attached.
    pub fn apply(&self, net: Network) -> Network {
        if self.masks.is_empty() {
            return net;
        }
        edit_params(net, &mut Apply { masks: &self.masks, paths: None })
    }

    /// After an optimizer step: applies the masks the optimizer did not fold into its update,
    /// which is none of them when it was built with [`MaskSet::update_masks`].
    pub fn hold(&self, net: Network) -> Network {
        let unfolded = self.update.take_unfolded();
        if unfolded.is_empty() {
            return net;
        }
        edit_params(net, &mut Apply { masks: &self.masks, paths: Some(&unfolded) })
    }

    pub fn update_masks(&self) -> UpdateMasks {
        self.update.clone()
    }
}

/// Masks that only hold the zeros a network has.
impl Callback for MaskSet {
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        self.hold(net)
    }

    fn update_masks(&self) -> Option<UpdateMasks> {
        Some(self.update.clone())
    }
}

struct Apply<'a> {
    masks: &'a BTreeMap<String, Mask>,
    /// Only these; all when `None`.
    paths: Option<&'a [String]>,
}

impl ParamEditor for Apply<'_> {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.paths.is_some_and(|paths| !paths.iter().any(|p| p == path)) {
            return param;
        }
        match self.masks.get(path) {
            Some(mask) => edit_param(param, |value| {
                let shape = value.shape();
                value * mask.factors.clone().reshape(shape)
            }),
            None => param,
        }
    }
}

/// The values of the tensor at `path`, flattened, on the host.
pub fn values_of(net: &Network, path: &str) -> Option<Vec<f32>> {
    float_params(net).into_iter().find(|p| p.path == path).map(|p| host_values(p.values))
}

pub(crate) fn host_values(tensor: Tensor<1>) -> Vec<f32> {
    tensor.into_data().try_into_vec_as::<f32>().expect("float parameters convert to f32")
}
