//! The extension trait itself. Its outputs are spelled out as tuples, which the extension macro
//! needs to see (it cannot look through a type alias).
// NdArray is deprecated in burn 0.22, and coppice still offers it.
#![allow(deprecated)]
#![allow(clippy::type_complexity)]

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, IntDType, backend_extension};
use burn::tensor::ops::ConvOptions;

use crate::{AdamStep, Norm, NormStep, Optional, PoolWindow, SgdStep, Wanted, reference};

#[backend_extension(Flex, NdArray, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait Kernels: Backend {
    /// A 2-D convolution, `x` `[batch, channels, height, width]`, `weight` `[out, channels, kh, kw]`.
    fn conv2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        #[extension_type] bias: Optional<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, bias.into_option(), options)
    }

    /// Inference through a convolution without bias and the BatchNorm after it, with the norm's
    /// running statistics: the normalized output, plus `residual` when present, then ReLU when
    /// `relu`.
    fn conv2d_batch_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        #[extension_type] norm: Norm<Self>,
        #[extension_type] residual: Optional<Self>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        reference::conv2d_batch_norm::<Self>(x, weight, norm, residual.into_option(), relu, options)
    }

    /// BatchNorm with the batch's own statistics over `x` `[batch, channels, ...]`: the
    /// normalized output, plus `residual` when present, then ReLU when `relu`; and the batch's
    /// mean and biased variance per channel, which the running statistics follow.
    fn batch_norm_training(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        #[extension_type] residual: Optional<Self>,
        relu: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::batch_norm_train::<Self>(x, gamma, beta, residual.into_option(), relu, epsilon)
    }

    /// The gradients of [`Kernels::batch_norm_training`] given the gradient of its output: of the
    /// input, `gamma` and `beta` as `wanted` says (weight for `gamma`, bias for `beta`), and of
    /// the residual when `residual`. `output` is read only with `relu`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_training_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        step: NormStep,
        wanted: Wanted,
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>, Option<FloatTensor<Self>>, Option<FloatTensor<Self>>)
    {
        reference::batch_norm_train_grads::<Self>(x, gamma, mean, variance, output, output_grad, step, wanted)
    }

    /// The gradients of [`Kernels::conv2d_forward`], given the gradient of its output.
    fn conv2d_grads(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        wanted: Wanted,
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>, Option<FloatTensor<Self>>) {
        reference::conv2d_grads::<Self>(x, weight, output_grad, options, wanted)
    }

    /// 2-D max pooling of `x` `[batch, channels, height, width]`.
    fn max_pool2d_forward(x: FloatTensor<Self>, window: PoolWindow) -> FloatTensor<Self> {
        let PoolWindow { kernel, stride, dilation } = window;
        Self::max_pool2d(x, kernel, stride, [0, 0], dilation, false)
    }

    /// [`Kernels::max_pool2d_forward`] with where each maximum was, for the backward pass. The
    /// positions are the backend's own business: flat indices into each input plane in burn,
    /// positions within the window on Flex.
    fn max_pool2d_with_positions(x: FloatTensor<Self>, window: PoolWindow) -> (FloatTensor<Self>, IntTensor<Self>) {
        let PoolWindow { kernel, stride, dilation } = window;
        let pooled = Self::max_pool2d_with_indices(x, kernel, stride, [0, 0], dilation, false, IntDType::I64);
        (pooled.output, pooled.indices)
    }

    /// The gradient of [`Kernels::max_pool2d_forward`]'s input: each output's gradient at its
    /// maximum.
    fn max_pool2d_grads(
        x: FloatTensor<Self>,
        positions: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
        window: PoolWindow,
    ) -> FloatTensor<Self> {
        let PoolWindow { kernel, stride, dilation } = window;
        Self::max_pool2d_with_indices_backward(x, kernel, stride, [0, 0], dilation, false, output_grad, positions)
            .x_grad
    }

    /// `x [batch, in] · weight [in, out] + bias`, then ReLU when `relu`.
    fn linear_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        #[extension_type] bias: Optional<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        reference::linear_forward::<Self>(x, weight, bias.into_option(), relu)
    }

    /// The gradients of [`Kernels::linear_forward`]; `output` is its result (read only with `relu`).
    fn linear_grads(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        relu: bool,
        wanted: Wanted,
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>, Option<FloatTensor<Self>>) {
        reference::linear_grads::<Self>(x, weight, output, output_grad, relu, wanted)
    }

    /// One SGD update: the new parameter and velocity (none without momentum). `mask` holds 0 or
    /// 1 per entry, and the update is exactly 0 where it is 0; `clear`, of the same kind, comes
    /// with the first update under a new mask and zeroes the velocity where it is 0.
    fn sgd_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        #[extension_type] velocity: Optional<Self>,
        #[extension_type] mask: Optional<Self>,
        #[extension_type] clear: Optional<Self>,
        step: SgdStep,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let (velocity, mask, clear) = (velocity.into_option(), mask.into_option(), clear.into_option());
        reference::sgd_update::<Self>(param, grad, velocity, mask, clear, step)
    }

    /// One Adam update: the new parameter and first and second moments; without moments, the
    /// first step. `mask` and `clear` as for [`Kernels::sgd_update`], `clear` acting on the first
    /// moment.
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        #[extension_type] moment_1: Optional<Self>,
        #[extension_type] moment_2: Optional<Self>,
        #[extension_type] mask: Optional<Self>,
        #[extension_type] clear: Optional<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let moments = moment_1.into_option().zip(moment_2.into_option());
        reference::adam_update::<Self>(param, grad, moments, mask.into_option(), clear.into_option(), step)
    }
}

#[allow(deprecated)]
impl Kernels for burn::backend::NdArray {}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl Kernels for burn::backend::Cube {}
