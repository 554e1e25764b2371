//! A safe front to the `gemm` crate (the same GEMM candle's matmul runs on): strided
//! matrix views with their bounds checked once. Only a destination shared by parallel
//! tasks (one column tile each) needs the `unsafe` [`matmul_strided`].

/// A read-only strided view of an `rows × cols` matrix inside `data`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same memory.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
        }
    }
}

/// `dst (m × n, row-major) = [dst +] lhs (m × k) · rhs (k × n)`; `threads` > 1 splits
/// the product itself (for one large product; batches parallelise outside instead).
pub fn matmul(dst: &mut [f32], lhs: MatRef, rhs: MatRef, accumulate: bool, threads: usize) {
    assert!(
        dst.len() >= lhs.rows * rhs.cols,
        "matmul: destination too small"
    );
    // SAFETY: dst is exclusively borrowed, holds the m × n product at row stride n, and
    // cannot alias the shared lhs and rhs.
    unsafe { matmul_strided(dst.as_mut_ptr(), rhs.cols, lhs, rhs, accumulate, threads) }
}

/// As [`matmul`], into `m` rows of `n` elements that start `dst_row_stride` apart: one
/// column tile of a larger matrix. Without `accumulate`, `dst` is only written, never read.
///
/// # Safety
/// Every `dst + r · dst_row_stride + j` (r < m, j < n) must be valid for writes (and
/// reads when accumulating), and no other thread may access those elements meanwhile.
pub unsafe fn matmul_strided(
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    assert!(
        m <= 1 || dst_row_stride >= n,
        "matmul: destination rows overlap"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                // SAFETY: the caller guarantees row r of the destination is ours to write.
                unsafe { std::slice::from_raw_parts_mut(dst.add(r * dst_row_stride), n) }.fill(0.0);
            }
        }
        return;
    }
    assert!(
        lhs.last_index() < lhs.data.len() && rhs.last_index() < rhs.data.len(),
        "matmul: view out of bounds"
    );
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every lhs and rhs index the product touches lies within the slices (checked
    // above); the destination is the caller's promise.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
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
            parallelism,
        );
    }
}
