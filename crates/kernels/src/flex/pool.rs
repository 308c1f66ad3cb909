//! Max pooling without padding. The forward pass records, per output, which position of its
//! window held the maximum (one byte), and the backward pass writes each output's gradient
//! there. Both choose with integer arithmetic instead of branches, which random data mispredicts
//! (that made a first version ten times slower). Planes run in parallel.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, DType};
use burn::prelude::Shape;
use rayon::prelude::*;

use super::{contiguous, dims, tensor, values};
use crate::PoolWindow;

/// The 2×2 pool with stride 2 that LeNet-5 and VGG use, which has loops of its own.
const HALVING: PoolWindow = PoolWindow { kernel: [2, 2], stride: [2, 2], dilation: [1, 1] };

/// f32 inputs, and windows whose positions fit in a byte.
pub(super) fn handles(x: &FlexTensor, window: PoolWindow) -> bool {
    x.dtype() == DType::F32 && window.kernel[0] * window.kernel[1] <= 256
}

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
/// a NaN `value` is too.
#[inline(always)]
fn is_max(value: f32, m: f32) -> u8 {
    (value == m) as u8 | value.is_nan() as u8
}

/// `value` where `keep` holds, else 0, by masking its bits.
#[inline(always)]
fn only(keep: bool, value: f32) -> f32 {
    f32::from_bits(value.to_bits() & (keep as u32).wrapping_neg())
}

struct Sizes {
    plane: usize,
    width: usize,
    oh: usize,
    ow: usize,
}

impl Sizes {
    fn new([_, _, height, width]: [usize; 4], window: PoolWindow) -> Sizes {
        let PoolWindow { kernel: [kh, kw], stride: [sh, sw], dilation: [dh, dw] } = window;
        Sizes { plane: height * width, width, oh: outputs(height, kh, sh, dh), ow: outputs(width, kw, sw, dw) }
    }

    fn pooled(&self) -> usize {
        self.oh * self.ow
    }

    /// The input offsets of output `(y, x)`'s window, in reading order.
    fn window(&self, window: PoolWindow, y: usize, x: usize) -> impl Iterator<Item = usize> {
        let PoolWindow { kernel: [kh, kw], stride: [sh, sw], dilation: [dh, dw] } = window;
        let width = self.width;
        (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (y * sh + ky * dh) * width + x * sw + kx * dw))
    }
}

/// The pooled tensor and, when `record`, the position within its window of each maximum (the
/// first, in reading order) as a u8 tensor.
pub(super) fn forward(x: FlexTensor, window: PoolWindow, record: bool) -> (FlexTensor, Option<FlexTensor>) {
    let x = contiguous(x);
    let x_dims = dims::<4>(&x);
    let [batch, channels, ..] = x_dims;
    let s = Sizes::new(x_dims, window);
    let mut output = vec![0.0f32; batch * channels * s.pooled()];
    let mut positions = vec![0u8; if record { output.len() } else { 0 }];
    if s.pooled() > 0 {
        let planes = values(&x).par_chunks(s.plane).zip(output.par_chunks_mut(s.pooled()));
        let pool = |((input, output), positions): ((&[f32], &mut [f32]), &mut [u8])| {
            for (y, row) in output.chunks_exact_mut(s.ow).enumerate() {
                let positions = (!positions.is_empty()).then(|| &mut positions[y * s.ow..(y + 1) * s.ow]);
                if window == HALVING {
                    halve(input, s.width, y, row, positions);
                } else {
                    for (x, out) in row.iter_mut().enumerate() {
                        *out = s.window(window, y, x).map(|i| input[i]).fold(f32::NEG_INFINITY, max);
                    }
                    if let Some(positions) = positions {
                        for (x, (m, at)) in row.iter().zip(positions).enumerate() {
                            *at = s.window(window, y, x).position(|i| is_max(input[i], *m) == 1).unwrap_or(0) as u8;
                        }
                    }
                }
            }
        };
        if record {
            planes.zip(positions.par_chunks_mut(s.pooled())).for_each(pool);
        } else {
            planes.for_each(|planes| pool((planes, &mut [])));
        }
    }
    let shape = Shape::new([batch, channels, s.oh, s.ow]);
    let positions =
        record.then(|| FlexTensor::new(Bytes::from_elems(positions), Layout::contiguous(shape.clone()), DType::U8));
    (tensor(output, shape), positions)
}

/// Output row `y` of a [`HALVING`] pool, and where each maximum was: 0 and 1 in the upper input
/// row, 2 and 3 in the lower.
fn halve(input: &[f32], width: usize, y: usize, row: &mut [f32], positions: Option<&mut [u8]>) {
    let top = 2 * y * width;
    let upper = input[top..top + 2 * row.len()].chunks_exact(2);
    let lower = input[top + width..top + width + 2 * row.len()].chunks_exact(2);
    let windows = upper.zip(lower);
    match positions {
        None => row.iter_mut().zip(windows).for_each(|(out, (u, l))| *out = max(max(u[0], u[1]), max(l[0], l[1]))),
        Some(positions) => {
            for ((out, at), (u, l)) in row.iter_mut().zip(positions).zip(windows) {
                let m = max(max(u[0], u[1]), max(l[0], l[1]));
                let (first, second, third) = (is_max(u[0], m), is_max(u[1], m), is_max(l[0], m));
                *out = m;
                *at = (1 - first) * (1 + (1 - second) * (1 + (1 - third)));
            }
        }
    }
}

/// The input gradient: each output's gradient at its maximum.
pub(super) fn grads(
    x_dims: [usize; 4],
    positions: FlexTensor,
    output_grad: FlexTensor,
    window: PoolWindow,
) -> FlexTensor {
    let (positions, output_grad) = (positions.to_contiguous(), contiguous(output_grad));
    let s = Sizes::new(x_dims, window);
    let mut input_grad = vec![0.0f32; x_dims.iter().product()];
    if s.pooled() > 0 && s.plane > 0 {
        let positions = positions.as_slice::<u8>().expect("positions are a contiguous u8 tensor");
        let planes = input_grad.par_chunks_mut(s.plane).zip(values(&output_grad).par_chunks(s.pooled()));
        planes.zip(positions.par_chunks(s.pooled())).for_each(|((input_grad, grad), positions)| {
            let rows = grad.chunks_exact(s.ow).zip(positions.chunks_exact(s.ow));
            for (y, (grads, positions)) in rows.enumerate() {
                if window == HALVING {
                    // Each input belongs to one window, so its gradient is written, not added.
                    let top = 2 * y * s.width;
                    let (upper, lower) = input_grad[top..top + 2 * s.width].split_at_mut(s.width);
                    let cells = upper.chunks_exact_mut(2).zip(lower.chunks_exact_mut(2));
                    for ((g, at), (u, l)) in grads.iter().zip(positions).zip(cells) {
                        u[0] = only(*at == 0, *g);
                        u[1] = only(*at == 1, *g);
                        l[0] = only(*at == 2, *g);
                        l[1] = only(*at == 3, *g);
                    }
                } else {
                    for (x, (g, at)) in grads.iter().zip(positions).enumerate() {
                        let i = s.window(window, y, x).nth(*at as usize).expect("a position inside the window");
                        input_grad[i] += *g;
                    }
                }
            }
        });
    }
    tensor(input_grad, x_dims)
}
