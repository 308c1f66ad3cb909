//! The backward passes of the two layers, for every backend under autodiff: each records its
//! inputs and asks the inner backend's [`Kernels`] for all the gradients autodiff tracks at once,
//! so that Flex computes them with its own kernels.

use burn::backend::Backend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::ops::ConvOptions;

use crate::{Kernels, LayerGrads, NormStep, Optional, PoolWindow, Wanted};

/// `N` is 3 with a bias, 2 without; the parents are input, weight and bias in that order.
#[derive(Debug)]
struct Conv2dBackward<const N: usize>;

#[derive(Debug)]
struct LinearBackward<const N: usize>;

/// What a linear layer's backward pass reads: its input, weight and output, and whether ReLU
/// followed.
type LinearState<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, bool);

impl<B: Backend + Kernels, const N: usize> Backward<B, N> for Conv2dBackward<N> {
    type State = (FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<B>(&ops.node);
        let nodes = parent_ids(&ops);
        let (x, weight, options) = ops.state;
        let layer_grads = B::conv2d_grads(x, weight, output_grad, options, wanted(&nodes));
        register::<B>(grads, &nodes, layer_grads);
    }
}

impl<B: Backend + Kernels, const N: usize> Backward<B, N> for LinearBackward<N> {
    type State = LinearState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<B>(&ops.node);
        let nodes = parent_ids(&ops);
        let (x, weight, output, relu) = ops.state;
        let layer_grads = B::linear_grads(x, weight, output, output_grad, relu, wanted(&nodes));
        register::<B>(grads, &nodes, layer_grads);
    }
}

/// `N` is 4 with a residual, 3 without; the parents are input, gamma, beta and residual.
#[derive(Debug)]
struct BatchNormBackward<const N: usize>;

/// What a BatchNorm's backward pass reads: its input, gamma, the batch's mean and variance, and
/// its output when ReLU followed.
type NormState<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, NormStep);

impl<B: Backend + Kernels, const N: usize> Backward<B, N> for BatchNormBackward<N> {
    type State = NormState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<B>(&ops.node);
        let nodes: [Option<NodeId>; 4] =
            std::array::from_fn(|i| ops.parents.get(i).and_then(|parent| parent.as_ref().map(|node| node.id)));
        let (x, gamma, mean, variance, output, step) = ops.state;
        let wanted = Wanted { input: nodes[0].is_some(), weight: nodes[1].is_some(), bias: nodes[2].is_some() };
        let step = NormStep { residual: nodes[3].is_some(), ..step };
        // Without ReLU the output is not read; the gradient stands in for it.
        let output = output.unwrap_or_else(|| output_grad.clone());
        let (input, gamma, beta, residual) =
            B::batch_norm_training_grads(x, gamma, mean, variance, output, output_grad, step, wanted);
        for (node, grad) in nodes.iter().zip([input, gamma, beta, residual]) {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(*node, grad);
            }
        }
    }
}

/// The ids of input, weight and bias, each when autodiff tracks it.
#[derive(Debug)]
struct MaxPoolBackward;

impl<B: Backend + Kernels> Backward<B, 1> for MaxPoolBackward {
    /// The input, where the maxima were, and the window.
    type State = (FloatTensor<B>, IntTensor<B>, PoolWindow);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let output_grad = grads.consume::<B>(&ops.node);
        let (x, positions, window) = ops.state;
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, B::max_pool2d_grads(x, positions, output_grad, window));
        }
    }
}

fn parent_ids<S, const N: usize>(ops: &Ops<S, N>) -> [Option<NodeId>; 3] {
    std::array::from_fn(|i| ops.parents.get(i).and_then(|parent| parent.as_ref().map(|node| node.id)))
}

fn wanted(nodes: &[Option<NodeId>; 3]) -> Wanted {
    Wanted { input: nodes[0].is_some(), weight: nodes[1].is_some(), bias: nodes[2].is_some() }
}

fn register<B: Backend>(grads: &mut Gradients, nodes: &[Option<NodeId>; 3], (input, weight, bias): LayerGrads<B>) {
    for (node, grad) in nodes.iter().zip([input, weight, bias]) {
        if let (Some(node), Some(grad)) = (node, grad) {
            grads.register::<B>(*node, grad);
        }
    }
}

