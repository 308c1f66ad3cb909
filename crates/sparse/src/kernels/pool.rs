//! Pooling windows, over every image of the tile at once: each step reads `T` neighbouring
//! values, one per image.

use std::ops::Range;

use super::{Kernel, MulAdd, Window};

/// The input rows (or columns) under output `o`'s window along one side of `n`: the window
/// clipped to the input, since padded cells add nothing (-inf to a max, zero to a sum).
#[inline(always)]
fn under(o: usize, stride: usize, padding: usize, kernel: usize, n: usize) -> Range<usize> {
    let start = o * stride;
    start.saturating_sub(padding)..(start + kernel).saturating_sub(padding).min(n)
}

/// `fold` over each window's input cells, `[f32; T]` at a time, starting from `init`; `finish`
/// turns the accumulated window into the output.
#[inline(always)]
fn pool<const T: usize>(
    input: [usize; 3],
    window: Window,
    x: &[f32],
    y: &mut [f32],
    init: f32,
    fold: impl Fn(&mut [f32; T], &[f32]),
    finish: impl Fn(&mut [f32; T]),
) {
    // Unpadded windows, the common case, skip the clipping arithmetic: at one image a 2x2 max
    // pool does little else.
    if window.padding == [0, 0] {
        windows::<T, false>(input, window, x, y, init, fold, finish)
    } else {
        windows::<T, true>(input, window, x, y, init, fold, finish)
    }
}

#[inline(always)]
fn windows<const T: usize, const CLIP: bool>(
    [channels, height, width]: [usize; 3],
    window: Window,
    x: &[f32],
    y: &mut [f32],
    init: f32,
    fold: impl Fn(&mut [f32; T], &[f32]),
    finish: impl Fn(&mut [f32; T]),
) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (window.kernel, window.stride, window.padding);
    let [out_h, out_w] = window.output([height, width]);
    for c in 0..channels {
        for oy in 0..out_h {
            let rows = if CLIP { under(oy, sh, ph, kh, height) } else { oy * sh..oy * sh + kh };
            for ox in 0..out_w {
                let columns = if CLIP { under(ox, sw, pw, kw, width) } else { ox * sw..ox * sw + kw };
                let mut acc = [init; T];
                for r in rows.clone() {
                    for column in columns.clone() {
                        fold(&mut acc, &x[((c * height + r) * width + column) * T..][..T]);
                    }
                }
                finish(&mut acc);
                y[((c * out_h + oy) * out_w + ox) * T..][..T].copy_from_slice(&acc);
            }
        }
    }
}

pub(super) struct Max<'a> {
    pub input: [usize; 3],
    pub window: Window,
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl Kernel for Max<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let fold = |max: &mut [f32; T], src: &[f32]| {
            for (m, &s) in max.iter_mut().zip(src) {
                // A NaN wins and stays, as in burn's max-pool: an input that went wrong must
                // not come out as a plausible number. (f32::max would drop it.)
                *m = if s > *m || s.is_nan() { s } else { *m };
            }
        };
        pool::<T>(self.input, self.window, self.x, self.y, f32::NEG_INFINITY, fold, |_| {});
    }
}

pub(super) struct Average<'a> {
    pub input: [usize; 3],
    pub window: Window,
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl Kernel for Average<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let fold = |sum: &mut [f32; T], src: &[f32]| {
            for (s, &v) in sum.iter_mut().zip(src) {
                *s += v;
            }
        };
        // PyTorch's count_include_pad: padded cells count, so every window divides by its size.
        let divisor = (self.window.kernel[0] * self.window.kernel[1]) as f32;
        let finish = |sum: &mut [f32; T]| sum.iter_mut().for_each(|s| *s /= divisor);
        pool::<T>(self.input, self.window, self.x, self.y, 0.0, fold, finish);
    }
}

pub(super) struct GlobalAverage<'a> {
    pub input: [usize; 3],
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl Kernel for GlobalAverage<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let [channels, height, width] = self.input;
        let cells = height * width;
        for (plane, out) in self.x.chunks_exact(cells * T).zip(self.y.chunks_exact_mut(T)).take(channels) {
            let mut sum = [0.0f32; T];
            for cell in plane.chunks_exact(T) {
                for (s, &v) in sum.iter_mut().zip(cell) {
                    *s += v;
                }
            }
            for (o, s) in out.iter_mut().zip(sum) {
                *o = s / cells as f32;
            }
        }
    }
}
