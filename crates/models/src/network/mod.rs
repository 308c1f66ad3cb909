//! The network coppice trains: one burn module per layer that has weights or flags, named by its
//! layer, run in the order of its graph.

mod plan;

use std::sync::Arc;

use burn::module::{Content, Devices, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::graph::{Architecture, Coupling, Graph, GraphError, Op, Shape};
use crate::params::float_params;
use crate::structure::{Activation, Prunable, PrunableLayer, UnitGroup};
use plan::Plan;

/// Anything that maps a batch of images `[batch, channels, height, width]` to class logits.
pub trait Classifier {
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;
}

/// The module of a layer that has parameters or a training flag.
#[derive(Module, Debug)]
pub enum Layer {
    Conv(Conv2d),
    Linear(Linear),
    BatchNorm(BatchNorm),
    Dropout(Dropout),
}

/// A network built from a checked graph. Clones share the graph and the plan of the forward pass;
/// the modules are burn's, so clones share their tensors as burn's clones do.
#[derive(Clone, Debug)]
pub struct Network {
    graph: Arc<Graph>,
    plan: Arc<Plan>,
    /// One entry per layer of the graph: its module, if it has one.
    modules: Vec<Option<Layer>>,
}

impl Architecture {
    /// Builds the network without touching its parameters: burn initializes them lazily, so
    /// nothing is drawn from the random generator until they are read.
    fn build(&self, device: &Device) -> Result<Network, GraphError> {
        let graph = self.resolve()?;
        let modules = (0..graph.len()).map(|i| module(&graph, i, device)).collect();
        let plan = Plan::new(&graph);
        Ok(Network { graph: Arc::new(graph), plan: Arc::new(plan), modules })
    }

    /// The network with freshly drawn weights, or why this architecture cannot be built.
    pub fn init(&self, device: &Device) -> Result<Network, GraphError> {
        let net = self.build(device)?;
        // burn initializes parameters lazily, at first use. Reading them all here, in layer
        // order, makes the initial weights depend on the seed alone and not on which code
        // happens to touch a parameter first (a shape query does).
        float_params(&net);
        Ok(net)
    }
}

fn module(graph: &Graph, i: usize, device: &Device) -> Option<Layer> {
    let input = graph.shape_of(graph.reads[i][0]);
    Some(match graph.node(i).op {
        Op::Conv { filters, kernel, stride, padding, bias } => {
            let padding = match padding {
                [0, 0] => PaddingConfig2d::Valid,
                [h, w] => PaddingConfig2d::Explicit(h, w, h, w),
            };
            Layer::Conv(
                Conv2dConfig::new([input.units(), filters], kernel)
                    .with_stride(stride)
                    .with_padding(padding)
                    .with_bias(bias)
                    .init(device),
            )
        }
        Op::Linear { units, bias } => {
            Layer::Linear(LinearConfig::new(input.values(), units).with_bias(bias).init(device))
        }
        Op::BatchNorm { epsilon, momentum } => Layer::BatchNorm(
            BatchNormConfig::new(input.units()).with_epsilon(epsilon).with_momentum(momentum).init(device),
        ),
        Op::Dropout { prob } => Layer::Dropout(DropoutConfig::new(prob).init()),
        _ => return None,
    })
}

impl Network {
    /// The architecture, read back from the tensors so that a pruned network reports its
    /// smaller widths.
    pub fn architecture(&self) -> Architecture {
        let mut architecture = self.graph.architecture.clone();
        for (node, module) in architecture.layers.iter_mut().zip(&self.modules) {
            match (&mut node.op, module) {
                (Op::Conv { filters, .. }, Some(Layer::Conv(conv))) => *filters = conv.weight.dims()[0],
                (Op::Linear { units, .. }, Some(Layer::Linear(linear))) => *units = linear.weight.dims()[1],
                _ => {}
            }
        }
        architecture
    }

    /// The checked graph of the current widths.
    pub fn graph(&self) -> Graph {
        self.architecture().resolve().expect("surgery keeps a network's graph consistent")
    }

    /// A copy that shares nothing with `self`. burn's clones share BatchNorm running statistics,
    /// which module mappers (surgery) and training rewrite in place. Draws nothing from the
    /// random generator.
    pub fn deep_clone(&self) -> Network {
        let device = self.devices().into_iter().next().unwrap_or_default();
        let fresh = self.architecture().build(&device).expect("a built network's architecture builds");
        fresh.load_record(self.clone().into_record())
    }

    pub fn output_shape(&self) -> Shape {
        *self.graph.shapes.last().expect("a graph has layers")
    }

    fn coupling(&self) -> Coupling {
        crate::graph::coupling::derive(&self.graph())
    }

    fn named_modules(&self) -> impl Iterator<Item = (&str, &Layer)> {
        let names = self.graph.architecture.layers.iter().map(|n| n.name.as_str());
        names.zip(&self.modules).filter_map(|(name, module)| module.as_ref().map(|m| (name, m)))
    }

    fn map_modules(self, mut f: impl FnMut(&str, Layer) -> Layer) -> Self {
        let Network { graph, plan, modules } = self;
        let modules = graph
            .architecture
            .layers
            .iter()
            .zip(modules)
            .map(|(node, module)| module.map(|m| f(&node.name, m)))
            .collect();
        Network { graph, plan, modules }
    }
}

impl Classifier for Network {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.plan.run(self, images, None)
    }
}

impl Prunable for Network {
    fn prunable_layers(&self) -> Vec<PrunableLayer> {
        self.coupling().layers
    }

    fn unit_groups(&self) -> Vec<UnitGroup> {
        self.coupling().groups
    }

    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2> {
        let taps = self.coupling().taps;
        self.plan.run(self, images, Some((&taps, tap)))
    }
}

/// Each layer's tensors are named by its layer (`layer1.0.conv1.weight`), its dots nesting as
/// PyTorch's module paths do, so that paths, exports and `state_dict` names agree.
impl Module for Network {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.named_modules().fold(devices, |devices, (_, m)| m.collect_devices(devices))
    }

    fn fork(self, device: &Device) -> Self {
        self.map_modules(|_, m| m.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        self.map_modules(|_, m| m.to_device(device))
    }

    fn train(self) -> Self {
        self.map_modules(|_, m| m.train())
    }

    fn valid(&self) -> Self {
        self.clone().map_modules(|_, m| m.valid())
    }

    fn materialize(self) -> Self {
        self.map_modules(|_, m| m.materialize())
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        for (name, module) in self.named_modules() {
            name.split('.').for_each(|part| visitor.enter_module(part, CONTAINER));
            module.visit(visitor);
            name.rsplit('.').for_each(|part| visitor.exit_module(part, CONTAINER));
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        self.map_modules(|name, module| {
            name.split('.').for_each(|part| mapper.enter_module(part, CONTAINER));
            let module = module.map(mapper);
            name.rsplit('.').for_each(|part| mapper.exit_module(part, CONTAINER));
            module
        })
    }
}

const CONTAINER: &str = "Struct:Network";

impl ModuleDisplayDefault for Network {
    fn content(&self, content: Content) -> Option<Content> {
        self.named_modules()
            .fold(content, |content, (name, module)| content.add(name, module))
            .set_top_level_type("Network")
            .optional()
    }
}

impl ModuleDisplay for Network {}
