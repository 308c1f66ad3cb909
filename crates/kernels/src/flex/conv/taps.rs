//! A stride-1 convolution with fewer filters than input channels, by taps (kn2row): one product
//! of every filter tap with the input as it lies, then each tap's plane added into the output,
//! shifted by the tap's offset.
//!
//! im2col copies `channels · kh · kw` values per output position before its product; this adds
//! `filters · kh · kw` after it. Which is smaller decides. A network whose filters were pruned
//! (a ResNet block's first conv keeps half its filters and reads the whole residual stream) pays
//! for the copy in proportion to the filters it kept instead of to the channels it reads.

use super::patches::{add_run, inside};
use super::{Geometry, with_scratch};
use crate::flex::{Mat, matmul};

/// Whether the taps cost less than im2col for this convolution.
pub(super) fn pays(g: &Geometry, filters: usize) -> bool {
    g.stride == [1, 1] && filters < g.channels
}

/// The weight `[filters, channels, kh, kw]` rearranged as one row of `channels` values per
/// filter and tap, `(filter, tap)` in row-major order: the left factor of the product.
pub(super) fn tap_rows(weight: &[f32], [filters, channels, kh, kw]: [usize; 4]) -> Vec<f32> {
    let taps = kh * kw;
    let mut rows = vec![0.0; filters * taps * channels];
    for (f, filter) in weight.chunks_exact(channels * taps).enumerate() {
        for (c, kernel) in filter.chunks_exact(taps).enumerate() {
            for (t, &w) in kernel.iter().enumerate() {
                rows[(f * taps + t) * channels + c] = w;
            }
        }
    }
    rows
}

/// Adds the convolution of one `image` to `out` `[filters, oh · ow]`. With `split`, the product
/// spreads over the cores (one image: latency).
pub(super) fn add_convolution(g: &Geometry, rows: &[f32], image: &[f32], out: &mut [f32], filters: usize, split: bool) {
    let [kh, kw] = g.kernel;
    let (taps, plane) = (kh * kw, g.height * g.width);
    let positions = g.positions();
    if positions == 0 || filters == 0 {
        return;
    }
    with_scratch(filters * taps * plane, |products| {
        let (lhs, rhs) = (Mat::row_major(rows, g.channels), Mat::row_major(image, plane));
        matmul(products, plane, [filters * taps, plane, g.channels], lhs, rhs, false, split);
        // The additions stay on one core even for one image: handing them to another cost more
        // than they take.
        for (f, out) in out.chunks_mut(positions).enumerate() {
            add_taps(g, &products[f * taps * plane..][..taps * plane], out);
        }
    });
}

/// `out[y, x] += Σ over taps (i, j) of tap_plane[y + i·dy - top, x + j·dx - left]`, inside the
/// input.
fn add_taps(g: &Geometry, tap_planes: &[f32], out: &mut [f32]) {
    let ([kh, kw], [oh, ow], plane) = (g.kernel, g.out, g.height * g.width);
    for i in 0..kh {
        let offset_y = i * g.dilation[0];
        let ys = inside(offset_y, g.padding[0], 1, g.height, oh);
        for j in 0..kw {
            let offset_x = j * g.dilation[1];
            let xs = inside(offset_x, g.padding[1], 1, g.width, ow);
            if xs.is_empty() {
                continue;
            }
            let tap_plane = &tap_planes[(i * kw + j) * plane..][..plane];
            let source_x = xs.start + offset_x - g.padding[1];
            for y in ys.clone() {
                let source_y = y + offset_y - g.padding[0];
                let src = &tap_plane[source_y * g.width + source_x..][..xs.len()];
                add_run(&mut out[y * ow + xs.start..], src);
            }
        }
    }
}
