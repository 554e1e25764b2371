//! 2-D convolution as im2col + GEMM, forward and backward, as one candle custom op.
//! candle's own backward runs the input gradient through a direct conv_transpose2d loop
//! and computes it even for the input image; here both gradients are GEMMs over the same
//! unfolded columns, and the input gradient is skipped when nothing upstream needs it.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use crate::act::kernels::{contiguous, with_f32_data};
use crate::profile::{self, Stage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    p: Conv2dParams,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], p: Conv2dParams) -> Result<Geometry> {
        let ([n, c, h, wd], [co, cg, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expected 4-D input and weight, got {x:?} and {w:?}");
        };
        let g = p.groups.max(1);
        if c % g != 0 || co % g != 0 || c / g != *cg {
            candle_core::bail!("conv2d: input {x:?} and weight {w:?} do not fit groups={g}");
        }
        let span = |k: usize| p.dilation * (k - 1) + 1;
        if h + 2 * p.padding < span(*kh) || wd + 2 * p.padding < span(*kw) || p.stride == 0 {
            candle_core::bail!("conv2d: input {x:?} is smaller than the kernel {w:?}");
        }
        let out = |size: usize, k: usize| (size + 2 * p.padding - span(k)) / p.stride + 1;
        Ok(Geometry { n: *n, c: *c, h: *h, w: *wd, co: *co, kh: *kh, kw: *kw, oh: out(*h, *kh), ow: out(*wd, *kw), p: Conv2dParams { groups: g, ..p } })
    }

    fn groups(&self) -> usize {
        self.p.groups
    }
    fn cg(&self) -> usize {
        self.c / self.groups()
    }
    fn cog(&self) -> usize {
        self.co / self.groups()
    }
    /// Rows of the unfolded columns per group: input channels × kernel taps.
    fn kdim(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn plane(&self) -> usize {
        self.oh * self.ow
    }
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }
    /// A 1×1, stride-1, unpadded, ungrouped conv reads its input as the columns directly.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == 1 && self.p.padding == 0 && self.groups() == 1
    }

    /// For kernel column `kj`: the output columns whose input column lies inside the
    /// image, as `ox_lo..ox_hi`, and the input column of `ox_lo`.
    fn valid_columns(&self, kj: usize) -> (usize, usize, isize) {
        let (s, pad, off) = (self.p.stride as isize, self.p.padding as isize, (kj * self.p.dilation) as isize);
        let first = (pad - off).max(0);
        let lo = ((first + s - 1) / s) as usize;
        let last = self.w as isize - 1 + pad - off;
        let hi = if last < 0 { 0 } else { ((last / s + 1) as usize).min(self.ow) };
        let lo = lo.min(hi);
        (lo, hi, lo as isize * s - pad + off)
    }

    /// Unfolds group `g` of one image into `cols` (kdim × plane, row-major).
    fn im2col(&self, x: &[f32], g: usize, cols: &mut [f32]) {
        let (s, pad, d) = (self.p.stride, self.p.padding as isize, self.p.dilation as isize);
        for ci in 0..self.cg() {
            let plane_in = &x[(g * self.cg() + ci) * self.h * self.w..][..self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let (lo, hi, ix0) = self.valid_columns(kj);
                    let row = &mut cols[((ci * self.kh + ki) * self.kw + kj) * self.plane()..][..self.plane()];
                    for (oy, out) in row.chunks_exact_mut(self.ow).enumerate() {
                        let iy = oy as isize * s as isize - pad + ki as isize * d;
                        if iy < 0 || iy >= self.h as isize || lo == hi {
                            out.fill(0.0);
                            continue;
                        }
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        let src = &plane_in[iy as usize * self.w + ix0 as usize..];
                        if s == 1 {
                            out[lo..hi].copy_from_slice(&src[..hi - lo]);
                        } else {
                            out[lo..hi].iter_mut().zip(src.iter().step_by(s)).for_each(|(o, v)| *o = *v);
                        }
                    }
                }
            }
        }
    }

    /// Folds `cols` of group `g` back onto one image's input gradient, adding.
    fn col2im(&self, cols: &[f32], g: usize, dx: &mut [f32]) {
        let (s, pad, d) = (self.p.stride, self.p.padding as isize, self.p.dilation as isize);
        for ci in 0..self.cg() {
            let plane_in = &mut dx[(g * self.cg() + ci) * self.h * self.w..][..self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let (lo, hi, ix0) = self.valid_columns(kj);
                    let row = &cols[((ci * self.kh + ki) * self.kw + kj) * self.plane()..][..self.plane()];
                    for (oy, src) in row.chunks_exact(self.ow).enumerate() {
                        let iy = oy as isize * s as isize - pad + ki as isize * d;
                        if iy < 0 || iy >= self.h as isize || lo == hi {
                            continue;
                        }
                        let dst = &mut plane_in[iy as usize * self.w + ix0 as usize..];
                        dst.iter_mut().step_by(s).zip(&src[lo..hi]).for_each(|(o, v)| *o += v);
                    }
                }
            }
        }
    }

    /// The columns of group `g` of image `x`: the image itself for pointwise convs.
    fn columns<'a>(&self, x: &'a [f32], g: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        if self.is_pointwise() {
            return x;
        }
        scratch.resize(self.kdim() * self.plane(), 0.0);
        self.im2col(x, g, scratch);
        scratch
    }

    /// Threads for each GEMM: all of them when one image is the whole batch, else one per
    /// image with the images spread over the threads.
    fn gemm_threads(&self) -> usize {
        if self.n >= rayon::current_num_threads() { 1 } else { rayon::current_num_threads() }
    }

    /// The convolution, plus `bias` per output channel when given: the GEMM then adds
    /// onto planes that start at the bias (no separate pass, no broadcast in the graph).
    fn forward(&self, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let (plane, kdim, cog) = (self.plane(), self.kdim(), self.cog());
        let threads = self.gemm_threads();
        let mut y = vec![0f32; self.n * self.co * plane];
        y.par_chunks_mut(self.co * plane).zip(x.par_chunks(self.image())).for_each_init(Vec::new, |scratch, (y, x)| {
            if let Some(bias) = bias {
                y.chunks_exact_mut(plane).zip(bias).for_each(|(out, &b)| out.fill(b));
            }
            for g in 0..self.groups() {
                let cols = self.columns(x, g, scratch);
                let wg = MatRef::rows(&w[g * cog * kdim..][..cog * kdim], cog, kdim);
                matmul(&mut y[g * cog * plane..][..cog * plane], wg, MatRef::rows(cols, kdim, plane), bias.is_some(), threads);
            }
        });
        y
    }

    /// The bias gradient: dY summed per output channel over the images and the plane.
    fn bias_grad(&self, dy: &[f32]) -> Vec<f32> {
        let plane = self.plane();
        (0..self.co)
            .into_par_iter()
            .map(|co| (0..self.n).map(|i| dy[(i * self.co + co) * plane..][..plane].iter().sum::<f32>()).sum())
            .collect()
    }

    /// The weight gradient, and the input gradient when `want_dx`, in two parallel
    /// passes over the images (so that a profile can tell the two apart; neither needs
    /// the other's intermediates).
    fn backward(&self, x: &[f32], w: &[f32], dy: &[f32], want_dx: bool) -> (Option<Vec<f32>>, Vec<f32>) {
        let dw = self.weight_grad(x, dy);
        let dx = want_dx.then(|| {
            let _t = profile::span(Stage::ConvBackwardInput);
            self.input_grad(w, dy)
        });
        (dx, dw)
    }

    /// dW = Σ over images of dY · colsᵀ. Each image's share is summed in image order, so
    /// the result does not depend on how the images were spread over threads (runs
    /// repeat bit for bit).
    fn weight_grad(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (plane, kdim, cog) = (self.plane(), self.kdim(), self.cog());
        let threads = self.gemm_threads();
        let partials: Vec<Vec<f32>> = x
            .par_chunks(self.image())
            .zip(dy.par_chunks(self.co * plane))
            .map_init(Vec::new, |scratch, (x, dy)| {
                let mut dw = vec![0f32; self.co * kdim];
                for g in 0..self.groups() {
                    let dyg = MatRef::rows(&dy[g * cog * plane..][..cog * plane], cog, plane);
                    let cols = self.columns(x, g, scratch);
                    matmul(&mut dw[g * cog * kdim..][..cog * kdim], dyg, MatRef::rows(cols, kdim, plane).t(), false, threads);
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; self.co * kdim];
        for partial in &partials {
            dw.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
        }
        dw
    }

    /// dX: per image and group, dcols = W_gᵀ · dY_g folded back onto the input.
    fn input_grad(&self, w: &[f32], dy: &[f32]) -> Vec<f32> {
        let (plane, kdim, cog) = (self.plane(), self.kdim(), self.cog());
        let threads = self.gemm_threads();
        let mut dx = vec![0f32; self.n * self.image()];
        dx.par_chunks_mut(self.image()).zip(dy.par_chunks(self.co * plane)).for_each_init(Vec::new, |dcols, (dx, dy)| {
            for g in 0..self.groups() {
                let dyg = MatRef::rows(&dy[g * cog * plane..][..cog * plane], cog, plane);
                let wg = MatRef::rows(&w[g * cog * kdim..][..cog * kdim], cog, kdim);
                dcols.resize(kdim * plane, 0.0);
                matmul(dcols, wg.t(), dyg, false, threads);
                if self.is_pointwise() {
                    dx.iter_mut().zip(dcols.iter()).for_each(|(a, b)| *a += b);
                } else {
                    self.col2im(dcols, g, dx);
                }
            }
        });
        dx
    }
}

/// The op: `conv2d(x, weight)` (two arguments) or `conv2d(x, weight) + bias` (three).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp(pub Conv2dParams);

impl Conv2dOp {
    fn fwd(&self, (xs, xl): (&CpuStorage, &Layout), (ws, wl): (&CpuStorage, &Layout), bias: Option<(&CpuStorage, &Layout)>) -> Result<(CpuStorage, Shape)> {
        let geo = Geometry::new(xl.dims(), wl.dims(), self.0)?;
        let x = contiguous::<f32>("conv2d", xs, xl)?;
        let w = contiguous::<f32>("conv2d", ws, wl)?;
        let bias = bias.map(|(bs, bl)| contiguous::<f32>("conv2d", bs, bl)).transpose()?;
        if let Some(b) = bias.filter(|b| b.len() != geo.co) {
            candle_core::bail!("conv2d: {} biases for {} output channels", b.len(), geo.co);
        }
        Ok((CpuStorage::F32(geo.forward(x, w, bias)), Shape::from((geo.n, geo.co, geo.oh, geo.ow))))
    }

    /// The input gradient (None for a constant input, such as the image), the weight
    /// gradient, and the bias gradient when `with_bias`.
    fn gradients(&self, x: &Tensor, w: &Tensor, dy: &Tensor, with_bias: bool) -> Result<(Option<Tensor>, Tensor, Option<Vec<f32>>)> {
        // Everything but the input-gradient pass counts as the weight gradient.
        let _t = profile::span(Stage::ConvBackwardWeight);
        let geo = Geometry::new(x.dims(), w.dims(), self.0)?;
        let want_dx = x.track_op();
        let (dx, dw, db) = with_f32_data("conv2d backward", [x, w, dy], |[x, w, dy]| {
            let (dx, dw) = geo.backward(x, w, dy, want_dx);
            (dx, dw, with_bias.then(|| geo.bias_grad(dy)))
        })?;
        let dx = dx.map(|dx| Tensor::from_vec(dx, x.shape(), x.device())).transpose()?;
        Ok((dx, Tensor::from_vec(dw, w.shape(), w.device())?, db))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        self.fwd((xs, xl), (ws, wl), None)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.gradients(x, w, dy, false)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-gemm-bias"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout, bs: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        self.fwd((xs, xl), (ws, wl), Some((bs, bl)))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.gradients(x, w, dy, true)?;
        let db = db.map(|db| Tensor::from_vec(db, b.shape(), b.device())).transpose()?;
        Ok((dx, Some(dw), db))
    }
}

/// `conv2d` of f32 NCHW `x` with `weight` (out, in / groups, kh, kw); differentiable in both.
pub fn conv2d(x: &Tensor, weight: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    let _t = profile::span(Stage::ConvForward);
    x.contiguous()?.apply_op2(&weight.contiguous()?, Conv2dOp(params))
}

/// `conv2d` plus one `bias` per output channel, in one op: where a broadcast add would
/// leave a broadcast node whose backward is a slow strided sum over (n, h, w), the bias
/// gradient is one pass over dY inside the convolution's backward.
pub fn conv2d_with_bias(x: &Tensor, weight: &Tensor, bias: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    let _t = profile::span(Stage::ConvForward);
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, Conv2dOp(params))
}
