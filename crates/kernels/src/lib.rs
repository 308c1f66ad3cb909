//! The operations a training step spends its time in, as one burn backend extension.
//!
//! burn-flex runs a convolution's backward pass as a transposed convolution and a convolution
//! with batch and channels swapped, allocates every result twice (a zeroed byte buffer, then an
//! aligned copy), finds pooling maxima with branches that random data mispredicts, and its
//! optimizers make five to eight passes over every parameter per step. On a 2-core CPU that made
//! coppice train LeNet-5 at a third of PyTorch's speed. The kernels here do the same arithmetic
//! the way PyTorch's CPU path does:
//! - a convolution is im2col plus one gemm per sample forward, and per block of samples for the
//!   weight gradient, with the input gradient scattered back by col2im;
//! - a fully connected layer is one gemm, its bias and ReLU applied to each band of rows while
//!   it is in cache, and the ReLU undone in the backward pass without a mask tensor;
//! - max pooling records the position of each maximum in one byte;
//! - an SGD or Adam update is one pass over parameter, gradient and state, in place.
//!
//! Every kernel is an operation of the [`Kernels`] extension. Flex runs coppice's kernels
//! (`flex/`); every other backend (NdArray, wgpu, cuda) runs the default bodies, which are burn's
//! own operations (`reference.rs`), so its results do not change. Autodiff gets the layers'
//! backward passes from here too (`autodiff.rs`).

mod autodiff;
mod extension;
mod flex;
mod reference;

pub use extension::Kernels;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, ExtensionType};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// Which gradients a backward pass computes: those autodiff tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

/// SGD as coppice configures it (no dampening), with the mask of a pruned tensor folded in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    pub lr: f64,
    /// 0 turns momentum off (and with it the velocity).
    pub momentum: f32,
    pub nesterov: bool,
    /// Coupled L2 penalty, added to the gradient.
    pub weight_decay: Option<f32>,
}

/// Adam without AMSGrad; `time` counts this step, from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: Option<f32>,
    pub time: i32,
}

/// What a BatchNorm's backward pass needs to know besides tensors: its epsilon, whether ReLU
/// followed (then the output's sign masks the gradient), and whether a residual was added (then
/// it gets the masked gradient).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormStep {
    pub epsilon: f64,
    pub relu: bool,
    pub residual: bool,
}

/// The window of a max pool without padding, in floor mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
}

/// The gradients of a layer's input, weight and bias, each when [`Wanted`].
pub type LayerGrads<B> = (Option<FloatTensor<B>>, Option<FloatTensor<B>>, Option<FloatTensor<B>>);

/// The gradients of a BatchNorm's input, gamma, beta and residual, each when wanted.
pub type NormGrads<B> =
    (Option<FloatTensor<B>>, Option<FloatTensor<B>>, Option<FloatTensor<B>>, Option<FloatTensor<B>>);

/// A tensor argument that may be absent: the extension macro passes tensors, and structs or enums
/// of them, but not `Option`s.
#[derive(ExtensionType)]
pub enum Optional<B: Backend> {
    Present(FloatTensor<B>),
    Absent,
}

/// A BatchNorm layer for inference: its affine parameters and running statistics, each
/// `[channels]`.
#[derive(ExtensionType)]
pub struct Norm<B: Backend> {
    pub gamma: FloatTensor<B>,
    pub beta: FloatTensor<B>,
    pub mean: FloatTensor<B>,
    pub variance: FloatTensor<B>,
    pub epsilon: f64,
}

impl<B: Backend> Optional<B> {
    pub fn into_option(self) -> Option<FloatTensor<B>> {
        match self {
            Optional::Present(tensor) => Some(tensor),
            Optional::Absent => None,
        }
    }
}

impl<B: Backend> From<Option<FloatTensor<B>>> for Optional<B> {
    fn from(tensor: Option<FloatTensor<B>>) -> Self {
        tensor.map_or(Optional::Absent, Optional::Present)
    }
}

/// `conv.forward(x)`, through [`Kernels::conv2d_forward`].
pub fn conv2d(x: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    let options = conv_options(&x, conv);
    let bias = conv.bias.as_ref().map(|b| b.val().into_dispatch());
    Tensor::from_dispatch(<Dispatch as Kernels>::conv2d_forward(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into(),
        options,
    ))
}

/// `norm.forward(conv.forward(x))`, plus `residual` when given, then ReLU when `relu`.
///
/// Without autodiff (evaluation, inference) this is one pass, [`Kernels::conv2d_batch_norm`]:
/// the norm's running statistics fold into the conv's weight and bias, and the residual and ReLU
/// are applied while each output is in cache. Done as burn's layers, the norm alone makes four
/// passes over the activation, a cost that does not shrink when filters are pruned. Training
/// goes through burn's layers, which keep batch statistics and their gradients.
pub fn conv2d_batch_norm(
    x: Tensor<4>,
    conv: &Conv2d,
    norm: &BatchNorm,
    residual: Option<Tensor<4>>,
    relu: bool,
) -> Tensor<4> {
    if x.device().is_autodiff() {
        return batch_norm(conv2d(x, conv), norm, residual, relu);
    }
    let options = conv_options(&x, conv);
    let mean = norm.running_mean.value();
    // A conv bias shifts the output the norm centres: norm(y + b) has mean `mean - b`.
    let mean = match &conv.bias {
        Some(bias) => mean - bias.val(),
        None => mean,
    };
    let norm = Norm {
        gamma: norm.gamma.val().into_dispatch(),
        beta: norm.beta.val().into_dispatch(),
        mean: mean.into_dispatch(),
        variance: norm.running_var.value().into_dispatch(),
        epsilon: norm.epsilon,
    };
    Tensor::from_dispatch(<Dispatch as Kernels>::conv2d_batch_norm(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        norm,
        residual.map(Tensor::into_dispatch).into(),
        relu,
        options,
    ))
}

