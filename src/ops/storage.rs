//! The CPU data of tensors, borrowed where the kernels read it.

use candle_core::{CpuStorage, Device, Layout, Result, Storage, Tensor};

/// The contiguous slice a layout addresses, or an error naming the op.
pub fn contiguous<'a, T: candle_core::WithDType>(
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

/// The f32 slices of an op's inputs, each contiguous (else an error naming the op).
pub fn contiguous_f32<'a, const N: usize>(
    op: &'static str,
    inputs: [(&'a CpuStorage, &Layout); N],
) -> Result<[&'a [f32]; N]> {
    let mut data: [&[f32]; N] = [&[]; N];
    for (slot, (storage, layout)) in data.iter_mut().zip(inputs) {
        *slot = contiguous::<f32>(op, storage, layout)?;
    }
    Ok(data)
}

/// Runs `f` on the f32 elements of each tensor, borrowed from their storage: a backward
/// pass reads its inputs this way, where `to_vec1` would copy each of them first.
/// Non-contiguous tensors are made contiguous (a copy) before, and tensors on another
/// device are copied to the CPU.
pub fn with_f32_data<R, const N: usize>(
    op: &'static str,
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    with_f32_slices(op, &tensors, |data| f(std::array::from_fn(|i| data[i])))
}

/// [`with_f32_data`] for any number of tensors.
pub fn with_f32_slices<R>(
    op: &'static str,
    tensors: &[&Tensor],
    f: impl FnOnce(&[&[f32]]) -> R,
) -> Result<R> {
    let contiguous_tensors = tensors
        .iter()
        .map(|t| t.to_device(&Device::Cpu)?.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = contiguous_tensors
        .iter()
        .map(Tensor::storage_and_layout)
        .collect();
    let mut data = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let Storage::Cpu(cpu) = &**storage else {
            candle_core::bail!("{op}: expects tensors on the CPU");
        };
        data.push(contiguous::<f32>(op, cpu, layout)?);
    }
    Ok(f(&data))
}
