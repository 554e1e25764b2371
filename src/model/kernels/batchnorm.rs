//! BatchNorm2d followed by a pointwise activation, as one custom op over
//! `(x, weight, bias)`: two passes forward (statistics, then normalise + activate) and
//! two backward, where candle's composition of the same would make some twenty.
//! Semantics are torch's: batch statistics (biased variance) in training, with the
//! gradient flowing through them; fixed statistics in eval.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::act::kernels::with_f32_data;
use crate::act::pointwise::{Pointwise, ScalarFn};
use crate::profile::{self, Stage};
use crate::with_scalar_fn;

/// Per-channel statistics the op normalises with.
#[derive(Debug, Clone)]
pub struct ChannelStats {
    pub mean: Vec<f32>,
    /// Biased variance (the one training normalises with).
    pub var: Vec<f32>,
}

/// Mean and biased variance per channel of an NCHW slice, in f64 accumulators.
pub fn channel_stats(x: &[f32], (n, c, hw): (usize, usize, usize)) -> ChannelStats {
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |i| &x[(i * c + ch) * hw..][..hw]);
            let count = (n * hw) as f64;
            let mean = planes().map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / count;
            let var = planes().map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()).sum::<f64>() / count;
            (mean as f32, var as f32)
        })
        .unzip();
    ChannelStats { mean, var }
}

#[derive(Debug, Clone)]
pub struct BatchNormAct {
    stats: Arc<ChannelStats>,
    eps: f32,
    /// Whether `stats` are this batch's own (training): then the gradient flows through them.
    batch_stats: bool,
    act: Option<Pointwise>,
}

/// NCHW sizes as (n, c, h·w).
fn sizes(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        [n, c, h, w] => Ok((*n, *c, h * w)),
        _ => candle_core::bail!("batch_norm: expected NCHW, got {dims:?}"),
    }
}

impl BatchNormAct {
    fn scale_shift(&self, w: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let invstd: Vec<f32> = self.stats.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let scale: Vec<f32> = invstd.iter().zip(w).map(|(i, w)| i * w).collect();
        let shift = b.iter().zip(&scale).zip(&self.stats.mean).map(|((b, s), m)| b - m * s).collect();
        (scale, shift)
    }

    fn forward(&self, x: &[f32], w: &[f32], b: &[f32], (_, c, hw): (usize, usize, usize)) -> Vec<f32> {
        let (scale, shift) = self.scale_shift(w, b);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(plane, (y, x))| {
            let (s, t) = (scale[plane % c], shift[plane % c]);
            match self.act {
                Some(p) => with_scalar_fn!(p, f => y.iter_mut().zip(x).for_each(|(y, &x)| *y = f.f(x * s + t))),
                None => y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * s + t),
            }
        });
        y
    }

    /// Gradients of x, weight and bias.
    fn backward(&self, x: &[f32], w: &[f32], b: &[f32], dy: &[f32], (n, c, hw): (usize, usize, usize)) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (scale, shift) = self.scale_shift(w, b);
        let invstd: Vec<f32> = self.stats.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        // g = dL/d(bn output): dy through the activation.
        let mut g = vec![0f32; x.len()];
        g.par_chunks_mut(hw).zip(x.par_chunks(hw).zip(dy.par_chunks(hw))).enumerate().for_each(|(plane, (g, (x, dy)))| {
            let (s, t) = (scale[plane % c], shift[plane % c]);
            match self.act {
                Some(p) => with_scalar_fn!(p, f => g.iter_mut().zip(x).zip(dy).for_each(|((g, &x), &dy)| *g = dy * f.df(x * s + t))),
                None => g.copy_from_slice(dy),
            }
        });
        // Per channel: Σg and Σg·x̂.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, is) = (self.stats.mean[ch], invstd[ch]);
                (0..n).fold((0f64, 0f64), |(sg, sgx), i| {
                    let at = (i * c + ch) * hw;
                    let (gp, xp) = (&g[at..at + hw], &x[at..at + hw]);
                    let (a, bsum) = gp.iter().zip(xp).fold((0f32, 0f32), |(a, bs), (&g, &x)| (a + g, bs + g * (x - m) * is));
                    (sg + a as f64, sgx + bsum as f64)
                })
            })
            .collect();
        let count = (n * hw) as f32;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(hw).zip(x.par_chunks(hw).zip(g.par_chunks(hw))).enumerate().for_each(|(plane, (dx, (x, g)))| {
            let ch = plane % c;
            let (m, is, k) = (self.stats.mean[ch], invstd[ch], w[ch] * invstd[ch]);
            if self.batch_stats {
                let (sg, sgx) = (sums[ch].0 as f32 / count, sums[ch].1 as f32 / count);
                dx.iter_mut().zip(x).zip(g).for_each(|((dx, &x), &g)| *dx = k * (g - sg - (x - m) * is * sgx));
            } else {
                dx.iter_mut().zip(g).for_each(|(dx, &g)| *dx = k * g);
            }
        });
        let dw = sums.iter().map(|s| s.1 as f32).collect();
        let db = sums.iter().map(|s| s.0 as f32).collect();
        (dx, dw, db)
    }
}

impl CustomOp3 for BatchNormAct {
    fn name(&self) -> &'static str {
        "batch-norm-act"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout, bs: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = sizes(xl.dims())?;
        let x = crate::act::kernels::contiguous::<f32>("batch_norm", xs, xl)?;
        let w = crate::act::kernels::contiguous::<f32>("batch_norm", ws, wl)?;
        let b = crate::act::kernels::contiguous::<f32>("batch_norm", bs, bl)?;
        Ok((CpuStorage::F32(self.forward(x, w, b, dims)), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = profile::span(Stage::BatchNormBackward);
        let dims = sizes(x.dims())?;
        let (dx, dw, db) = with_f32_data("batch_norm backward", [x, w, b, dy], |[x, w, b, dy]| self.backward(x, w, b, dy, dims))?;
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), Some(Tensor::from_vec(dw, w.shape(), w.device())?), Some(Tensor::from_vec(db, b.shape(), b.device())?)))
    }
}

/// BatchNorm (+ an optional pointwise activation) of f32 NCHW `x`. With `stats` None the
/// batch's own statistics are computed and returned (for the running averages);
/// otherwise the given ones are used as constants (eval).
pub fn batch_norm_act(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64, stats: Option<ChannelStats>, act: Option<Pointwise>) -> Result<(Tensor, Arc<ChannelStats>)> {
    let x = x.contiguous()?;
    let batch_stats = stats.is_none();
    let stats = Arc::new(match stats {
        Some(s) => s,
        None => {
            let dims = sizes(x.dims())?;
            with_f32_data("batch_norm", [&x], |[x]| channel_stats(x, dims))?
        }
    });
    let op = BatchNormAct { stats: stats.clone(), eps: eps as f32, batch_stats, act };
    Ok((x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?, stats))
}
