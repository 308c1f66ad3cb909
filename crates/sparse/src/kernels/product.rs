//! Linear and convolution layers: products of the kept weights with the activations.

use super::{Kernel, MulAdd, Window, relu};
use crate::weights::Weights;

#[inline(always)]
fn finish(out: &mut [f32], bias: f32, apply_relu: bool) {
    for v in out {
        let b = *v + bias;
        *v = if apply_relu { relu(b) } else { b };
    }
}

pub(super) struct Linear<'a> {
    pub weights: &'a Weights,
    pub bias: &'a [f32],
    pub relu: bool,
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl Kernel for Linear<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let Linear { weights, bias, relu, x, y } = self;
        for (o, out) in y.chunks_exact_mut(T).enumerate() {
            let mut acc = [0.0f32; T];
            match weights {
                Weights::Csr(m) => {
                    let entries = m.row_offsets[o] as usize..m.row_offsets[o + 1] as usize;
                    acc = product::<T, M>(&m.columns[entries.clone()], &m.values[entries], x);
                }
                Weights::Dense(m) => {
                    let row = &m.values[o * m.cols..][..m.cols];
                    if T == 1 {
                        acc[0] = dense_dot::<M>(row, x);
                    } else {
                        acc = weighted_runs::<T, M>(row, |c| c * T, x);
                    }
                }
            }
            out.copy_from_slice(&acc);
            finish(out, bias[o], relu);
        }
    }
}

#[inline(always)]
fn axpy<const T: usize, M: MulAdd>(acc: &mut [f32; T], v: f32, x: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a = M::mul_add(v, x, *a);
    }
}

/// One image's row: four partial sums, so that consecutive entries do not wait for each other.
#[inline(always)]
fn sparse_dot<M: MulAdd>(columns: &[u32], values: &[f32], x: &[f32]) -> f32 {
    let mut sums = [0.0f32; 4];
    let (columns4, values4) = (columns.chunks_exact(4), values.chunks_exact(4));
    let rest: f32 = columns4.remainder().iter().zip(values4.remainder()).map(|(&c, &v)| v * x[c as usize]).sum();
    for (c, v) in columns4.zip(values4) {
        for k in 0..4 {
            sums[k] = M::mul_add(v[k], x[c[k] as usize], sums[k]);
        }
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + rest
}

/// One image's dense row, in 16 lanes that the compiler keeps in vector registers.
#[inline(always)]
fn dense_dot<M: MulAdd>(row: &[f32], x: &[f32]) -> f32 {
    let mut sums = [0.0f32; 16];
    let (row16, x16) = (row.chunks_exact(16), x[..row.len()].chunks_exact(16));
    let rest: f32 = row16.remainder().iter().zip(x16.remainder()).map(|(w, x)| w * x).sum();
    for (w, x) in row16.zip(x16) {
        for k in 0..16 {
            sums[k] = M::mul_add(w[k], x[k], sums[k]);
        }
    }
    sums.iter().sum::<f32>() + rest
}

/// Convolution as one sparse dot product per filter and output pixel. With the input laid out
/// `[channel][row][column][tile]` and zero-padded, the input under kernel entry (c, i, j) sits at
/// a fixed distance from the patch's corner, whatever the output pixel: so the kept entries'
/// distances are computed once per call, and each output pixel is the linear layer's product
/// with its corner as the base. No im2col copy is made.
pub(super) struct Conv<'a> {
    pub weights: &'a Weights,
    pub bias: &'a [f32],
    pub input: [usize; 3],
    pub window: Window,
    pub relu: bool,
    pub x: &'a [f32],
    pub y: &'a mut [f32],
    /// Room for the padded input.
    pub padded: &'a mut Vec<f32>,
}

