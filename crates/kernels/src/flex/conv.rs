//! 2-D convolutions as im2col plus gemm, in NCHW.
//!
//! Forward, each sample's patches go into a scratch matrix `[channels · kh · kw, positions]` that
//! stays in cache, and one gemm with the weight `[out, channels · kh · kw]` writes the sample's
//! output in place, over its bias (and a residual), then ReLU if asked. A conv with fewer filters
//! than channels skips the patches (`taps.rs`); the backward pass is `backward.rs`. Samples run
//! in parallel.

use std::cell::RefCell;
use std::ops::Range;

use burn::backend::flex::FlexTensor;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::{Mat, contiguous, dims, matmul, tensor, values};
use crate::Norm;
use burn::backend::Flex;

mod backward;
mod taps;

pub(super) use backward::grads;

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

/// The outputs `o < out` whose input `o * stride + offset - pad` lies inside `0..size`.
fn inside(offset: usize, pad: usize, stride: usize, size: usize, out: usize) -> Range<usize> {
    let end = if size + pad > offset { ((size + pad - offset - 1) / stride + 1).min(out) } else { 0 };
    let start = pad.saturating_sub(offset).div_ceil(stride).min(end);
    start..end
}

/// Where one stretch of a row of the patch matrix comes from.
enum Stretch {
    /// Padding.
    Zeros,
    /// Input row `line` (counting rows across channels), every `stride`-th value from column
    /// `first`.
    Input { line: usize, first: usize },
}

/// Visits the patch matrix of one image as stretches: `(row, columns, source)`. Inlined, with
/// the visit, into its two callers: called per stretch, the visit cost more than the copy.
#[inline(always)]
fn for_each_stretch(g: &Geometry, mut visit: impl FnMut(usize, Range<usize>, Stretch)) {
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.out;
    for c in 0..g.channels {
        for ki in 0..kh {
            let ys = inside(ki * g.dilation[0], g.padding[0], g.stride[0], g.height, oh);
            for kj in 0..kw {
                let row = (c * kh + ki) * kw + kj;
                let offset = kj * g.dilation[1];
                let xs = inside(offset, g.padding[1], g.stride[1], g.width, ow);
                visit(row, 0..ys.start * ow, Stretch::Zeros);
                for y in ys.clone() {
                    let line = c * g.height + y * g.stride[0] + ki * g.dilation[0] - g.padding[0];
                    visit(row, y * ow..y * ow + xs.start, Stretch::Zeros);
                    if !xs.is_empty() {
                        let first = xs.start * g.stride[1] + offset - g.padding[1];
                        visit(row, y * ow + xs.start..y * ow + xs.end, Stretch::Input { line, first });
                    }
                    visit(row, y * ow + xs.end..(y + 1) * ow, Stretch::Zeros);
                }
                visit(row, ys.end * ow..oh * ow, Stretch::Zeros);
            }
        }
    }
}

impl Geometry {
    /// Without padding, stride or dilation (LeNet-5's convolutions), every stretch is a whole
    /// output row copied from one input row, and a plain loop beats the general visit.
    fn is_plain(&self) -> bool {
        self.padding == [0, 0] && self.stride == [1, 1] && self.dilation == [1, 1]
    }

    /// For a plain convolution, each row of the patch matrix with the offset of its input
    /// window in the image.
    fn plain_rows(&self) -> impl Iterator<Item = (usize, usize)> {
        let ([kh, kw], plane, width) = (self.kernel, self.height * self.width, self.width);
        (0..self.channels * kh * kw).map(move |row| {
            let (c, k) = (row / (kh * kw), row % (kh * kw));
            (row, c * plane + (k / kw) * width + k % kw)
        })
    }
}