/// Records one layer in the graph: `forward` computes its output from the inner tensors of
/// `inputs`, and when autodiff tracks any of them, `keep` picks from the inputs and the output
/// what the backward pass reads.
fn record<B, C, S, const N: usize>(
    backward: impl Backward<B, N, State = S>,
    inputs: [FloatTensor<Autodiff<B, C>>; N],
    forward: impl FnOnce(&[FloatTensor<B>; N]) -> FloatTensor<B>,
    keep: impl FnOnce([FloatTensor<B>; N], &FloatTensor<B>) -> S,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    let nodes = inputs.each_ref().map(|input| input.node());
    let inputs = inputs.map(|input| input.into_primitive());
    match backward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let output = forward(&inputs);
            let state = keep(inputs, &output);
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&inputs)),
    }
}

impl<B: Backend + Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn conv2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Optional<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let conv = |x: &FloatTensor<B>, weight: &FloatTensor<B>, bias: Option<&FloatTensor<B>>| {
            B::conv2d_forward(x.clone(), weight.clone(), bias.cloned().into(), options.clone())
        };
        match bias.into_option() {
            Some(bias) => record::<B, C, _, 3>(
                Conv2dBackward::<3>,
                [x, weight, bias],
                |[x, weight, bias]| conv(x, weight, Some(bias)),
                |[x, weight, _], _| (x, weight, options.clone()),
            ),
            None => record::<B, C, _, 2>(
                Conv2dBackward::<2>,
                [x, weight],
                |[x, weight]| conv(x, weight, None),
                |[x, weight], _| (x, weight, options.clone()),
            ),
        }
    }

    fn batch_norm_training(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: Optional<Self>,
        relu: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let step = NormStep { epsilon, relu, residual: false };
        // The batch's statistics leave the graph: the running statistics take them detached.
        let statistics = std::cell::RefCell::new(None);
        let normalize = |inputs: &[FloatTensor<B>]| {
            let residual = inputs.get(3).cloned();
            let (x, gamma, beta) = (inputs[0].clone(), inputs[1].clone(), inputs[2].clone());
            let (output, mean, variance) = B::batch_norm_training(x, gamma, beta, residual.into(), relu, epsilon);
            *statistics.borrow_mut() = Some((mean, variance));
            output
        };
        let keep = |inputs: &[FloatTensor<B>], output: &FloatTensor<B>| {
            let (mean, variance) = statistics.borrow().clone().expect("the forward pass ran");
            (inputs[0].clone(), inputs[1].clone(), mean, variance, relu.then(|| output.clone()), step)
        };
        let output = match residual.into_option() {
            Some(residual) => record::<B, C, _, 4>(
                BatchNormBackward::<4>,
                [x, gamma, beta, residual],
                |inputs| normalize(inputs),
                |inputs, output| keep(&inputs, output),
            ),
            None => record::<B, C, _, 3>(
                BatchNormBackward::<3>,
                [x, gamma, beta],
                |inputs| normalize(inputs),
                |inputs, output| keep(&inputs, output),
            ),
        };
        let (mean, variance) = statistics.into_inner().expect("the forward pass ran");
        (output, <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance))
    }

    fn max_pool2d_forward(x: FloatTensor<Self>, window: PoolWindow) -> FloatTensor<Self> {
        match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let (output, positions) = B::max_pool2d_with_positions(x.clone(), window);
                prep.finish((x, positions, window), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool2d_forward(x.into_primitive(), window)),
        }
    }

    fn linear_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Optional<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let linear = |x: &FloatTensor<B>, weight: &FloatTensor<B>, bias: Option<&FloatTensor<B>>| {
            B::linear_forward(x.clone(), weight.clone(), bias.cloned().into(), relu)
        };
        match bias.into_option() {
            Some(bias) => record::<B, C, _, 3>(
                LinearBackward::<3>,
                [x, weight, bias],
                |[x, weight, bias]| linear(x, weight, Some(bias)),
                |[x, weight, _], output| (x, weight, output.clone(), relu),
            ),
            None => record::<B, C, _, 2>(
                LinearBackward::<2>,
                [x, weight],
                |[x, weight]| linear(x, weight, None),
                |[x, weight], output| (x, weight, output.clone(), relu),
            ),
        }
    }
}
