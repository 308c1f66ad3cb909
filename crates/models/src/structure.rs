use burn::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Linear,
    Conv2d,
}

/// A layer whose weight tensor may be pruned, as a pruning strategy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunableLayer {
    /// The name users write in configs (`fc1`, `conv2`), numbered from 1 in forward order.
    pub name: String,
    pub kind: LayerKind,
    /// Parameter path as the module visitor reports it (`fc.0.weight`).
    pub weight_path: String,
    pub bias_path: Option<String>,
    /// Linear: `[d_input, d_output]` (burn's row layout); Conv2d: `[out, in, kh, kw]`.
    pub weight_shape: Vec<usize>,
    pub bias_len: usize,
    /// How many times each weight is used per sample: output pixels for a conv, 1 for a linear.
    pub uses_per_weight: usize,
}

impl PrunableLayer {
    pub fn weight_count(&self) -> usize {
        self.weight_shape.iter().product()
    }

    pub fn cost(&self) -> LayerCost {
        let weights = self.weight_count();
        LayerCost {
            name: self.name.clone(),
            weights,
            params: weights + self.bias_len,
            flops: weights * self.uses_per_weight,
        }
    }
}

/// Size of one layer. FLOPs count one multiply-add as one operation, as ShrinkBench does, so
/// that theoretical speedup is the ratio of dense to effective FLOPs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerCost {
    pub name: String,
    pub weights: usize,
    pub params: usize,
    pub flops: usize,
}

/// Unit `k` of a group owns indices `k * block .. (k + 1) * block` of `dim` in tensor `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlice {
    pub path: String,
    pub dim: usize,
    pub block: usize,
}

/// A per-unit operation between a producer and its consumer, in forward order. Pooling is not
/// listed: pooling a constant map gives the same constant.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitOp {
    Relu,
    /// BatchNorm in inference mode; `module` is the path prefix of its tensors
    /// (`<module>.gamma`, `.beta`, `.running_mean`, `.running_var`).
    BatchNorm {
        module: String,
        epsilon: f64,
    },
}

/// The units (neurons or filters) of one layer with every tensor slice that must go when a
/// unit goes: the producer's outputs, any per-channel normalization, and the consumer's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitGroup {
    pub layer: String,
    pub units: usize,
    /// Slices of the producing layer (weight, bias) and anything between it and the consumer.
    pub producer: Vec<TensorSlice>,
    /// What each unit's output goes through before the consumer sees it.
    pub between: Vec<UnitOp>,
    /// The next layer's input slice; its bias absorbs what a removed unit still sent.
    pub consumer: TensorSlice,
    pub consumer_layer: String,
    pub consumer_kind: LayerKind,
    pub consumer_bias: Option<String>,
}

impl UnitGroup {
    pub fn slices(&self) -> impl Iterator<Item = &TensorSlice> {
        self.producer.iter().chain(std::iter::once(&self.consumer))
    }
}

/// The output of one unit group as its consumer sees it (after activation and pooling).
#[derive(Clone, Debug)]
pub enum Activation {
    /// `[batch, units]`.
    Dense(Tensor<2>),
    /// `[batch, units, height, width]`.
    Spatial(Tensor<4>),
}

/// What a model tells pruning strategies about itself; strategies never name a concrete model.
pub trait Prunable {
    /// Prunable layers in forward order.
    fn prunable_layers(&self) -> Vec<PrunableLayer>;
    /// Groups of coupled slices, one per layer whose units can be removed.
    fn unit_groups(&self) -> Vec<UnitGroup>;

    fn layer_costs(&self) -> Vec<LayerCost> {
        self.prunable_layers().iter().map(PrunableLayer::cost).collect()
    }

    /// The forward pass, handing the output of unit group `g` (in `unit_groups` order) to
    /// `tap(g, activation)` and going on with what it returns. Data-driven criteria read
    /// activations here, or detach them to get their gradients.
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2>;
}

pub(crate) fn linear_layer(name: String, module_path: &str, weight_shape: [usize; 2]) -> PrunableLayer {
    PrunableLayer {
        name,
        kind: LayerKind::Linear,
        weight_path: format!("{module_path}.weight"),
        bias_path: Some(format!("{module_path}.bias")),
        weight_shape: weight_shape.to_vec(),
        bias_len: weight_shape[1],
        uses_per_weight: 1,
    }
}

pub(crate) fn conv_layer(
    name: String,
    module_path: &str,
    weight_shape: [usize; 4],
    output_pixels: usize,
) -> PrunableLayer {
    PrunableLayer {
        name,
        kind: LayerKind::Conv2d,
        weight_path: format!("{module_path}.weight"),
        bias_path: Some(format!("{module_path}.bias")),
        weight_shape: weight_shape.to_vec(),
        bias_len: weight_shape[0],
        uses_per_weight: output_pixels,
    }
}

/// The units of `producer` are its outputs: a Linear's columns, a Conv2d's filters.
pub(crate) fn unit_group(
    producer: &PrunableLayer,
    between: Vec<UnitOp>,
    consumer: &PrunableLayer,
    consumer_block: usize,
) -> UnitGroup {
    let out_dim = match producer.kind {
        LayerKind::Linear => 1,
        LayerKind::Conv2d => 0,
    };
    let in_dim = match consumer.kind {
        LayerKind::Linear => 0,
        LayerKind::Conv2d => 1,
    };
    let mut slices = vec![TensorSlice { path: producer.weight_path.clone(), dim: out_dim, block: 1 }];
    if let Some(bias) = &producer.bias_path {
        slices.push(TensorSlice { path: bias.clone(), dim: 0, block: 1 });
    }
    for op in &between {
        if let UnitOp::BatchNorm { module, .. } = op {
            for tensor in ["gamma", "beta", "running_mean", "running_var"] {
                slices.push(TensorSlice { path: format!("{module}.{tensor}"), dim: 0, block: 1 });
            }
        }
    }
    UnitGroup {
        layer: producer.name.clone(),
        units: producer.weight_shape[out_dim],
        producer: slices,
        between,
        consumer: TensorSlice { path: consumer.weight_path.clone(), dim: in_dim, block: consumer_block },
        consumer_layer: consumer.name.clone(),
        consumer_kind: consumer.kind,
        consumer_bias: consumer.bias_path.clone(),
    }
}

/// The tensor of a dense activation; a tap that changes the kind of activation breaks the model.
pub(crate) fn dense(activation: Activation) -> Tensor<2> {
    match activation {
        Activation::Dense(x) => x,
        Activation::Spatial(x) => x.flatten(1, 3),
    }
}

pub(crate) fn spatial(activation: Activation) -> Tensor<4> {
    match activation {
        Activation::Spatial(x) => x,
        Activation::Dense(x) => {
            let [batch, units] = x.dims();
            x.reshape([batch, units, 1, 1])
        }
    }
}