/// Writes one image's patches into columns `offset..offset + positions` of `cols`, whose rows are
/// `ld` apart.
fn im2col(g: &Geometry, image: &[f32], cols: &mut [f32], ld: usize, offset: usize) {
    if g.is_plain() {
        let ([_, ow], positions) = (g.out, g.positions());
        for (row, start) in g.plain_rows() {
            let dst = &mut cols[row * ld + offset..row * ld + offset + positions];
            for (y, run) in dst.chunks_exact_mut(ow).enumerate() {
                copy_run(run, &image[start + y * g.width..]);
            }
        }
        return;
    }
    let (width, step) = (g.width, g.stride[1]);
    for_each_stretch(
        g,
        #[inline(always)]
        |row, columns, stretch| {
            let dst = &mut cols[row * ld + offset..][columns];
            match stretch {
                Stretch::Zeros => dst.fill(0.0),
                Stretch::Input { line, first } => {
                    let src = &image[line * width + first..(line + 1) * width];
                    if step == 1 {
                        copy_run(dst, src);
                    } else {
                        dst.iter_mut().zip(src.iter().step_by(step)).for_each(|(d, s)| *d = *s);
                    }
                }
            }
        },
    );
}

/// The adjoint of [`im2col`]: adds the patch matrix's columns back into `image`.
fn col2im(g: &Geometry, cols: &[f32], ld: usize, offset: usize, image: &mut [f32]) {
    if g.is_plain() {
        let ([_, ow], positions) = (g.out, g.positions());
        for (row, start) in g.plain_rows() {
            let src = &cols[row * ld + offset..row * ld + offset + positions];
            for (y, run) in src.chunks_exact(ow).enumerate() {
                add_run(&mut image[start + y * g.width..], run);
            }
        }
        return;
    }
    let (width, step) = (g.width, g.stride[1]);
    for_each_stretch(
        g,
        #[inline(always)]
        |row, columns, stretch| {
            if let Stretch::Input { line, first } = stretch {
                let src = &cols[row * ld + offset..][columns];
                let dst = &mut image[line * width + first..(line + 1) * width];
                if step == 1 {
                    add_run(dst, src);
                } else {
                    dst.iter_mut().step_by(step).zip(src).for_each(|(d, s)| *d += *s);
                }
            }
        },
    );
}

/// Runs of the patch matrix are as long as an output row, a few values in LeNet: copied eight at
/// a time, as fixed-size moves, where a copy of unknown length calls memcpy, whose overhead
/// made im2col cost more than the product.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let src = &src[..dst.len()];
    let (mut dst_chunks, mut src_chunks) = (dst.chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in dst_chunks.by_ref().zip(src_chunks.by_ref()) {
        d.copy_from_slice(s);
    }
    for (d, s) in dst_chunks.into_remainder().iter_mut().zip(src_chunks.remainder()) {
        *d = *s;
    }
}

/// `dst += src` over the first `src.len()` values, eight at a time (see [`copy_run`]).
#[inline(always)]
fn add_run(dst: &mut [f32], src: &[f32]) {
    let (mut dst_chunks, mut src_chunks) = (dst[..src.len()].chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in dst_chunks.by_ref().zip(src_chunks.by_ref()) {
        d.iter_mut().zip(s).for_each(|(d, s)| *d += *s);
    }
    for (d, s) in dst_chunks.into_remainder().iter_mut().zip(src_chunks.remainder()) {
        *d += *s;
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
    if !output.is_empty() {
        // A single image (latency) gets every core inside its product instead.
        let split = batch == 1;
        let sample_len = out_channels * positions;
        output.par_chunks_mut(sample_len).enumerate().for_each(|(sample, out)| {
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
            let image = &x[sample * image..(sample + 1) * image];
            match &tap_rows {
                Some(tap_rows) => taps::add_convolution(&g, tap_rows, image, out, out_channels, split),
                None => with_scratch(rows * positions, |cols| {
                    im2col(&g, image, cols, positions, 0);
                    let (w, c) = (Mat::row_major(weight, rows), Mat::row_major(cols, positions));
                    let accumulate = bias.is_some() || residual.is_some();
                    matmul(out, positions, [out_channels, positions, rows], w, c, accumulate, split);
                }),
            }
            // A select, which vectorizes, and not `max`, which would turn a NaN (a diverged
            // network) into 0.
            if relu {
                out.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
            }
        });
    }
    tensor(output, [batch, out_channels, g.out[0], g.out[1]])
}
