//! PReLU as one custom op over `(x, weight)`: `y = x if x > 0 else w[c] * x`, with the
//! gradients of both, as torch's `_prelu_kernel_backward` defines them.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::portable;
use super::simd::{lane_sums, widest_simd, CHUNK};
use super::storage::{contiguous_f32, with_f32_data};
use crate::util::profile::{self, Stage};

#[derive(Debug, Clone, Copy)]
pub struct PreluOp;

/// Elements per channel block and the channel count of an NCHW-like shape.
fn blocks(shape: &Shape, slopes: usize) -> Result<(usize, usize)> {
    let dims = shape.dims();
    if slopes == 1 {
        return Ok((CHUNK, 1));
    }
    if dims.len() < 2 || dims[1] != slopes {
        candle_core::bail!("prelu: {slopes} slopes do not match the channels of input {shape:?}");
    }
    Ok((dims[2..].iter().product::<usize>().max(1), dims[1]))
}

impl CustomOp2 for PreluOp {
    fn name(&self) -> &'static str {
        "prelu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [x, w] = contiguous_f32("prelu", [(xs, xl), (ws, wl)])?;
        let (block, channels) = blocks(xl.shape(), w.len())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .enumerate()
            .for_each(|(b, (y, x))| {
                let slope = w[b % channels];
                widest_simd(
                    #[inline(always)]
                    || {
                        for (y, &x) in y.iter_mut().zip(x) {
                            *y = if x > 0.0 { x } else { slope * x };
                        }
                    },
                );
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _t = profile::span(Stage::ActivationBackward);
        let (block, channels) = blocks(x.shape(), w.elem_count())?;
        let (dx, dw) = with_f32_data("prelu backward", [x, w, dy], |[x, w, dy]| {
            let mut dx = vec![0f32; x.len()];
            // Per block: the input gradient, and the block's share of its slope's gradient
            // (added in block order below, so the result does not depend on the threads).
            let partial: Vec<f64> = dx
                .par_chunks_mut(block)
                .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
                .enumerate()
                .map(|(b, (dx, (x, dy)))| {
                    let slope = w[b % channels];
                    widest_simd(
                        #[inline(always)]
                        || {
                            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                                *dx = if x > 0.0 { g } else { slope * g };
                            }
                            lane_sums(
                                x,
                                dy,
                                #[inline(always)]
                                |x, g| [if x > 0.0 { 0.0 } else { x * g }],
                            )[0]
                        },
                    )
                })
                .collect();
            let mut dw = vec![0f64; channels];
            for (b, v) in partial.iter().enumerate() {
                dw[b % channels] += v;
            }
            (dx, dw.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
        })?;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
        ))
    }
}

/// PReLU of `x` (f32, channels on dim 1) with `weight` of 1 or C slopes; differentiable in both.
pub fn apply(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        candle_core::bail!("prelu: only f32 is supported, got {:?}", x.dtype());
    }
    if portable::wanted(x.device()) {
        return portable::prelu(x, weight);
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, PreluOp)
}
