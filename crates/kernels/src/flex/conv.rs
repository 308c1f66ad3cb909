//! 2-D convolutions as im2col plus gemm, in NCHW.
//!
//! Forward, each sample's patches go into a scratch matrix `[channels · kh · kw, positions]` that
//! stays in cache, and one gemm with the weight `[out, channels · kh · kw]` writes the sample's
//! output in place, over its bias (and a residual), then ReLU if asked. A conv with fewer filters
//! than channels skips the patches (`taps.rs`); the backward pass is `backward.rs`. Samples run
//! in parallel.

use std::cell::RefCell;

use burn::backend::flex::FlexTensor;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::{Mat, contiguous, dims, matmul, product, tensor, values};
use crate::Norm;
use burn::backend::Flex;

mod backward;
mod patches;
mod shift;
mod taps;

pub(super) use backward::grads;
use patches::{add_run, im2col};

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Zeros before the first row and column; those after the last only shape `out`.
    padding: [usize; 2],
    out: [usize; 2],
}

impl Geometry {
    fn new([_, channels, height, width]: [usize; 4], [_, _, kh, kw]: [usize; 4], options: &ConvOptions<2>) -> Self {
        let out = |axis: usize, size: usize, kernel: usize| {
            let (begin, end) = options.padding[axis];
            let span = options.dilation[axis] * (kernel - 1) + 1;
            (size + begin + end).checked_sub(span).map_or(0, |room| room / options.stride[axis] + 1)
        };
        Geometry {
            channels,
            height,
            width,
            kernel: [kh, kw],
            stride: options.stride,
            dilation: options.dilation,
            padding: options.padding_begin(),
            out: [out(0, height, kh), out(1, width, kw)],
        }
    }

    fn image(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Rows of the patch matrix: one per input channel and kernel position.
    fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    fn positions(&self) -> usize {
        self.out[0] * self.out[1]
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of at least `len` values, kept between calls so that
/// a step allocates no patch matrices. A job that rayon runs on this thread while `f` waits finds
/// the buffer taken and uses one of its own.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = SCRATCH.with(RefCell::take);
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    SCRATCH.with(|cell| cell.replace(buffer));
    result
}

pub(super) fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (weight, bias) = (contiguous(weight), bias.map(contiguous));
    let filters = Filters { weight: values(&weight), dims: dims(&weight), bias: bias.as_ref().map(values) };
    forward_with(x, filters, Epilogue { residual: None, relu: false }, options)
}

/// The output shape of a convolution of `x` with `weight`.
pub(super) fn output_dims(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> [usize; 4] {
    let g = Geometry::new(x, weight, options);
    [x[0], weight[0], g.out[0], g.out[1]]
}

/// The convolution with the BatchNorm after it folded in: each filter scaled by
/// `gamma / sqrt(variance + epsilon)`, and a bias that puts the mean where `beta` says. The caller
/// checked that the norm has one entry per filter and that `residual` has the output's shape.
pub(super) fn forward_batch_norm(
    x: FlexTensor,
    weight: FlexTensor,
    norm: Norm<Flex>,
    residual: Option<FlexTensor>,
    relu: bool,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let weight = contiguous(weight);
    let [gamma, beta, mean, variance] = [norm.gamma, norm.beta, norm.mean, norm.variance].map(contiguous);
    let [gamma, beta, mean, variance] = [&gamma, &beta, &mean, &variance].map(values);
    let scale: Vec<f32> =
        gamma.iter().zip(variance).map(|(g, v)| (*g as f64 / (*v as f64 + norm.epsilon).sqrt()) as f32).collect();
    let bias: Vec<f32> = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    let weight_dims = dims::<4>(&weight);
    let per_filter = weight_dims[1..].iter().product::<usize>().max(1);
    let mut folded = values(&weight).to_vec();
    folded.chunks_mut(per_filter).zip(&scale).for_each(|(filter, s)| filter.iter_mut().for_each(|w| *w *= s));
    let residual = residual.map(contiguous);
    let filters = Filters { weight: &folded, dims: weight_dims, bias: Some(&bias) };
    forward_with(x, filters, Epilogue { residual: residual.as_ref().map(values), relu }, options)
}

/// Below this many filters, a sample's product runs transposed, positions by filters: gemm's
/// widest tiles are 64 rows high, and with 16 filters as rows (a ResNet's first stage, where most
/// of its work is) it ran on tiles a quarter as tall. From it on, a block of samples shares one
/// product, filters by positions.
const TRANSPOSE_BELOW: usize = 48;

/// Samples per block of a product over several samples: enough columns for an efficient product,
/// few enough that the block's patches stay in cache. It depends on the sizes alone, so the order
/// of any sum over blocks, and with it the result, is the same on any number of cores.
fn samples_per_block(g: &Geometry, batch: usize) -> usize {
    const BLOCK_VALUES: usize = 1 << 18;
    (BLOCK_VALUES / (g.rows() * g.positions()).max(1)).clamp(1, batch.max(1))
}

/// A convolution's weight `[out, channels, kh, kw]`, row-major, and its bias.
struct Filters<'a> {
    weight: &'a [f32],
    dims: [usize; 4],
    bias: Option<&'a [f32]>,
}

/// What happens to a sample's output right after its product, while it is in cache: a residual
/// of the output's shape added, then ReLU.
struct Epilogue<'a> {
    residual: Option<&'a [f32]>,
    relu: bool,
}

