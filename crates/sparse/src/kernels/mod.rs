//! One layer over one tile of images. Activations are `[features][tile]`: feature-major with the
//! tile's images side by side, so that a weight multiplies a contiguous run of `tile` (linear) or
//! `width x tile` (convolution) values, which the compiler turns into vector instructions. The
//! same loops serve CSR and dense weights; only where the entries come from differs. Every kernel
//! is compiled once per tile width and once per instruction set (see `with_cpu_features`).

pub use coppice_simd::Simd;

mod elementwise;
mod pool;
mod product;

use crate::layer::Layer;

/// Widest tile first: a batch is cut into tiles of this many images, and each tile goes through
/// the whole network while its activations stay in cache.
pub(crate) const WIDE: usize = 32;

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
            TileWidth::Wide => WIDE,
        }
    }
}

/// `xs` holds the layer's inputs `[input features][tile]`, each of shape `input` (one, or an
/// add's several); `y` receives its output. `padded` is room for a padded convolution's input.
pub(crate) fn layer(
    layer: &Layer,
    input: [usize; 3],
    width: TileWidth,
    simd: Simd,
    xs: &[&[f32]],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) {
    match width {
        TileWidth::One => layer_of_width::<1>(layer, input, simd, xs, y, padded),
        TileWidth::Narrow => layer_of_width::<8>(layer, input, simd, xs, y, padded),
        TileWidth::Wide => layer_of_width::<32>(layer, input, simd, xs, y, padded),
    }
}

fn layer_of_width<const T: usize>(
    layer: &Layer,
    input: [usize; 3],
    simd: Simd,
    xs: &[&[f32]],
    y: &mut [f32],
    padded: &mut Vec<f32>,
) {
    let x = xs[0];
    let window = |kernel: &[usize; 2], stride: &[usize; 2], padding: &[usize; 2]| Window {
        kernel: *kernel,
        stride: *stride,
        padding: *padding,
    };
    match layer {
        Layer::Linear { weights, bias, relu, .. } => {
            with_cpu_features::<T, _>(simd, product::Linear { weights, bias, relu: *relu, x, y })
        }
        Layer::Conv { weights, bias, kernel, stride, padding, relu, .. } => {
            let window = window(kernel, stride, padding);
            with_cpu_features::<T, _>(simd, product::Conv { weights, bias, input, window, relu: *relu, x, y, padded })
        }
        Layer::MaxPool { kernel, stride, padding } => {
            with_cpu_features::<T, _>(simd, pool::Max { input, window: window(kernel, stride, padding), x, y })
        }
        Layer::AvgPool { kernel, stride, padding } => {
            with_cpu_features::<T, _>(simd, pool::Average { input, window: window(kernel, stride, padding), x, y })
        }
        Layer::GlobalAvgPool => with_cpu_features::<T, _>(simd, pool::GlobalAverage { input, x, y }),
        Layer::Affine { scale, shift, relu, .. } => {
            with_cpu_features::<T, _>(simd, elementwise::Affine { input, scale, shift, relu: *relu, x, y })
        }
        Layer::Add { relu } => with_cpu_features::<T, _>(simd, elementwise::Add { xs, relu: *relu, y }),
        Layer::Relu => with_cpu_features::<T, _>(simd, elementwise::Relu { x, y }),
    }
}

/// One layer's work with its arguments. Each kernel is its own function per tile width and
/// instruction set, so that its loops have the registers to themselves: inlined into one
/// function with every other kernel, the one-image sparse row product reloaded a spilled value
/// from the stack on every step and ran about 8 % slower.
trait Kernel {
    fn run<const T: usize, M: MulAdd>(self);
}

/// The kernel compiled for `simd`'s instructions, chosen at run time, so that one binary runs
/// everywhere and uses AVX-512 where it exists. `simd` must be a path this CPU has
/// (`Model::run` checks).
fn with_cpu_features<const T: usize, K: Kernel>(simd: Simd, kernel: K) {
    debug_assert!(simd.is_available(), "Model::run checks the path");
    match simd {
        // SAFETY: `Simd::is_available` found every feature the function enables (`Model::run`
        // refuses a path it does not).
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { x86::avx512::<T, K>(kernel) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { x86::avx2::<T, K>(kernel) },
        _ => kernel.run::<T, Baseline>(),
    }
}

/// Reads 8 rows of 8 values (`src[r * src_stride..][..8]`) and writes them as 8 columns of
/// `dst` (`dst[c * dst_stride..][..8]`).
pub(crate) fn transpose8(simd: Simd, src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    assert!(src.len() >= 7 * src_stride + 8 && dst.len() >= 7 * dst_stride + 8, "an 8 x 8 block fits");
    #[cfg(target_arch = "x86_64")]
    if simd != Simd::Scalar && std::arch::is_x86_feature_detected!("avx") {
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
    use super::{Fused, Kernel};

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn avx512<const T: usize, K: Kernel>(kernel: K) {
        kernel.run::<T, Fused>()
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
    pub(super) fn avx2<const T: usize, K: Kernel>(kernel: K) {
        kernel.run::<T, Fused>()
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

/// ReLU that passes NaN on, as burn's does: `f32::max(v, 0.0)` would turn a NaN into 0 and hide
/// a broken input behind plausible logits. Written with `<` so that it is one `maxps(0, v)`,
/// which returns its second operand when either is NaN (`<=` would make -0.0 a 0.0, and so a
/// compare and a blend; the two zeros are equal anyway).
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// A convolution's or pool's window: `[height, width]` each.
#[derive(Clone, Copy)]
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

impl Window {
    /// Output `[height, width]` over an input of `[height, width]` (checked by `Layer::output`).
    #[inline(always)]
    fn output(&self, [h, w]: [usize; 2]) -> [usize; 2] {
        let side = |n: usize, i: usize| (n + 2 * self.padding[i] - self.kernel[i]) / self.stride[i] + 1;
        [side(h, 0), side(w, 1)]
    }
}
