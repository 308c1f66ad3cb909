//! Flex's side of [`Kernels`]: f32 kernels on the tensors' own buffers. Anything else (another
//! dtype, a grouped convolution) takes the generic path.

mod conv;
mod linear;
mod norm;
mod pool;
mod products;
mod update;

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Bytes, DType, Flex};
use burn::prelude::Shape;
use burn::tensor::ops::ConvOptions;

use products::{Mat, matmul, matmul_then, product};

use crate::{
    AdamStep, Kernels, LayerGrads, Norm, NormGrads, NormStep, Optional, PoolWindow, SgdStep, Wanted, reference,
};

impl Kernels for Flex {
    fn conv2d_forward(x: FlexTensor, weight: FlexTensor, bias: Optional<Flex>, options: ConvOptions<2>) -> FlexTensor {
        let bias = bias.into_option();
        if !all_f32([Some(&x), Some(&weight), bias.as_ref()]) || options.groups != 1 {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, bias, options);
        }
        conv::forward(x, weight, bias, &options)
    }

    fn conv2d_batch_norm(
        x: FlexTensor,
        weight: FlexTensor,
        norm: Norm<Flex>,
        residual: Optional<Flex>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let residual = residual.into_option();
        let Norm { gamma, beta, mean, variance, .. } = &norm;
        let tensors = [Some(&x), Some(&weight), Some(gamma), Some(beta), Some(mean), Some(variance), residual.as_ref()];
        let output = conv::output_dims(dims(&x), dims(&weight), &options);
        let per_filter = [gamma, beta, mean, variance].iter().all(|t| t.layout().shape().as_slice() == [output[1]]);
        let fits = residual.as_ref().is_none_or(|r| r.layout().shape().as_slice() == output);
        if !all_f32(tensors) || options.groups != 1 || !per_filter || !fits {
            return reference::conv2d_batch_norm::<Flex>(x, weight, norm, residual, relu, options);
        }
        conv::forward_batch_norm(x, weight, norm, residual, relu, &options)
    }

    fn batch_norm_training(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: Optional<Flex>,
        relu: bool,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let residual = residual.into_option();
        let fits = per_channel(&x, [&gamma, &beta])
            && residual.as_ref().is_none_or(|r| r.layout().shape() == x.layout().shape());
        if !fits || !all_f32([Some(&x), Some(&gamma), Some(&beta), residual.as_ref()]) {
            return reference::batch_norm_train::<Flex>(x, gamma, beta, residual, relu, epsilon);
        }
        norm::forward(x, gamma, beta, residual, relu, epsilon)
    }

    fn batch_norm_training_grads(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        step: NormStep,
        wanted: Wanted,
    ) -> NormGrads<Flex> {
        let same = [&output, &output_grad].iter().all(|t| t.layout().shape() == x.layout().shape());
        let tensors = [Some(&x), Some(&gamma), Some(&mean), Some(&variance), Some(&output), Some(&output_grad)];
        if !same || !per_channel(&x, [&gamma, &mean, &variance]) || !all_f32(tensors) {
            return reference::batch_norm_train_grads::<Flex>(
                x,
                gamma,
                mean,
                variance,
                output,
                output_grad,
                step,
                wanted,
            );
        }
        norm::grads(x, gamma, mean, variance, output, output_grad, step, wanted)
    }

    fn conv2d_grads(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
        wanted: Wanted,
    ) -> LayerGrads<Flex> {
        if !all_f32([Some(&x), Some(&weight), Some(&output_grad)]) || options.groups != 1 {
            return reference::conv2d_grads::<Flex>(x, weight, output_grad, options, wanted);
        }
        conv::grads(x, weight, output_grad, &options, wanted)
    }

    fn max_pool2d_forward(x: FlexTensor, window: PoolWindow) -> FlexTensor {
        if !pool::handles(&x, window) {
            let PoolWindow { kernel, stride, dilation } = window;
            return <Flex as ModuleOps<Flex>>::max_pool2d(x, kernel, stride, [0, 0], dilation, false);
        }
        pool::forward(x, window, false).0
    }

    fn max_pool2d_with_positions(x: FlexTensor, window: PoolWindow) -> (FlexTensor, FlexTensor) {
        if !pool::handles(&x, window) {
            let PoolWindow { kernel, stride, dilation } = window;
            let pooled = <Flex as ModuleOps<Flex>>::max_pool2d_with_indices(
                x,
                kernel,
                stride,
                [0, 0],
                dilation,
                false,
                burn::backend::IntDType::I64,
            );
            return (pooled.output, pooled.indices);
        }
        let (output, positions) = pool::forward(x, window, true);
        (output, positions.expect("positions were asked for"))
    }

    fn max_pool2d_grads(
        x: FlexTensor,
        positions: FlexTensor,
        output_grad: FlexTensor,
        window: PoolWindow,
    ) -> FlexTensor {
        if !pool::handles(&x, window) || output_grad.dtype() != DType::F32 {
            let PoolWindow { kernel, stride, dilation } = window;
            let grads = <Flex as ModuleOps<Flex>>::max_pool2d_with_indices_backward(
                x,
                kernel,
                stride,
                [0, 0],
                dilation,
                false,
                output_grad,
                positions,
            );
            return grads.x_grad;
        }
        pool::grads(dims(&x), positions, output_grad, window)
    }

    fn linear_forward(x: FlexTensor, weight: FlexTensor, bias: Optional<Flex>, relu: bool) -> FlexTensor {
        let bias = bias.into_option();
        if !all_f32([Some(&x), Some(&weight), bias.as_ref()]) {
            return reference::linear_forward::<Flex>(x, weight, bias, relu);
        }
        linear::forward(x, weight, bias, relu)
    }

    fn linear_grads(
        x: FlexTensor,
        weight: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        relu: bool,
        wanted: Wanted,
    ) -> LayerGrads<Flex> {
        if !all_f32([Some(&x), Some(&weight), Some(&output_grad)]) {
            return reference::linear_grads::<Flex>(x, weight, output, output_grad, relu, wanted);
        }
        linear::grads(x, weight, output, output_grad, relu, wanted)
    }

    fn sgd_update(
        param: FlexTensor,
        grad: FlexTensor,
        velocity: Optional<Flex>,
        mask: Optional<Flex>,
        clear: Optional<Flex>,
        step: SgdStep,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let (velocity, mask, clear) = (velocity.into_option(), mask.into_option(), clear.into_option());
        let tensors = [Some(&param), Some(&grad), velocity.as_ref(), mask.as_ref(), clear.as_ref()];
        if !all_f32(tensors) || !same_shape(tensors) {
            return reference::sgd_update::<Flex>(param, grad, velocity, mask, clear, step);
        }
        update::sgd(param, grad, velocity, mask, clear, step)
    }

    fn adam_update(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: Optional<Flex>,
        moment_2: Optional<Flex>,
        mask: Optional<Flex>,
        clear: Optional<Flex>,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let moments = moment_1.into_option().zip(moment_2.into_option());
        let (mask, clear) = (mask.into_option(), clear.into_option());
        let (m1, m2) = moments.as_ref().map(|(m1, m2)| (m1, m2)).unzip();
        let tensors = [Some(&param), Some(&grad), m1, m2, mask.as_ref(), clear.as_ref()];
        if !all_f32(tensors) || !same_shape(tensors) {
            return reference::adam_update::<Flex>(param, grad, moments, mask, clear, step);
        }
        update::adam(param, grad, moments, mask, clear, step)
    }
}

