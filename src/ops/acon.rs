//! ACON-C and Meta-ACON-C, `y = d·x·σ(β·d·x) + p2·x` with `d = p1 − p2`, as one custom op
//! over `(x, [p1; p2], β)`: one pass forward, two backward. The candle composition it
//! replaces made seven graph nodes of the input's size, each with its own gradient
//! buffers (measured: a yolov5n training step took 5.5× SiLU's).
//!
//! Gradients, with `u = d·x`, `s = σ(β·u)` and `k = s + β·u·s·(1 − s)`:
//! `dy/dx = d·k + p2`, `dy/dp1 = x·k`, `dy/dp2 = x·(1 − k)`, `dy/dβ = u²·s·(1 − s)`.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::portable;
use super::scalar::sigmoid;
use super::simd::{lane_sums, widest_simd};
use super::storage::{contiguous_f32, with_f32_data};
use crate::util::profile::{self, Stage};

/// The op; β holds one value per channel (ACON-C) or per image and channel (Meta-ACON-C).
#[derive(Debug, Clone, Copy)]
struct AconOp;

/// Sizes of x as (images, channels, elements per plane), checked against the parameters.
fn sizes(dims: &[usize], params: usize, beta: usize) -> Result<(usize, usize, usize)> {
    let (n, c) = match dims {
        [n, c, ..] => (*n, *c),
        _ => candle_core::bail!("acon: expected an (N, C, ...) input, got {dims:?}"),
    };
    if params != 2 * c || (beta != c && beta != n * c) {
        candle_core::bail!(
            "acon: input {dims:?} does not fit {params} p1/p2 values and {beta} betas"
        );
    }
    Ok((n, c, dims[2..].iter().product()))
}

/// Per plane (image i, channel ch): d, p2 and β.
fn plane_params(plane: usize, c: usize, pp: &[f32], beta: &[f32]) -> (f32, f32, f32) {
    let ch = plane % c;
    let b = if beta.len() == c {
        beta[ch]
    } else {
        beta[plane]
    };
    (pp[ch] - pp[c + ch], pp[c + ch], b)
}

/// (u, s, k) at x.
#[inline(always)]
fn usk(x: f32, d: f32, b: f32) -> (f32, f32, f32) {
    let u = d * x;
    let s = sigmoid(b * u);
    (u, s, s + b * u * s * (1.0 - s))
}

impl CustomOp3 for AconOp {
    fn name(&self) -> &'static str {
        "acon"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [x, pp, beta] = contiguous_f32("acon", [(xs, xl), (ps, pl), (bs, bl)])?;
        let (_, c, hw) = sizes(xl.dims(), pp.len(), beta.len())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw.max(1))
            .zip(x.par_chunks(hw.max(1)))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let (d, p2, b) = plane_params(plane, c, pp, beta);
                widest_simd(
                    #[inline(always)]
                    || {
                        for (y, &x) in y.iter_mut().zip(x) {
                            let u = d * x;
                            *y = u * sigmoid(b * u) + p2 * x;
                        }
                    },
                );
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        pp: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = profile::span(Stage::ActivationBackward);
        let (n, c, hw) = sizes(x.dims(), pp.elem_count(), beta.elem_count())?;
        let (dx, dpp, dbeta) =
            with_f32_data("acon backward", [x, pp, beta, dy], |[x, pp, beta, dy]| {
                let mut dx = vec![0f32; x.len()];
                // Per plane: dx, and [Σ g·x·k, Σ g·x, Σ g·u²·s·(1 − s)].
                let sums: Vec<[f64; 3]> = dx
                    .par_chunks_mut(hw.max(1))
                    .zip(x.par_chunks(hw.max(1)).zip(dy.par_chunks(hw.max(1))))
                    .enumerate()
                    .map(|(plane, (dx, (x, dy)))| {
                        let (d, p2, b) = plane_params(plane, c, pp, beta);
                        widest_simd(
                            #[inline(always)]
                            || {
                                for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                                    *dx = g * (d * usk(x, d, b).2 + p2);
                                }
                                lane_sums(
                                    x,
                                    dy,
                                    #[inline(always)]
                                    |x, g| {
                                        let (u, s, k) = usk(x, d, b);
                                        [g * x * k, g * x, g * u * u * s * (1.0 - s)]
                                    },
                                )
                            },
                        )
                    })
                    .collect();
                let channel_sum =
                    |ch: usize, k: usize| (0..n).map(|i| sums[i * c + ch][k]).sum::<f64>();
                let dp1: Vec<f64> = (0..c).map(|ch| channel_sum(ch, 0)).collect();
                let dp2 = (0..c).map(|ch| channel_sum(ch, 1) - dp1[ch]);
                let dpp: Vec<f32> = dp1.iter().copied().chain(dp2).map(|v| v as f32).collect();
                // β per channel sums over the images; per image and channel it is the plane's.
                let dbeta: Vec<f32> = if beta.len() == c {
                    (0..c).map(|ch| channel_sum(ch, 2) as f32).collect()
                } else {
                    sums.iter().map(|s| s[2] as f32).collect()
                };
                (dx, dpp, dbeta)
            })?;
        let tensor = |v: Vec<f32>, like: &Tensor| Tensor::from_vec(v, like.shape(), like.device());
        Ok((
            Some(tensor(dx, x)?),
            Some(tensor(dpp, pp)?),
            Some(tensor(dbeta, beta)?),
        ))
    }
}

/// ACON on f32 `x` (N, C, ...), with `p1` and `p2` of C values and `beta` of C values
/// (ACON-C) or N·C (Meta-ACON-C, image-major); differentiable in all four.
pub fn apply(x: &Tensor, p1: &Tensor, p2: &Tensor, beta: &Tensor) -> Result<Tensor> {
    if portable::wanted(x.device()) {
        return portable::acon(x, p1, p2, beta);
    }
    let pp = Tensor::cat(&[p1.flatten_all()?, p2.flatten_all()?], 0)?;
    x.contiguous()?
        .apply_op3(&pp, &beta.flatten_all()?.contiguous()?, AconOp)
}
