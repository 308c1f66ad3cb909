//! The forward pass of a graph, planned once: which layers run as one kernel, and when each
//! value can be dropped.
//!
//! A conv, the BatchNorm after it, a residual add and a ReLU run as one call of
//! [`conv2d_batch_norm`], which in inference folds the norm into the conv and applies the add and
//! ReLU while each output is in cache, and in training normalizes, adds and cuts in one kernel
//! after the conv; a BatchNorm and its ReLU run as one call of [`batch_norm`]; a linear layer and
//! its ReLU run as one call of
//! [`linear`], whose backward pass undoes the ReLU without a mask tensor. Layers join only where
//! nothing else reads what passes between them, so no value that a tap or another layer needs
//! is skipped.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use coppice_kernels::{batch_norm, conv2d, conv2d_batch_norm, linear, max_pool2d};

use super::{Layer, Network};
use crate::graph::{Graph, Op, Source};
use crate::structure::{Activation, dense, spatial};

/// Per layer, the groups tapped at its output, and the tap.
pub(super) type Taps<'a> = (&'a [Vec<usize>], &'a mut dyn FnMut(usize, Activation) -> Activation);

#[derive(Clone, Debug)]
enum Step {
    /// The conv at `conv`, then optionally its BatchNorm, a residual added and a ReLU.
    Conv {
        conv: usize,
        norm: Option<usize>,
        residual: Option<Source>,
        relu: bool,
    },
    Linear {
        layer: usize,
        relu: bool,
    },
    /// A BatchNorm that no conv writes into, then optionally a ReLU.
    Norm {
        layer: usize,
        relu: bool,
    },
    Dropout {
        layer: usize,
    },
    Relu,
    MaxPool(MaxPool2d),
    AvgPool(AvgPool2d),
    GlobalAvgPool,
    Flatten,
    Add,
}

#[derive(Clone, Debug)]
struct Planned {
    step: Step,
    /// What the step reads first (the residual of a fused conv is in the step).
    inputs: Vec<Source>,
    /// The layer whose output the step produces.
    output: usize,
}

impl Planned {
    /// Every value the step reads, its residual included.
    fn reads(&self) -> Vec<Source> {
        let residual = match self.step {
            Step::Conv { residual, .. } => residual,
            _ => None,
        };
        self.inputs.iter().copied().chain(residual).collect()
    }
}

#[derive(Clone, Debug)]
pub(super) struct Plan {
    steps: Vec<Planned>,
    /// Per layer, the step after which nothing reads its output.
    last_use: Vec<usize>,
}

