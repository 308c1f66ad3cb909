//! The input's gradient of a padded stride-1 convolution (VGG's and ResNet's 3x3, a bottleneck's
//! 1x1) as one product per kernel tap, added straight into the padded image. Tap `(i, j)` sends
//! the output's gradient back through the filters' weights at `(i, j)` into the image shifted by
//! `i` rows and `j` columns, which in the padded image is a matrix with rows `hp · wp` apart: the
//! gradient is spread on a grid as wide as the padded image, zero in the columns past the
//! output's width. No patch matrix is written or read (col2im added every value back `kh · kw`
//! times). The forward pass and the weight's gradient keep the patch matrix: taken by taps, their
//! products are short (as many terms as channels) or thin (filters by channels), and measured
//! slower.

use rayon::prelude::*;

use super::patches::{add_run, padded_rows, with_padded};
use super::{Geometry, TRANSPOSE_BELOW, with_scratch};
use crate::flex::{Mat, product};

/// Whether a convolution goes by taps on its padded image: stride 1, no dilation, and padding
/// (LeNet's valid 5x5 convolutions keep their tuned patch matrix) or a 1x1 kernel.
pub(super) fn pays(g: &Geometry) -> bool {
    g.stride == [1, 1] && g.dilation == [1, 1] && (g.padding != [0, 0] || g.kernel == [1, 1])
}

/// Sizes of the wide grid: `(wide, plane, taps)`, `wide` the outputs of one filter on it.
fn grid(g: &Geometry) -> (usize, usize, usize) {
    let [hp, wp] = g.padded();
    (g.out[0] * wp, hp * wp, g.kernel[0] * g.kernel[1])
}

/// Where tap `t`'s shifted image starts in the padded image.
fn shift(g: &Geometry, t: usize) -> usize {
    (t / g.kernel[1]) * g.padded()[1] + t % g.kernel[1]
}

/// One sample's output gradient on the wide grid, zero in the columns thrown away (so that they
/// add nothing), into `wide_grad` `[filters, wide]`.
fn widen(g: &Geometry, grad: &[f32], wide_grad: &mut [f32]) {
    let ([oh, ow], wp) = (g.out, g.padded()[1]);
    for (plane, wide) in grad.chunks_exact(oh * ow).zip(wide_grad.chunks_exact_mut(oh * wp)) {
        for (row, wide_row) in plane.chunks_exact(ow).zip(wide.chunks_exact_mut(wp)) {
            wide_row[..ow].copy_from_slice(row);
            wide_row[ow..].fill(0.0);
        }
    }
}

/// Per sample, `Σ over taps of the weight at the tap ᵀ · grad`, added into the padded image
/// shifted by the tap, whose inside is the input's gradient.
pub(super) fn input_grad(g: &Geometry, weight: &[f32], grad: &[f32], batch: usize, filters: usize) -> Vec<f32> {
    let (wide, plane, taps) = grid(g);
    let (channels, image, per_sample) = (g.channels, g.image(), filters * g.positions());
    let mut input = vec![0.0; batch * image];
    if image == 0 {
        return input;
    }
    input.par_chunks_mut(image).enumerate().for_each(|(sample, input)| {
        with_padded(g, |padded| {
            with_scratch(filters * wide, |wide_grad| {
                widen(g, &grad[sample * per_sample..(sample + 1) * per_sample], wide_grad);
                for t in 0..taps {
                    let (dst, weight) = (&mut padded[shift(g, t)..], &weight[t..]);
                    if channels < TRANSPOSE_BELOW {
                        // Positions by channels, for gemm's tall tiles (see `TRANSPOSE_BELOW`).
                        let (lhs, rhs) =
                            (Mat::strided(wide_grad, [1, wide]), Mat::strided(weight, [channels * taps, taps]));
                        product(dst, [1, plane], lhs, rhs, [wide, channels, filters], true);
                    } else {
                        let (lhs, rhs) =
                            (Mat::strided(weight, [taps, channels * taps]), Mat::strided(wide_grad, [wide, 1]));
                        product(dst, [plane, 1], lhs, rhs, [channels, wide, filters], true);
                    }
                }
            });
            for (to, from) in padded_rows(g) {
                add_run(&mut input[to..], &padded[from..from + g.width]);
            }
        })
    });
    input
}
