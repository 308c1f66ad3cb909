//! Matrix products on slices through the gemm crate: banded over the cores for large products,
//! at any strides on one thread for the small ones.

use gemm::Parallelism;

/// A matrix inside a slice: entry `(i, j)` sits at `i * row_stride + j * col_stride`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    pub(super) fn row_major(data: &'a [f32], row_stride: usize) -> Self {
        Mat { data, row_stride, col_stride: 1 }
    }

    /// Entry `(i, j)` at `i * row_stride + j * col_stride`.
    pub(super) fn strided(data: &'a [f32], [row_stride, col_stride]: [usize; 2]) -> Self {
        Mat { data, row_stride, col_stride }
    }

    pub(super) fn transposed(self) -> Self {
        Mat { data: self.data, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    fn check(&self, rows: usize, cols: usize) {
        let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
        assert!(last < self.data.len(), "matrix {rows}x{cols} does not fit in {} values", self.data.len());
    }
}

/// Below this many multiply-adds a product runs on one core: waking another costs more.
const PARALLEL_WORK: usize = 1 << 21;
/// Rows of the product per core, at least.
const ROWS_PER_CORE: usize = 16;

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), `lhs` `m × k`, `rhs` `k × n`, and
/// `dst` row-major with rows `dst_stride` apart. With `may_split`, a large product is cut into one
/// band of rows per core, each band one single-threaded gemm: on LeNet's shapes that measured
/// 1.2 to 2 times faster than gemm's own threading.
pub(super) fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    mnk: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    may_split: bool,
) {
    matmul_then(dst, dst_stride, mnk, lhs, rhs, accumulate, may_split, |_| {});
}

/// [`matmul`], then `finish` on each band of `dst` right after its product, while the band is
/// still in its core's cache.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_then(
    dst: &mut [f32],
    dst_stride: usize,
    [m, n, k]: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    may_split: bool,
    finish: impl Fn(&mut [f32]) + Sync,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_stride + n <= dst.len(), "a {m}x{n} product does not fit in {} values", dst.len());
    if k > 0 {
        lhs.check(m, k);
        rhs.check(k, n);
    }
    let cores = if may_split && m * n * k >= PARALLEL_WORK { rayon::current_num_threads() } else { 1 };
    let bands = cores.min(m / ROWS_PER_CORE).max(1);
    let band_product = |band: &mut [f32], rows: usize, lhs: Mat| {
        if k > 0 {
            gemm_on_one_core(band, dst_stride, [rows, n, k], lhs, rhs, accumulate);
        } else if !accumulate {
            (0..rows).for_each(|i| band[i * dst_stride..i * dst_stride + n].fill(0.0));
        }
        finish(band);
    };
    if bands == 1 {
        return band_product(dst, m, lhs);
    }
    let rows = m.div_ceil(bands);
    rayon::scope(|scope| {
        let mut rest = dst;
        for start in (0..m).step_by(rows) {
            let count = rows.min(m - start);
            let (band, tail) = rest.split_at_mut((count * dst_stride).min(rest.len()));
            rest = tail;
            let lhs = Mat { data: &lhs.data[(start * lhs.row_stride).min(lhs.data.len())..], ..lhs };
            let band_product = &band_product;
            scope.spawn(move |_| band_product(band, count, lhs));
        }
    });
}

/// [`matmul`] after its checks, on the calling thread.
fn gemm_on_one_core(dst: &mut [f32], dst_stride: usize, mnk: [usize; 3], lhs: Mat, rhs: Mat, accumulate: bool) {
    product(dst, [dst_stride, 1], lhs, rhs, mnk, accumulate);
}

/// `dst (+)= lhs · rhs`, `lhs` `m × k`, `rhs` `k × n`, `dst` `m × n` with `dst_strides`, each
/// operand at any strides, on this thread.
pub(super) fn product(dst: &mut [f32], dst_strides: [usize; 2], lhs: Mat, rhs: Mat, [m, n, k]: [usize; 3], add: bool) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let last = |[rows, cols]: [usize; 2], [rs, cs]: [usize; 2]| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last([m, n], dst_strides) < dst.len(), "the product's destination is too short");
    let fits = |mat: &Mat, shape| last(shape, [mat.row_stride, mat.col_stride]) < mat.data.len();
    assert!(fits(&lhs, [m, k]) && fits(&rhs, [k, n]), "a factor is too short");
    // SAFETY: every index the product reads or writes was checked above to lie inside its slice,
    // and `dst` is borrowed mutably, so it overlaps neither factor.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides[1] as isize,
            dst_strides[0] as isize,
            add,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
