//! One layer over one tile of images. Activations are `[features][tile]`: feature-major with the
//! tile's images side by side, so that a weight multiplies a contiguous run of `tile` (linear) or
//! `width x tile` (convolution) values, which the compiler turns into vector instructions. The
//! same loops serve CSR and dense weights; only where the entries come from differs.

use crate::model::Layer;
use crate::weights::Weights;

/// How many images a tile holds. Each width is its own compiled kernel, so the accumulators of
/// a linear layer's row live in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TileWidth {
    One,
    Narrow,
    Wide,
}

impl TileWidth {
    pub(crate) fn images(self) -> usize {
        match self {
            TileWidth::One => 1,
            TileWidth::Narrow => 8,
            TileWidth::Wide => 32,
        }
    }
}

/// `x` holds the layer's input `[input features][tile]`; `y` receives its output.
/// `padded` is room for a padded convolution's input.
pub(crate) fn layer(
    layer: &Layer,
    input: [usize; 3],
    width: TileWidth,
    x: &[f32],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) {
    match width {
        TileWidth::One => with_cpu_features::<1>(layer, input, x, y, padded),
        TileWidth::Narrow => with_cpu_features::<8>(layer, input, x, y, padded),
        TileWidth::Wide => with_cpu_features::<32>(layer, input, x, y, padded),
    }
}

/// The widest vector instructions this CPU has, chosen at run time, so that one binary runs
/// everywhere and uses AVX-512 where it exists.
fn with_cpu_features<const T: usize>(
    layer: &Layer,
    input: [usize; 3],
    x: &[f32],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has just been found to support every feature the function enables.
            return unsafe { x86::avx512::<T>(layer, input, x, y, padded) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { x86::avx2::<T>(layer, input, x, y, padded) };
        }
    }
    run::<T, Baseline>(layer, input, x, y, padded)
}