impl Kernel for Conv<'_> {
    #[inline(always)]
    fn run<const T: usize, M: MulAdd>(self) {
        let Conv { weights, bias, input, window, relu, x, y, padded } = self;
        conv::<T, M>(weights, bias, input, window, relu, x, y, padded);
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv<const T: usize, M: MulAdd>(
    weights: &Weights,
    bias: &[f32],
    [channels, height, width]: [usize; 3],
    window: Window,
    relu: bool,
    x: &[f32],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (window.kernel, window.stride, window.padding);
    let (hp, wp) = (height + 2 * ph, width + 2 * pw);
    let x = if ph == 0 && pw == 0 {
        x
    } else {
        padded.clear();
        padded.resize(channels * hp * wp * T, 0.0);
        for (c, plane) in x.chunks_exact(height * width * T).enumerate() {
            for (r, row) in plane.chunks_exact(width * T).enumerate() {
                padded[((c * hp + r + ph) * wp + pw) * T..][..width * T].copy_from_slice(row);
            }
        }
        &padded[..]
    };
    // Fits in u32: `Layer::output` refuses padded inputs of more values.
    let distance = |column: usize| ((column / (kh * kw) * hp + column / kw % kh) * wp + column % kw) as u32;
    let [out_h, out_w] = window.output([height, width]);
    let distances: Vec<u32> = match weights {
        Weights::Csr(m) => m.columns.iter().map(|&c| distance(c as usize)).collect(),
        Weights::Dense(m) => (0..m.cols).map(distance).collect(),
    };
    for (o, out) in y.chunks_exact_mut(out_h * out_w * T).enumerate() {
        let (at, values) = match weights {
            Weights::Csr(m) => {
                let entries = m.row_offsets[o] as usize..m.row_offsets[o + 1] as usize;
                (&distances[entries.clone()], &m.values[entries])
            }
            Weights::Dense(m) => (&distances[..], &m.values[o * m.cols..][..m.cols]),
        };
        for oy in 0..out_h {
            let row = oy * sh * wp;
            if T == 1 && sw == 1 && out_w >= 8 {
                // One image: neighbouring output pixels read neighbouring inputs (when the
                // window steps one column at a time), so a run of them is the vector instead
                // (the last run overlaps the one before).
                let mut ox = 0;
                while ox < out_w {
                    if out_w - ox >= 16 || out_w >= 16 {
                        let start = ox.min(out_w - 16);
                        let acc = run_product::<16, M>(at, values, &x[row + start..]);
                        out[oy * out_w + start..][..16].copy_from_slice(&acc);
                        ox = start + 16;
                    } else {
                        let start = ox.min(out_w - 8);
                        let acc = run_product::<8, M>(at, values, &x[row + start..]);
                        out[oy * out_w + start..][..8].copy_from_slice(&acc);
                        ox = start + 8;
                    }
                }
                continue;
            }
            for ox in 0..out_w {
                let corner = &x[(row + ox * sw) * T..];
                let acc = product::<T, M>(at, values, corner);
                out[(oy * out_w + ox) * T..][..T].copy_from_slice(&acc);
            }
        }
        finish(out, bias[o], relu);
    }
}

/// The sum of `values[e] * x[at[e] + k]` over the entries, for `W` neighbouring outputs `k`.
#[inline(always)]
fn run_product<const W: usize, M: MulAdd>(at: &[u32], values: &[f32], x: &[f32]) -> [f32; W] {
    weighted_runs::<W, M>(values, |e| at[e] as usize, x)
}

/// The sum of `values[e] * x[at[e] * T + t]` over the entries, for each image `t` of the tile.
#[inline(always)]
fn product<const T: usize, M: MulAdd>(at: &[u32], values: &[f32], x: &[f32]) -> [f32; T] {
    if T == 1 {
        let mut acc = [0.0f32; T];
        acc[0] = sparse_dot::<M>(at, values, x);
        return acc;
    }
    weighted_runs::<T, M>(values, |e| at[e] as usize * T, x)
}

/// The sum over entries `e` of `values[e]` times the `W` values of `x` from `start(e)`. Four
/// entries at a time go to four accumulators, so that each fused multiply-add does not wait for
/// the one before (their latency, not their number, would set the pace).
#[inline(always)]
fn weighted_runs<const W: usize, M: MulAdd>(values: &[f32], start: impl Fn(usize) -> usize, x: &[f32]) -> [f32; W] {
    let mut acc = [[0.0f32; W]; 4];
    let fours = values.chunks_exact(4);
    let full = values.len() - fours.remainder().len();
    for (e, four) in (0..full).step_by(4).zip(fours) {
        for (k, acc) in acc.iter_mut().enumerate() {
            axpy::<W, M>(acc, four[k], &x[start(e + k)..][..W]);
        }
    }
    for e in full..values.len() {
        axpy::<W, M>(&mut acc[0], values[e], &x[start(e)..][..W]);
    }
    std::array::from_fn(|t| (acc[0][t] + acc[1][t]) + (acc[2][t] + acc[3][t]))
}
