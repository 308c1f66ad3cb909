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

/// A layer that reads a group's units: the slice of its weight that does, and its bias, which
/// can absorb what a removed unit still sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Consumer {
    pub layer: String,
    pub kind: LayerKind,
    pub slice: TensorSlice,
    pub bias: Option<String>,
}

/// Units (neurons, filters or channels) with every tensor slice that must go when a unit goes,
/// derived from the network's graph. Most groups are one layer's outputs read by the next
/// layer. A coupled group has several producers and several consumers: a residual stage's
/// channels are written by the stem or projection and by every block's last conv and BN (added
/// together), and read by every block's first conv, the next stage's entry and the classifier;
/// removing channel k removes it from all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitGroup {
    /// The producing layer's name, or for a coupled group its own (a residual stage: `layer2`).
    pub layer: String,
    pub units: usize,
    /// Slices of every producing layer (weight, bias) and of per-channel normalization.
    pub producer: Vec<TensorSlice>,
    /// What each unit's output goes through before the consumers see it, when `folds`.
    pub between: Vec<UnitOp>,
    /// Whether a removed unit's constant output can move into the consumers' biases: one
    /// producer, reaching every consumer through the same `between`. A coupled group's units
    /// are sums, which have no single constant.
    pub folds: bool,
    pub consumers: Vec<Consumer>,
}

impl UnitGroup {
    pub fn slices(&self) -> impl Iterator<Item = &TensorSlice> {
        self.producer.iter().chain(self.consumers.iter().map(|c| &c.slice))
    }

    /// The producing layers' weight slices: what weight criteria score, summed over the
    /// producers of a coupled group as Torch-Pruning's group importance does.
    pub fn producer_weights(&self) -> impl Iterator<Item = &TensorSlice> {
        self.producer.iter().filter(|s| s.path.ends_with(".weight"))
    }

    /// Several producers are summed, so a removed unit's constant has no single path to fold.
    pub fn is_coupled(&self) -> bool {
        self.producer_weights().count() > 1
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
    /// `tap(g, activation)` and going on with what it returns; a coupled group's units are
    /// handed over at every point its consumers read them (a residual stage's after each block). Data-driven criteria read
    /// activations here, or detach them to get their gradients.
    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2>;
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