/// Reads 8 rows of 8 values (`src[r * src_stride..][..8]`) and writes them as 8 columns of
/// `dst` (`dst[c * dst_stride..][..8]`).
pub(crate) fn transpose8(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    assert!(src.len() >= 7 * src_stride + 8 && dst.len() >= 7 * dst_stride + 8, "an 8 x 8 block fits");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is present, and both blocks lie inside their slices (asserted above).
        return unsafe { x86::transpose8(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride) };
    }
    for r in 0..8 {
        for c in 0..8 {
            dst[c * dst_stride + r] = src[r * src_stride + c];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Fused, Layer, run};

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn avx512<const T: usize>(
        layer: &Layer,
        input: [usize; 3],
        x: &[f32],
        y: &mut [f32],
        padded: &mut Vec<f32>,
    ) {
        run::<T, Fused>(layer, input, x, y, padded)
    }

    /// The textbook AVX 8 x 8 transpose: interleave pairs of rows, then pairs of pairs, then
    /// swap 128-bit halves.
    ///
    /// # Safety
    /// The CPU has AVX; `src` has 8 rows of 8 readable values `src_stride` apart, `dst` 8 rows of
    /// 8 writable values `dst_stride` apart.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract covers every address read and written.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
            let t = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let s = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            for k in 0..4 {
                _mm256_storeu_ps(dst.add(k * dst_stride), _mm256_permute2f128_ps::<0x20>(s[k], s[k + 4]));
                _mm256_storeu_ps(dst.add((k + 4) * dst_stride), _mm256_permute2f128_ps::<0x31>(s[k], s[k + 4]));
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2<const T: usize>(
        layer: &Layer,
        input: [usize; 3],
        x: &[f32],
        y: &mut [f32],
        padded: &mut Vec<f32>,
    ) {
        run::<T, Fused>(layer, input, x, y, padded)
    }
}

/// `a * b + c`: one fused instruction where the CPU has FMA, else a multiply and an add
/// (`mul_add` without FMA would call a slow software routine).
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

#[allow(dead_code)] // unused on CPUs other than x86-64 and aarch64
struct Fused;
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

#[cfg(not(target_arch = "aarch64"))]
struct Baseline;
#[cfg(not(target_arch = "aarch64"))]
impl MulAdd for Baseline {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}
/// FMA is part of aarch64's base instruction set.
#[cfg(target_arch = "aarch64")]
type Baseline = Fused;

#[inline(always)]
fn run<const T: usize, M: MulAdd>(layer: &Layer, input: [usize; 3], x: &[f32], y: &mut [f32], padded: &mut Vec<f32>) {
    match layer {
        Layer::Linear { weights, bias, relu, .. } => linear::<T, M>(weights, bias, *relu, x, y),
        Layer::Conv { weights, bias, kernel, padding, relu, .. } => {
            conv::<T, M>(weights, bias, input, *kernel, *padding, *relu, x, y, padded)
        }
        Layer::MaxPool { kernel, stride } => max_pool::<T>(input, *kernel, *stride, x, y),
    }
}

#[inline(always)]
fn finish(out: &mut [f32], bias: f32, relu: bool) {
    for v in out {
        let b = *v + bias;
        *v = if relu { b.max(0.0) } else { b };
    }
}

#[inline(always)]
fn linear<const T: usize, M: MulAdd>(weights: &Weights, bias: &[f32], relu: bool, x: &[f32], y: &mut [f32]) {
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

/// Convolution (stride 1) as one sparse dot product per filter and output pixel. With the
/// input laid out `[channel][row][column][tile]` and zero-padded, the input under kernel entry
/// (c, i, j) sits at a fixed distance from the patch's corner, whatever the output pixel: so the
/// kept entries' distances are computed once per call, and each output pixel is the linear
/// layer's product with its corner as the base. No im2col copy is made.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv<const T: usize, M: MulAdd>(
    weights: &Weights,
    bias: &[f32],
    [channels, height, width]: [usize; 3],
    [kh, kw]: [usize; 2],
    [ph, pw]: [usize; 2],
    relu: bool,
    x: &[f32],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) {
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
    let distance = |column: usize| ((column / (kh * kw) * hp + column / kw % kh) * wp + column % kw) as u32;
    let (out_h, out_w) = (hp + 1 - kh, wp + 1 - kw);
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
            if T == 1 && out_w >= 8 {
                // One image: neighbouring output pixels read neighbouring inputs, so a run of
                // them is the vector instead (the last run overlaps the one before).
                let mut ox = 0;
                while ox < out_w {
                    if out_w - ox >= 16 || out_w >= 16 {
                        let start = ox.min(out_w - 16);
                        let acc = run_product::<16, M>(at, values, &x[oy * wp + start..]);
                        out[oy * out_w + start..][..16].copy_from_slice(&acc);
                        ox = start + 16;
                    } else {
                        let start = ox.min(out_w - 8);
                        let acc = run_product::<8, M>(at, values, &x[oy * wp + start..]);
                        out[oy * out_w + start..][..8].copy_from_slice(&acc);
                        ox = start + 8;
                    }
                }
                continue;
            }
            for ox in 0..out_w {
                let corner = &x[(oy * wp + ox) * T..];
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
    let full = values.len() / 4 * 4;
    for e in (0..full).step_by(4) {
        for (k, acc) in acc.iter_mut().enumerate() {
            axpy::<W, M>(acc, values[e + k], &x[start(e + k)..][..W]);
        }
    }
    for e in full..values.len() {
        axpy::<W, M>(&mut acc[0], values[e], &x[start(e)..][..W]);
    }
    std::array::from_fn(|t| (acc[0][t] + acc[1][t]) + (acc[2][t] + acc[3][t]))
}

#[inline(always)]
fn max_pool<const T: usize>(
    [channels, height, width]: [usize; 3],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    x: &[f32],
    y: &mut [f32],
) {
    let (out_h, out_w) = ((height - kh) / sh + 1, (width - kw) / sw + 1);
    for c in 0..channels {
        for oy in 0..out_h {
            for ox in 0..out_w {
                let mut max = [f32::NEG_INFINITY; T];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = &x[((c * height + oy * sh + ky) * width + ox * sw + kx) * T..][..T];
                        for (m, &s) in max.iter_mut().zip(src) {
                            // Not f32::max: its NaN rule costs instructions, and the inputs are
                            // finite (weights are checked on load).
                            *m = if s > *m { s } else { *m };
                        }
                    }
                }
                y[((c * out_h + oy) * out_w + ox) * T..][..T].copy_from_slice(&max);
            }
        }
    }
}
