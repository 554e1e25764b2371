//! Fused CPU kernels for activations, as candle custom ops with their own backward.
//! Each is tested against the plain candle composition of the same function.

pub mod pointwise;
pub mod prelu;

use candle_core::{CpuStorage, Layout, Result};

/// Elements per rayon task: large enough to amortise scheduling, small enough to
/// split a P3-sized map across both cores.
pub(crate) const CHUNK: usize = 1 << 14;

/// The contiguous slice a layout addresses, or an error naming the op.
pub(crate) fn contiguous<'a, T: candle_core::WithDType>(
    op: &'static str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: expects a contiguous tensor"),
    }
}
