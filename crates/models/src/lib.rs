//! The networks coppice trains and prunes, and the description of their prunable structure.
//!
//! Nothing here knows about masks, schedules or files: a model only says which of its tensors
//! are prunable, which slices are coupled, and how large it is.

mod lenet5;
mod mlp;
mod network;
mod params;
mod resnet;
mod size;
mod structure;
mod vgg;

pub use lenet5::{LeNet5, LeNet5Config};
pub use mlp::{Mlp, MlpConfig};
pub use network::{Architecture, Classifier, InputShape, Network};
pub use params::{ParamEditor, ParamTensor, count_nonzero, edit_param, edit_params, float_params};
pub use resnet::{BasicBlock, Downsample, ResNet, ResNetConfig};
pub use size::Size;
pub use structure::{
    Activation, Consumer, LayerCost, LayerKind, Prunable, PrunableLayer, TensorSlice, UnitGroup, UnitOp,
};
pub use vgg::{Vgg, VggConfig};
