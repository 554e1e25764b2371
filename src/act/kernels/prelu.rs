//! PReLU as one custom op over `(x, weight)`: `y = x if x > 0 else w[c] * x`, with the
//! gradients of both, as torch's `_prelu_kernel_backward` defines them.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous, CHUNK};
use crate::profile::{self, Stage};

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
        let x = contiguous::<f32>("prelu", xs, xl)?;
        let w = contiguous::<f32>("prelu", ws, wl)?;
        let (block, channels) = blocks(xl.shape(), w.len())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .enumerate()
            .for_each(|(b, (y, x))| {
                let slope = w[b % channels];
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = if x > 0.0 { x } else { slope * x };
                }
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
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let dyv = dy.flatten_all()?.to_vec1::<f32>()?;
        let wv = w.flatten_all()?.to_vec1::<f32>()?;
        let (block, channels) = blocks(x.shape(), wv.len())?;
        let mut dx = vec![0f32; xv.len()];
        // Per block: the input gradient, and the block's share of its slope's gradient.
        let partial: Vec<f32> = dx
            .par_chunks_mut(block)
            .zip(xv.par_chunks(block).zip(dyv.par_chunks(block)))
            .enumerate()
            .map(|(b, (dx, (x, dy)))| {
                let slope = wv[b % channels];
                let mut dw = 0f32;
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    if x > 0.0 {
                        *dx = dy;
                    } else {
                        *dx = slope * dy;
                        dw += x * dy;
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; channels];
        for (b, v) in partial.iter().enumerate() {
            dw[b % channels] += v;
        }
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// PReLU of `x` (f32, channels on dim 1) with `weight` of 1 or C slopes; differentiable in both.
pub fn apply(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        candle_core::bail!("prelu: only f32 is supported, got {:?}", x.dtype());
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, PreluOp)
}
