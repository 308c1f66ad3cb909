//! The patch matrix of a convolution (im2col), `[channels · kh · kw, positions]`, and its
//! adjoint (col2im), which adds patches back into an image.

use std::cell::RefCell;
use std::ops::Range;

use super::Geometry;

/// The outputs `o < out` whose input `o * stride + offset - pad` lies inside `0..size`.
pub(super) fn inside(offset: usize, pad: usize, stride: usize, size: usize, out: usize) -> Range<usize> {
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

    /// A padded stride-1 convolution (VGG's and ResNet's 3x3) becomes plain on a copy of the
    /// image with its zeros around it: one copy of the image instead of a visit per stretch of
    /// every row of the patch matrix, which cost as much as the product.
    pub(super) fn pads(&self) -> bool {
        self.stride == [1, 1] && self.dilation == [1, 1] && self.padding != [0, 0]
    }

    /// The padded image's `[height, width]`: every row and column some output reads.
    pub(super) fn padded(&self) -> [usize; 2] {
        [self.out[0] + self.kernel[0] - 1, self.out[1] + self.kernel[1] - 1]
    }
}

/// For a plain convolution of an image of `height x width`, each row of the patch matrix with
/// the offset of its input window in the image.
fn plain_rows(g: &Geometry, [height, width]: [usize; 2]) -> impl Iterator<Item = (usize, usize)> {
    let ([kh, kw], plane) = (g.kernel, height * width);
    (0..g.channels * kh * kw).map(move |row| {
        let (c, k) = (row / (kh * kw), row % (kh * kw));
        (row, c * plane + (k / kw) * width + k % kw)
    })
}

/// The plain patches of an image of `size`, into columns `offset..` of `cols`.
fn plain_im2col(g: &Geometry, size: [usize; 2], image: &[f32], cols: &mut [f32], ld: usize, offset: usize) {
    let ([_, ow], positions) = (g.out, g.positions());
    for (row, start) in plain_rows(g, size) {
        let dst = &mut cols[row * ld + offset..row * ld + offset + positions];
        for (y, run) in dst.chunks_exact_mut(ow).enumerate() {
            copy_run(run, &image[start + y * size[1]..]);
        }
    }
}

/// The adjoint of [`plain_im2col`].
fn plain_col2im(g: &Geometry, size: [usize; 2], cols: &[f32], ld: usize, offset: usize, image: &mut [f32]) {
    let ([_, ow], positions) = (g.out, g.positions());
    for (row, start) in plain_rows(g, size) {
        let src = &cols[row * ld + offset..row * ld + offset + positions];
        for (y, run) in src.chunks_exact(ow).enumerate() {
            add_run(&mut image[start + y * size[1]..], run);
        }
    }
}

thread_local! {
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's buffer for a padded image, zeroed (kept between calls, as the
/// patch matrix's scratch is). A kernel's width of zeros follows the last channel: a product by
/// taps on the wide grid reads that far (into columns it throws away).
pub(super) fn with_padded<R>(g: &Geometry, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let [hp, wp] = g.padded();
    let len = g.channels * hp * wp + g.kernel[1];
    let mut buffer = PADDED.with(RefCell::take);
    buffer.clear();
    buffer.resize(len, 0.0);
    let result = f(&mut buffer);
    PADDED.with(|cell| cell.replace(buffer));
    result
}

/// [`with_padded`] with `image` copied inside its zeros.
pub(super) fn with_padded_image<R>(g: &Geometry, image: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    with_padded(g, |padded| {
        for (from, to) in padded_rows(g) {
            copy_run(&mut padded[to..to + g.width], &image[from..]);
        }
        f(padded)
    })
}

/// Each of the image's rows and where it lies in the padded image: `(image start, padded start)`.
pub(super) fn padded_rows(g: &Geometry) -> impl Iterator<Item = (usize, usize)> {
    let [hp, wp] = g.padded();
    let ([top, left], (height, width)) = (g.padding, (g.height, g.width));
    (0..g.channels)
        .flat_map(move |c| (0..height).map(move |y| ((c * height + y) * width, (c * hp + y + top) * wp + left)))
}

/// Writes one image's patches into columns `offset..offset + positions` of `cols`, whose rows are
/// `ld` apart.
pub(super) fn im2col(g: &Geometry, image: &[f32], cols: &mut [f32], ld: usize, offset: usize) {
    if g.is_plain() {
        return plain_im2col(g, [g.height, g.width], image, cols, ld, offset);
    }
    if g.pads() {
        return with_padded_image(g, image, |padded| plain_im2col(g, g.padded(), padded, cols, ld, offset));
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
pub(super) fn col2im(g: &Geometry, cols: &[f32], ld: usize, offset: usize, image: &mut [f32]) {
    if g.is_plain() {
        return plain_col2im(g, [g.height, g.width], cols, ld, offset, image);
    }
    if g.pads() {
        return with_padded(g, |padded| {
            plain_col2im(g, g.padded(), cols, ld, offset, padded);
            for (to, from) in padded_rows(g) {
                add_run(&mut image[to..], &padded[from..from + g.width]);
            }
        });
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
        // As arrays, so that the length is known where the copy is compiled: a slice's
        // `copy_from_slice` became a call to memmove per eight values.
        let (d, s): (&mut [f32; 8], &[f32; 8]) = (d.try_into().expect("eight"), s.try_into().expect("eight"));
        *d = *s;
    }
    for (d, s) in dst_chunks.into_remainder().iter_mut().zip(src_chunks.remainder()) {
        *d = *s;
    }
}

/// `dst += src` over the first `src.len()` values, eight at a time (see [`copy_run`]).
#[inline(always)]
pub(super) fn add_run(dst: &mut [f32], src: &[f32]) {
    let (mut dst_chunks, mut src_chunks) = (dst[..src.len()].chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in dst_chunks.by_ref().zip(src_chunks.by_ref()) {
        d.iter_mut().zip(s).for_each(|(d, s)| *d += *s);
    }
    for (d, s) in dst_chunks.into_remainder().iter_mut().zip(src_chunks.remainder()) {
        *d += *s;
    }
}
