//! Nearest-neighbour upsampling by an integer factor (YOLOv5's `nn.Upsample(None, 2,
//! 'nearest')`) with its own backward. candle computes that backward as a grouped conv2d
//! with a ones kernel, one group (channel) at a time, and each of those calls asks
//! `num_cpus` for the core count by reading /proc/cpuinfo; here it is one parallel pass
//! summing each s×s block of the upstream gradient.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::portable;
use super::storage::{contiguous, with_f32_data};
use crate::util::profile::{self, Stage};

#[derive(Debug, Clone, Copy)]
pub struct UpsampleNearest2d {
    pub scale: usize,
}

impl UpsampleNearest2d {
    /// One (h, w) input plane repeated into its (h·s, w·s) output plane.
    fn forward_plane(&self, x: &[f32], w: usize, y: &mut [f32]) {
        let s = self.scale;
        for (row, out_rows) in x.chunks_exact(w).zip(y.chunks_exact_mut(w * s * s)) {
            let (first, rest) = out_rows.split_at_mut(w * s);
            for (out, &v) in first.chunks_exact_mut(s).zip(row) {
                out.fill(v);
            }
            for copy in rest.chunks_exact_mut(w * s) {
                copy.copy_from_slice(first);
            }
        }
    }

    /// The gradient of one input plane: each element's s×s block of `dy` summed, rows
    /// first (as candle's ones-kernel convolution adds them).
    fn backward_plane(&self, dy: &[f32], w: usize, dx: &mut [f32]) {
        let s = self.scale;
        for (out_row, dy_rows) in dx.chunks_exact_mut(w).zip(dy.chunks_exact(w * s * s)) {
            out_row.fill(0.0);
            for dy_row in dy_rows.chunks_exact(w * s) {
                for (acc, block) in out_row.iter_mut().zip(dy_row.chunks_exact(s)) {
                    *acc += block.iter().sum::<f32>();
                }
            }
        }
    }
}

impl CustomOp1 for UpsampleNearest2d {
    fn name(&self) -> &'static str {
        "upsample-nearest2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>("upsample_nearest2d", storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let s = self.scale;
        let mut y = vec![0f32; x.len() * s * s];
        if !y.is_empty() {
            y.par_chunks_mut(h * w * s * s)
                .zip(x.par_chunks(h * w))
                .for_each(|(y, x)| self.forward_plane(x, w, y));
        }
        Ok((CpuStorage::F32(y), Shape::from((n, c, h * s, w * s))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let _t = profile::span(Stage::PoolUpsampleBackward);
        let (_, _, h, w) = arg.dims4()?;
        let mut dx = vec![0f32; arg.elem_count()];
        if !dx.is_empty() {
            let s = self.scale;
            with_f32_data("upsample_nearest2d backward", [grad], |[dy]| {
                dx.par_chunks_mut(h * w)
                    .zip(dy.par_chunks(h * w * s * s))
                    .for_each(|(dx, dy)| self.backward_plane(dy, w, dx));
            })?;
        }
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Nearest-neighbour upsampling of an f32 NCHW tensor by `scale` (≥ 1) in both spatial
/// dimensions; differentiable.
pub fn upsample_nearest2d(x: &Tensor, scale: usize) -> Result<Tensor> {
    let _t = profile::span(Stage::PoolUpsampleForward);
    if scale == 0 || x.rank() != 4 {
        candle_core::bail!(
            "upsample_nearest2d: needs an NCHW tensor and a scale ≥ 1, got {:?} and {scale}",
            x.dims()
        );
    }
    if portable::wanted(x.device()) {
        return portable::upsample_nearest2d(x, scale);
    }
    x.contiguous()?.apply_op1(UpsampleNearest2d { scale })
}
