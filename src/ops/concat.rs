//! Tensors joined along the channels (dimension 1 of NCHW), the copy shared by the
//! threads at inference: candle's `cat` copies on one thread while the others wait, and
//! YOLO's concatenations (C3, SPPF, the neck's skips) run between every few convs.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::storage::with_f32_slices;

/// Floats each parallel task copies at least: a smaller share costs more to hand out
/// than to copy.
const TASK_FLOATS: usize = 1 << 14;

/// `Tensor::cat(xs, 1)`, with the same result bit for bit. Tensors outside inference (any
/// that records an op for the backward), or that are not contiguous f32 NCHW on the CPU
/// with the same batch and plane, go to `Tensor::cat`, which also gives the errors.
pub fn channels<A: AsRef<Tensor>>(xs: &[A]) -> Result<Tensor> {
    let tensors: Vec<&Tensor> = xs.iter().map(AsRef::as_ref).collect();
    let first = match tensors[..] {
        [] => return Tensor::cat(xs, 1),
        // One tensor joins to itself: the same elements, no copy (tensors are immutable).
        [only] => return Ok(only.clone()),
        [first, ..] => first,
    };
    let (n, _, h, w) = match first.dims4() {
        Ok(dims) => dims,
        Err(_) => return Tensor::cat(xs, 1),
    };
    let joins_in_place = tensors.iter().all(|t| {
        !t.track_op()
            && t.device().is_cpu()
            && t.dtype() == DType::F32
            && t.is_contiguous()
            && t.dims4()
                .is_ok_and(|(tn, _, th, tw)| (tn, th, tw) == (n, h, w))
    });
    if !joins_in_place {
        return Tensor::cat(xs, 1);
    }
    let channels: Vec<usize> = tensors.iter().map(|t| t.dims()[1]).collect();
    // Output channel c of each image: which source, and which of its channels.
    let origin: Vec<(usize, usize)> = channels
        .iter()
        .enumerate()
        .flat_map(|(j, &c)| (0..c).map(move |k| (j, k)))
        .collect();
    let (c_out, plane) = (origin.len(), h * w);
    let len = n * c_out * plane;
    let mut y = Vec::<f32>::with_capacity(len);
    if plane > 0 {
        with_f32_slices("concat", &tensors, |sources| {
            y.spare_capacity_mut()[..len]
                .par_chunks_mut(plane)
                .with_min_len(TASK_FLOATS.div_ceil(plane))
                .enumerate()
                .for_each(|(ic, out)| {
                    let (j, k) = origin[ic % c_out];
                    let src = &sources[j][(ic / c_out * channels[j] + k) * plane..][..plane];
                    out.write_copy_of_slice(src);
                });
        })?;
    }
    // SAFETY: every output plane was written above (none when a plane is empty).
    unsafe { y.set_len(len) };
    Tensor::from_vec(y, (n, c_out, h, w), &Device::Cpu)
}
