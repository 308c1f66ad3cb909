//! Max pooling without padding. The forward pass keeps no positions: the backward pass finds each
//! maximum again in its window (the first entry equal to the output, in reading order), which
//! costs less than writing and reading the positions, and leaves the forward loop free of
//! anything but maxima, so that it vectorizes. Planes run in parallel.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{contiguous, dims, tensor, values};
use crate::PoolWindow;

/// The 2×2 pool with stride 2 that LeNet-5 and VGG use.
const HALVING: PoolWindow = PoolWindow { kernel: [2, 2], stride: [2, 2], dilation: [1, 1] };

/// Outputs along one axis: the windows that fit inside the input.
fn outputs(size: usize, kernel: usize, stride: usize, dilation: usize) -> usize {
    size.checked_sub(dilation * (kernel - 1) + 1).map_or(0, |room| room / stride + 1)
}

/// The larger of two values, or NaN if either is NaN (as burn's pool).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// 1 where `value` is its window's maximum `m`, else 0. A NaN in the window is the maximum, so
/// a NaN `value` is too. As an integer, so that the choice between positions compiles to
/// arithmetic, not to branches that random data would mispredict.
#[inline(always)]
fn is_max(value: f32, m: f32) -> u32 {
    (value == m) as u32 | value.is_nan() as u32
}

/// `value` where `keep` is 1, else 0, by masking its bits.
#[inline(always)]
fn only(keep: u32, value: f32) -> f32 {
    f32::from_bits(value.to_bits() & keep.wrapping_neg())
}

struct Sizes {
    height: usize,
    width: usize,
    oh: usize,
    ow: usize,
}

impl Sizes {
    fn new([_, _, height, width]: [usize; 4], window: PoolWindow) -> Sizes {
        let PoolWindow { kernel: [kh, kw], stride: [sh, sw], dilation: [dh, dw] } = window;
        Sizes { height, width, oh: outputs(height, kh, sh, dh), ow: outputs(width, kw, sw, dw) }
    }

    /// The input offsets of the output `(y, x)`'s window, in reading order.
    fn window(&self, window: PoolWindow, y: usize, x: usize) -> impl Iterator<Item = usize> {
        let PoolWindow { kernel: [kh, kw], stride: [sh, sw], dilation: [dh, dw] } = window;
        let width = self.width;
        (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (y * sh + ky * dh) * width + x * sw + kx * dw))
    }
}

pub(super) fn forward(x: FlexTensor, window: PoolWindow) -> FlexTensor {
    let x = contiguous(x);
    let x_dims = dims::<4>(&x);
    let [batch, channels, ..] = x_dims;
    let s = Sizes::new(x_dims, window);
    let (plane, pooled) = (s.height * s.width, s.oh * s.ow);
    let mut output = vec![0.0f32; batch * channels * pooled];
    if pooled > 0 {
        output.par_chunks_mut(pooled).zip(values(&x).par_chunks(plane)).for_each(|(output, input)| {
            for (y, row) in output.chunks_exact_mut(s.ow).enumerate() {
                if window == HALVING {
                    let top = 2 * y * s.width;
                    let upper = input[top..top + 2 * s.ow].chunks_exact(2);
                    let lower = input[top + s.width..top + s.width + 2 * s.ow].chunks_exact(2);
                    for ((out, u), l) in row.iter_mut().zip(upper).zip(lower) {
                        *out = max(max(u[0], u[1]), max(l[0], l[1]));
                    }
                } else {
                    for (x, out) in row.iter_mut().enumerate() {
                        *out = s.window(window, y, x).map(|i| input[i]).fold(f32::NEG_INFINITY, max);
                    }
                }
            }
        });
    }
    tensor(output, [batch, channels, s.oh, s.ow])
}

/// The input gradient: each output's gradient at the first position of its window that holds
/// the maximum.
pub(super) fn grads(x: FlexTensor, output: FlexTensor, output_grad: FlexTensor, window: PoolWindow) -> FlexTensor {
    let (x, output, output_grad) = (contiguous(x), contiguous(output), contiguous(output_grad));
    let x_dims = dims::<4>(&x);
    let s = Sizes::new(x_dims, window);
    let (plane, pooled) = (s.height * s.width, s.oh * s.ow);
    let mut input_grad = vec![0.0f32; x_dims.iter().product()];
    if pooled > 0 && plane > 0 {
        let planes = input_grad.par_chunks_mut(plane).zip(values(&x).par_chunks(plane));
        let pooled_planes = values(&output).par_chunks(pooled).zip(values(&output_grad).par_chunks(pooled));
        planes.zip(pooled_planes).for_each(|((input_grad, input), (output, grad))| {
            let rows = output.chunks_exact(s.ow).zip(grad.chunks_exact(s.ow));
            for (y, (maxima, grads)) in rows.enumerate() {
                if window == HALVING {
                    // Each input belongs to one window: its gradient is written, not added, with
                    // selects where a search would branch unpredictably.
                    let top = 2 * y * s.width;
                    let (upper, lower) = input_grad[top..top + 2 * s.width].split_at_mut(s.width);
                    let (upper, lower) = (&mut upper[..2 * s.ow], &mut lower[..2 * s.ow]);
                    let (u, l) = (&input[top..top + 2 * s.ow], &input[top + s.width..top + s.width + 2 * s.ow]);
                    for x in 0..s.ow {
                        let (m, g) = (maxima[x], grads[x]);
                        let first = is_max(u[2 * x], m);
                        let second = (1 - first) & is_max(u[2 * x + 1], m);
                        let third = (1 - first - second) & is_max(l[2 * x], m);
                        let fourth = 1 - first - second - third;
                        upper[2 * x] = only(first, g);
                        upper[2 * x + 1] = only(second, g);
                        lower[2 * x] = only(third, g);
                        lower[2 * x + 1] = only(fourth, g);
                    }
                } else {
                    for (x, (m, g)) in maxima.iter().zip(grads).enumerate() {
                        let at = s.window(window, y, x).find(|&i| is_max(input[i], *m) == 1);
                        if let Some(at) = at {
                            input_grad[at] += *g;
                        }
                    }
                }
            }
        });
    }
    tensor(input_grad, x_dims)
}
