//! Sliding windows: a convolution's, and their range along a row, shared by the
//! convolution and pooling kernels.

/// Where a convolution's window goes: its step, the zeros around the input, the spacing of
/// its taps and the channel groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2dParams {
    /// A 1×1 convolution's: stride 1, no padding, one group.
    pub const POINTWISE: Conv2dParams = Conv2dParams {
        stride: 1,
        padding: 0,
        dilation: 1,
        groups: 1,
    };
}

/// For a window tap at `offset` (kernel index × dilation) along a row of `len` inputs,
/// with `stride` and `padding`: the outputs `lo..hi` (of `outputs`) whose input
/// `o · stride − padding + offset` lies inside the row, and the input of `lo` (clamped into
/// the row, so that slicing from it is safe even when the range is empty).
#[inline(always)]
pub fn valid_outputs(
    offset: usize,
    stride: usize,
    padding: usize,
    len: usize,
    outputs: usize,
) -> (usize, usize, usize) {
    let (s, p, off) = (stride as isize, padding as isize, offset as isize);
    let last = len as isize - 1 + p - off;
    let hi = if last < 0 {
        0
    } else {
        (last / s + 1).min(outputs as isize)
    };
    let lo = (((p - off).max(0) + s - 1) / s).min(hi);
    (
        lo as usize,
        hi as usize,
        (lo * s - p + off).clamp(0, len as isize) as usize,
    )
}
