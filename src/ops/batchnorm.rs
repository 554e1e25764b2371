//! BatchNorm2d followed by a pointwise activation, as one custom op over
//! `(x, weight, bias)`: two passes forward (statistics, then normalise + activate) and
//! two backward, where candle's composition of the same would make some twenty.
//! Semantics are torch's: batch statistics (biased variance) in training, with the
//! gradient flowing through them; fixed statistics in eval.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::{Affine, Elementwise};
use super::scalar::Identity;
use super::simd::{lane_sums, widest_simd};
use super::storage::with_f32_data;
use crate::util::profile::{self, Stage};

/// Per-channel statistics the op normalises with.
#[derive(Debug, Clone)]
pub struct ChannelStats {
    pub mean: Vec<f32>,
    /// Biased variance (the one training normalises with).
    pub var: Vec<f32>,
}

/// Mean and biased variance per channel of an NCHW slice: the mean, then the corrected
/// two-pass variance (Σd² − (Σd)²/N)/N of d = x − mean.
pub fn channel_stats(x: &[f32], (n, c, hw): (usize, usize, usize)) -> ChannelStats {
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |i| &x[(i * c + ch) * hw..][..hw]);
            let count = (n * hw) as f64;
            widest_simd(
                #[inline(always)]
                || {
                    let mut sum = 0f64;
                    for p in planes() {
                        sum += lane_sums(
                            p,
                            p,
                            #[inline(always)]
                            |v, _| [v],
                        )[0];
                    }
                    let (mean, (mut sd, mut sd2)) = (sum / count, (0f64, 0f64));
                    let m = mean as f32;
                    for p in planes() {
                        let [d, d2] = lane_sums(
                            p,
                            p,
                            #[inline(always)]
                            |v, _| [v - m, (v - m) * (v - m)],
                        );
                        sd += d;
                        sd2 += d2;
                    }
                    (
                        mean as f32,
                        ((sd2 - sd * sd / count) / count).max(0.0) as f32,
                    )
                },
            )
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
    act: Option<Arc<dyn Elementwise>>,
}

/// NCHW sizes as (n, c, h·w).
fn sizes(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        [n, c, h, w] => Ok((*n, *c, h * w)),
        _ => candle_core::bail!("batch_norm: expected NCHW, got {dims:?}"),
    }
}

impl BatchNormAct {
    pub(super) fn new(
        stats: Arc<ChannelStats>,
        eps: f32,
        batch_stats: bool,
        act: Option<Arc<dyn Elementwise>>,
    ) -> BatchNormAct {
        BatchNormAct {
            stats,
            eps,
            batch_stats,
            act,
        }
    }

    fn scale_shift(&self, w: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let invstd: Vec<f32> = self
            .stats
            .var
            .iter()
            .map(|v| 1.0 / (v + self.eps).sqrt())
            .collect();
        let scale: Vec<f32> = invstd.iter().zip(w).map(|(i, w)| i * w).collect();
        let shift = b
            .iter()
            .zip(&scale)
            .zip(&self.stats.mean)
            .map(|((b, s), m)| b - m * s)
            .collect();
        (scale, shift)
    }

    /// The activation, identity when there is none.
    fn act(&self) -> &dyn Elementwise {
        self.act.as_deref().unwrap_or(&Identity)
    }

    pub(super) fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        (_, c, hw): (usize, usize, usize),
    ) -> Vec<f32> {
        let (scale, shift) = self.scale_shift(w, b);
        let mut y = Vec::with_capacity(x.len());
        y.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let (s, t) = (scale[plane % c], shift[plane % c]);
                self.act().affine_into(x, s, t, y)
            });
        // SAFETY: each plane's task wrote all of its floats (`affine_into` writes every
        // element), and the planes cover the output.
        unsafe { y.set_len(x.len()) };
        y
    }

    /// Gradients of x, weight and bias. g = dL/d(BatchNorm output), dy through the
    /// activation, is computed twice (for the sums, then for dx) rather than stored: one
    /// pass over memory less.
    fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        dy: &[f32],
        (n, c, hw): (usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (scale, shift) = self.scale_shift(w, b);
        let invstd: Vec<f32> = self
            .stats
            .var
            .iter()
            .map(|v| 1.0 / (v + self.eps).sqrt())
            .collect();
        // Per channel: Σg and Σg·x̂.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let affine = Affine {
                    scale: scale[ch],
                    shift: shift[ch],
                    mean: self.stats.mean[ch],
                    invstd: invstd[ch],
                };
                let (mut sg, mut sgx) = (0f64, 0f64);
                for i in 0..n {
                    let at = (i * c + ch) * hw;
                    let [a, b] =
                        self.act()
                            .affine_grad_sums(&x[at..at + hw], &dy[at..at + hw], affine);
                    sg += a;
                    sgx += b;
                }
                (sg, sgx)
            })
            .collect();
        let count = (n * hw) as f32;
        let mut dx = Vec::with_capacity(x.len());
        dx.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(hw)
            .zip(x.par_chunks(hw).zip(dy.par_chunks(hw)))
            .enumerate()
            .for_each(|(plane, (dx, (x, dy)))| {
                let ch = plane % c;
                let affine = Affine {
                    scale: scale[ch],
                    shift: shift[ch],
                    mean: self.stats.mean[ch],
                    invstd: invstd[ch],
                };
                let (sg, sgx) = if self.batch_stats {
                    (sums[ch].0 as f32 / count, sums[ch].1 as f32 / count)
                } else {
                    (0.0, 0.0)
                };
                let k = w[ch] * invstd[ch];
                self.act()
                    .batchnorm_input_grad(x, dy, affine, (k, sg, sgx), dx)
            });
        // SAFETY: as in the forward: every plane's floats written by its task.
        unsafe { dx.set_len(x.len()) };
        let dw = sums.iter().map(|s| s.1 as f32).collect();
        let db = sums.iter().map(|s| s.0 as f32).collect();
        (dx, dw, db)
    }
}

impl CustomOp3 for BatchNormAct {
    fn name(&self) -> &'static str {
        "batch-norm-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = sizes(xl.dims())?;
        let [x, w, b] =
            super::storage::contiguous_f32("batch_norm", [(xs, xl), (ws, wl), (bs, bl)])?;
        Ok((
            CpuStorage::F32(self.forward(x, w, b, dims)),
            xl.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = profile::span(Stage::BatchNormBackward);
        let dims = sizes(x.dims())?;
        let (dx, dw, db) = with_f32_data("batch_norm backward", [x, w, b, dy], |[x, w, b, dy]| {
            self.backward(x, w, b, dy, dims)
        })?;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// BatchNorm (+ an optional pointwise activation) of f32 NCHW `x`. With `stats` None the
/// batch's own statistics are computed and returned (for the running averages);
/// otherwise the given ones are used as constants (eval).
pub fn batch_norm_act(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    stats: Option<ChannelStats>,
    act: Option<Arc<dyn Elementwise>>,
) -> Result<(Tensor, Arc<ChannelStats>)> {
    let x = x.contiguous()?;
    let batch_stats = stats.is_none();
    let stats = Arc::new(match stats {
        Some(s) => s,
        None => {
            let dims = sizes(x.dims())?;
            with_f32_data("batch_norm", [&x], |[x]| channel_stats(x, dims))?
        }
    });
    let op = BatchNormAct::new(stats.clone(), eps as f32, batch_stats, act);
    Ok((
        x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?,
        stats,
    ))
}
