//! The networks coppice trains and prunes: graphs of layers (the presets are graphs too), the
//! burn module that runs them, and the description of their prunable structure derived from
//! the graph.
//!
//! Nothing here knows about masks, schedules or files: a model only says which of its tensors
//! are prunable, which slices are coupled, and how large it is.

mod config;
pub mod graph;
mod layers;
mod network;
mod params;
pub mod presets;
mod size;
mod structure;

pub use config::{ModelConfig, Preset};
pub use graph::{Architecture, Graph, GraphError, IMAGE, InputShape, Node, Op, Shape, Source};
pub use layers::{BlockSpec, FieldError, Inputs, LayerSpec, Sides, Size as LayerSize};
pub use network::{Classifier, Layer, Network};
pub use params::{ParamEditor, ParamTensor, count_nonzero, edit_param, edit_params, float_params};
pub use size::Size;
pub use structure::{
    Activation, Consumer, LayerCost, LayerKind, Prunable, PrunableLayer, TensorSlice, UnitGroup, UnitOp,
};