/// `norm.forward(x)`, plus `residual` when given, then ReLU when `relu`. In training (an
/// autodiff device, a norm not frozen) this is one kernel, [`Kernels::batch_norm_training`], with
/// the batch's statistics, whose running averages move as burn's BatchNorm moves them;
/// otherwise burn's layer with the running statistics.
pub fn batch_norm<const D: usize>(
    x: Tensor<D>,
    norm: &BatchNorm,
    residual: Option<Tensor<D>>,
    relu: bool,
) -> Tensor<D> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        let output = norm.forward(x);
        let output = match residual {
            Some(residual) => output + residual,
            None => output,
        };
        return if relu { burn::tensor::activation::relu(output) } else { output };
    }
    let device = x.device();
    let (output, mean, variance) = <Dispatch as Kernels>::batch_norm_training(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        residual.map(Tensor::into_dispatch).into(),
        relu,
        norm.epsilon,
    );
    let [mean, variance] = [mean, variance].map(Tensor::<1>::from_dispatch);
    let momentum = norm.momentum;
    let running = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let old = state.value_sync().to_device(&device);
        state.update(old.mul_scalar(1.0 - momentum).add(batch.detach().mul_scalar(momentum)).detach());
    };
    running(&norm.running_mean, mean);
    running(&norm.running_var, variance);
    Tensor::from_dispatch(output)
}

fn conv_options(x: &Tensor<4>, conv: &Conv2d) -> ConvOptions<2> {
    let [_, _, height, width] = x.dims();
    let padding = [(0, height), (1, width)].map(|(axis, size)| padding(&conv.padding, axis, size, conv));
    ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups)
}

/// `pool.forward(x)`: through [`Kernels::max_pool2d_forward`] for pools without padding in floor
/// mode (coppice's networks), through burn's own operation otherwise.
pub fn max_pool2d(x: Tensor<4>, pool: &MaxPool2d) -> Tensor<4> {
    if pool.padding != PaddingConfig2d::Valid || pool.ceil_mode {
        return pool.forward(x);
    }
    let window = PoolWindow { kernel: pool.kernel_size, stride: pool.stride, dilation: pool.dilation };
    Tensor::from_dispatch(<Dispatch as Kernels>::max_pool2d_forward(x.into_dispatch(), window))
}

/// The zeros before and after the input along `axis` (0: height, 1: width), as burn's
/// `Conv2d::forward` computes them (its function for it is private): Same pads so that the output
/// has `ceil(size / stride)` entries, the odd one out at the end.
fn padding(config: &PaddingConfig2d, axis: usize, size: usize, conv: &Conv2d) -> (usize, usize) {
    match *config {
        PaddingConfig2d::Valid => (0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)][axis],
        PaddingConfig2d::Same => {
            let (kernel, stride) = (conv.kernel_size[axis], conv.stride[axis]);
            let out = size.div_ceil(stride);
            let total = if out > 0 { ((out - 1) * stride + kernel).saturating_sub(size) } else { 0 };
            (total / 2, total - total / 2)
        }
    }
}

/// `layer.forward(x)`, followed by ReLU when `relu`, through [`Kernels::linear_forward`].
pub fn linear(x: Tensor<2>, layer: &Linear, relu: bool) -> Tensor<2> {
    let bias = layer.bias.as_ref().map(|b| b.val().into_dispatch());
    Tensor::from_dispatch(<Dispatch as Kernels>::linear_forward(
        x.into_dispatch(),
        layer.weight.val().into_dispatch(),
        bias.into(),
        relu,
    ))
}

/// One SGD update of `param` (see [`Kernels::sgd_update`]).
pub fn sgd_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    velocity: Option<Tensor<D>>,
    mask: Option<Tensor<D>>,
    clear: Option<Tensor<D>>,
    step: SgdStep,
) -> (Tensor<D>, Option<Tensor<D>>) {
    let (param, velocity) = <Dispatch as Kernels>::sgd_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        velocity.map(Tensor::into_dispatch).into(),
        mask.map(Tensor::into_dispatch).into(),
        clear.map(Tensor::into_dispatch).into(),
        step,
    );
    (Tensor::from_dispatch(param), velocity.map(Tensor::from_dispatch))
}

/// One Adam update of `param` (see [`Kernels::adam_update`]); `moments` are the first and the
/// second, absent at the first step.
pub fn adam_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    mask: Option<Tensor<D>>,
    clear: Option<Tensor<D>>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (moment_1, moment_2) = moments.map(|(m1, m2)| (m1.into_dispatch(), m2.into_dispatch())).unzip();
    let (param, moment_1, moment_2) = <Dispatch as Kernels>::adam_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into(),
        moment_2.into(),
        mask.map(Tensor::into_dispatch).into(),
        clear.map(Tensor::into_dispatch).into(),
        step,
    );
    (Tensor::from_dispatch(param), Tensor::from_dispatch(moment_1), Tensor::from_dispatch(moment_2))
}