/// Whether `x` is `[batch, channels, ...]` and every one of `per_channel` is `[channels]`.
fn per_channel<const N: usize>(x: &FlexTensor, per_channel: [&FlexTensor; N]) -> bool {
    norm::geometry(x)
        .is_some_and(|[_, channels, _]| per_channel.iter().all(|t| t.layout().shape().as_slice() == [channels]))
}

fn all_f32<const N: usize>(tensors: [Option<&FlexTensor>; N]) -> bool {
    tensors.iter().flatten().all(|t| t.dtype() == DType::F32)
}

fn same_shape<const N: usize>(tensors: [Option<&FlexTensor>; N]) -> bool {
    let mut shapes = tensors.iter().flatten().map(|t| t.layout().shape());
    let first = shapes.next();
    shapes.all(|shape| Some(shape) == first)
}

/// `tensor` laid out contiguously from the start of its buffer: itself when it already is.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() { tensor } else { tensor.to_contiguous() }
}

/// The values of a tensor that [`contiguous`] returned, in row-major order.
fn values(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn dims<const D: usize>(tensor: &FlexTensor) -> [usize; D] {
    tensor.layout().shape().dims()
}

/// A new tensor over `values`, without copying them (burn-flex's own constructors go through a
/// byte vector, which costs a zero fill and an aligned copy).
fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FloatTensor<Flex> {
    let shape = shape.into();
    debug_assert_eq!(values.len(), shape.num_elements());
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape), DType::F32)
}

/// `tensor` as a buffer an update may overwrite: its own when nobody else holds it and it fills
/// its buffer exactly, else a contiguous copy.
fn writable(tensor: FlexTensor) -> FlexTensor {
    let n = tensor.layout().num_elements();
    if tensor.is_unique() && tensor.layout().contiguous_offsets() == Some((0, n)) && tensor.bytes().len() == n * 4 {
        return tensor;
    }
    let copy = values(&contiguous(tensor.clone())).to_vec();
    self::tensor(copy, tensor.layout().shape().clone())
}

/// The values of a tensor that [`writable`] returned.
fn values_mut(tensor: &mut FlexTensor) -> &mut [f32] {
    tensor.try_storage_mut::<f32>().expect("a tensor from `writable` is not shared")
}

/// Runs `f` compiled for the widest vector instructions this CPU has, or those `COPPICE_SIMD`
/// names (see `coppice-simd`). An x86-64 build targets SSE2, four floats at a time, unless told
/// otherwise, and a build for one CPU would not run on another; so the elementwise loops of a
/// kernel (BatchNorm's statistics and passes) go through here and run eight or sixteen floats at
/// a time where AVX2 or AVX-512 exist. The arithmetic is the same in every case (no fused
/// multiply-add is introduced), so the results are too. `f` and what it calls must inline into
/// it, hence `#[inline(always)]` on both.
#[inline(always)]
fn widest<R>(f: impl FnOnce() -> R) -> R {
    match coppice_simd::Simd::current() {
        // SAFETY: `Simd::current` gives only a path the CPU has every feature of.
        #[cfg(target_arch = "x86_64")]
        coppice_simd::Simd::Avx512 => unsafe { x86::avx512(f) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        coppice_simd::Simd::Avx2 => unsafe { x86::avx2(f) },
        _ => f(),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f,avx2")]
    pub(super) fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// The sum of `values` in eight interleaved partial sums, which vectorize; the order is fixed, so
/// the result is too.
#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(lane, v)| *lane += *v);
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}