fn forward_with(x: FlexTensor, filters: Filters, epilogue: Epilogue, options: &ConvOptions<2>) -> FlexTensor {
    let x = contiguous(x);
    let x_dims = dims::<4>(&x);
    let g = Geometry::new(x_dims, filters.dims, options);
    let (batch, out_channels) = (x_dims[0], filters.dims[0]);
    let (positions, rows, image) = (g.positions(), g.rows(), g.image());
    let x = values(&x);
    let Filters { weight, bias, .. } = filters;
    let Epilogue { residual, relu } = epilogue;
    let tap_rows = taps::pays(&g, out_channels).then(|| taps::tap_rows(weight, filters.dims));
    let mut output = vec![0.0; batch * out_channels * positions];
    let sample_len = out_channels * positions;
    // A sample's output starts as its residual and bias, and ends in ReLU: a select, which
    // vectorizes, and not `max`, which would turn a NaN (a diverged network) into 0.
    let prefill = |sample: usize, out: &mut [f32]| {
        if let Some(residual) = residual {
            out.copy_from_slice(&residual[sample * sample_len..(sample + 1) * sample_len]);
        }
        if let Some(bias) = bias {
            for (plane, &b) in out.chunks_mut(positions).zip(bias) {
                match residual {
                    Some(_) => plane.iter_mut().for_each(|v| *v += b),
                    None => plane.fill(b),
                }
            }
        }
    };
    let finish = |out: &mut [f32]| {
        if relu {
            out.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
        }
    };
    let accumulate = bias.is_some() || residual.is_some();
    // A single image (latency) gets every core inside its product instead.
    let split = batch == 1;
    let blocked = tap_rows.is_none() && !split && out_channels >= TRANSPOSE_BELOW;
    let shape = [batch, out_channels, g.out[0], g.out[1]];
    if output.is_empty() {
        return tensor(output, shape);
    }
    if blocked {
        // Many filters over few positions (a ResNet's later stages): one product for a block of
        // samples, filters by the block's positions, whose packed weight serves every sample
        // of the block; each sample's share is then added into its output.
        let per_block = samples_per_block(&g, batch);
        output.par_chunks_mut(per_block * sample_len).enumerate().for_each(|(block, outs)| {
            let (first, samples) = (block * per_block, outs.len() / sample_len);
            let width = samples * positions;
            with_scratch((rows + out_channels) * width, |scratch| {
                let (cols, products) = scratch.split_at_mut(rows * width);
                for s in 0..samples {
                    let sample = first + s;
                    im2col(&g, &x[sample * image..(sample + 1) * image], cols, width, s * positions);
                }
                let (w, c) = (Mat::row_major(weight, rows), Mat::row_major(cols, width));
                matmul(products, width, [out_channels, width, rows], w, c, false, false);
                for (s, out) in outs.chunks_mut(sample_len).enumerate() {
                    prefill(first + s, out);
                    for (f, plane) in out.chunks_mut(positions).enumerate() {
                        let product = &products[f * width + s * positions..][..positions];
                        if accumulate { add_run(plane, product) } else { plane.copy_from_slice(product) }
                    }
                    finish(out);
                }
            })
        });
    } else {
        output.par_chunks_mut(sample_len).enumerate().for_each(|(sample, out)| {
            prefill(sample, out);
            let image = &x[sample * image..(sample + 1) * image];
            match &tap_rows {
                Some(tap_rows) => taps::add_convolution(&g, tap_rows, image, out, out_channels, split),
                None if !split => with_scratch(rows * positions, |cols| {
                    im2col(&g, image, cols, positions, 0);
                    // `outᵀ = colsᵀ · weightᵀ`, written in `out`'s own layout.
                    let (lhs, rhs) = (Mat::strided(cols, [1, positions]), Mat::strided(weight, [1, rows]));
                    product(out, [1, positions], lhs, rhs, [positions, out_channels, rows], accumulate);
                }),
                None => with_scratch(rows * positions, |cols| {
                    im2col(&g, image, cols, positions, 0);
                    let (w, c) = (Mat::row_major(weight, rows), Mat::row_major(cols, positions));
                    matmul(out, positions, [out_channels, positions, rows], w, c, accumulate, split);
                }),
            }
            finish(out);
        });
    }
    tensor(output, shape)
}