impl Plan {
    pub(super) fn new(graph: &Graph) -> Plan {
        let nodes = &graph.architecture.layers;
        let readers = graph.readers();
        let mut absorbed = vec![false; nodes.len()];
        // The one layer reading layer `i`, when it is of the kind `op` and no earlier step took
        // it (a projection's BatchNorm and a conv's both feed one add).
        let sole_reader = |i: usize, op: fn(&Op) -> bool, absorbed: &[bool]| match readers[i][..] {
            [r] if op(&nodes[r].op) && !absorbed[r] => Some(r),
            _ => None,
        };
        let mut steps = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if absorbed[i] {
                continue;
            }
            let inputs = graph.reads[i].clone();
            // The layers after the first that run inside the step; the last one's output is the
            // step's.
            let mut chain = Vec::new();
            let step = match &node.op {
                Op::Conv { .. } => match sole_reader(i, |op| matches!(op, Op::BatchNorm { .. }), &absorbed) {
                    Some(norm) => {
                        chain.push(norm);
                        let mut residual = None;
                        if let Some(add) = sole_reader(norm, |op| matches!(op, Op::Add), &absorbed)
                            && let [a, b] = graph.reads[add][..]
                            && a != b
                        {
                            residual = Some(if a == Source::Layer(norm) { b } else { a });
                            chain.push(add);
                        }
                        let last = *chain.last().expect("the norm is in the chain");
                        let relu = sole_reader(last, |op| matches!(op, Op::Relu), &absorbed);
                        chain.extend(relu);
                        Step::Conv { conv: i, norm: Some(norm), residual, relu: relu.is_some() }
                    }
                    None => Step::Conv { conv: i, norm: None, residual: None, relu: false },
                },
                Op::Linear { .. } => {
                    chain.extend(sole_reader(i, |op| matches!(op, Op::Relu), &absorbed));
                    Step::Linear { layer: i, relu: !chain.is_empty() }
                }
                Op::BatchNorm { .. } => {
                    chain.extend(sole_reader(i, |op| matches!(op, Op::Relu), &absorbed));
                    Step::Norm { layer: i, relu: !chain.is_empty() }
                }
                Op::Dropout { .. } => Step::Dropout { layer: i },
                Op::Relu => Step::Relu,
                Op::MaxPool { kernel, stride, padding } => {
                    let pool =
                        MaxPool2dConfig::new(*kernel).with_strides(*stride).with_padding(padding_config(*padding));
                    Step::MaxPool(pool.init())
                }
                Op::AvgPool { kernel, stride, padding } => {
                    let pool = AvgPool2dConfig::new(*kernel)
                        .with_strides(*stride)
                        .with_padding(padding_config(*padding))
                        .with_count_include_pad(true);
                    Step::AvgPool(pool.init())
                }
                Op::GlobalAvgPool => Step::GlobalAvgPool,
                Op::Flatten => Step::Flatten,
                Op::Add => Step::Add,
            };
            let output = chain.last().copied().unwrap_or(i);
            for &j in &chain {
                absorbed[j] = true;
            }
            steps.push(Planned { step, inputs, output });
        }
        // A fused step runs where its last layer stands, after every value it reads (a
        // projection may be listed after the conv it is added to).
        steps.sort_by_key(|s| s.output);
        let mut last_use = vec![0; nodes.len()];
        for (k, planned) in steps.iter().enumerate() {
            for source in planned.reads() {
                if let Source::Layer(j) = source {
                    last_use[j] = k;
                }
            }
        }
        Plan { steps, last_use }
    }

    /// The forward pass; with `taps`, each layer's output is handed to the tap of every group
    /// listed for it, and the pass goes on with what the tap returns.
    pub(super) fn run(&self, net: &Network, images: Tensor<4>, mut taps: Option<Taps>) -> Tensor<2> {
        let mut values: Vec<Option<Activation>> = vec![None; net.modules.len()];
        let image = Activation::Spatial(images);
        for (k, planned) in self.steps.iter().enumerate() {
            // A value's last reader takes it, so that burn may reuse its buffer; a step that
            // reads one value twice (a conv whose residual is its own input) takes it last.
            let mut reads_left = planned.reads();
            let mut take = |source: Source| {
                let read = reads_left.iter().position(|s| *s == source).expect("a step reads what it planned to");
                reads_left.swap_remove(read);
                match source {
                    Source::Image => image.clone(),
                    Source::Layer(j) if self.last_use[j] == k && !reads_left.contains(&source) => {
                        values[j].take().expect("values are made before use")
                    }
                    Source::Layer(j) => values[j].clone().expect("values are made before use"),
                }
            };
            let inputs: Vec<Activation> = planned.inputs.iter().map(|&s| take(s)).collect();
            let mut output = self.step(net, &planned.step, inputs, &mut take);
            if let Some((taps, tap)) = taps.as_mut() {
                for &g in &taps[planned.output] {
                    output = tap(g, output);
                }
            }
            values[planned.output] = Some(output);
        }
        let last = values.len() - 1;
        dense(values[last].take().expect("the last layer runs"))
    }

    fn step(
        &self,
        net: &Network,
        step: &Step,
        mut inputs: Vec<Activation>,
        take: &mut dyn FnMut(Source) -> Activation,
    ) -> Activation {
        let module = |i: usize| net.modules[i].as_ref().expect("weighted layers have modules");
        let x = inputs.swap_remove(0);
        match step {
            Step::Conv { conv, norm, residual, relu } => {
                let Layer::Conv(conv) = module(*conv) else { unreachable!("a conv step has a conv") };
                let x = spatial(x);
                Activation::Spatial(match norm.map(module) {
                    Some(Layer::BatchNorm(norm)) => {
                        let residual = residual.map(|r| spatial(take(r)));
                        conv2d_batch_norm(x, conv, norm, residual, *relu)
                    }
                    _ => conv2d(x, conv),
                })
            }
            Step::Linear { layer, relu } => {
                let Layer::Linear(layer) = module(*layer) else { unreachable!("a linear step has a linear layer") };
                Activation::Dense(linear(dense(x), layer, *relu))
            }
            Step::Norm { layer, relu } => {
                let Layer::BatchNorm(norm) = module(*layer) else { unreachable!("a norm step has a norm") };
                match x {
                    Activation::Spatial(x) => Activation::Spatial(batch_norm(x, norm, None, *relu)),
                    Activation::Dense(x) => Activation::Dense(batch_norm(x, norm, None, *relu)),
                }
            }
            Step::Dropout { layer } => {
                let Layer::Dropout(dropout) = module(*layer) else { unreachable!("a dropout step has dropout") };
                match x {
                    Activation::Spatial(x) => Activation::Spatial(dropout.forward(x)),
                    Activation::Dense(x) => Activation::Dense(dropout.forward(x)),
                }
            }
            Step::Relu => match x {
                Activation::Spatial(x) => Activation::Spatial(relu(x)),
                Activation::Dense(x) => Activation::Dense(relu(x)),
            },
            Step::MaxPool(pool) => Activation::Spatial(max_pool2d(spatial(x), pool)),
            Step::AvgPool(pool) => Activation::Spatial(pool.forward(spatial(x))),
            Step::GlobalAvgPool => {
                let x = spatial(x);
                let [batch, channels, _, _] = x.dims();
                Activation::Dense(x.mean_dim(3).mean_dim(2).reshape([batch, channels]))
            }
            Step::Flatten => Activation::Dense(dense(x)),
            Step::Add => inputs.into_iter().fold(x, |sum, other| match (sum, other) {
                (Activation::Spatial(a), other) => Activation::Spatial(a + spatial(other)),
                (Activation::Dense(a), other) => Activation::Dense(a + dense(other)),
            }),
        }
    }
}

fn padding_config([h, w]: [usize; 2]) -> PaddingConfig2d {
    match [h, w] {
        [0, 0] => PaddingConfig2d::Valid,
        _ => PaddingConfig2d::Explicit(h, w, h, w),
    }
}
