//! 2-D convolution as im2col + GEMM, forward and backward, as one candle custom op.
//! candle's own backward runs the input gradient through a direct conv_transpose2d loop
//! and computes it even for the input image; here both gradients are GEMMs over the same
//! unfolded columns, and the input gradient is skipped when nothing upstream needs it.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
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

    fn forward(&self, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (plane, kdim, cog) = (self.plane(), self.kdim(), self.cog());
        let threads = self.gemm_threads();
        let mut y = vec![0f32; self.n * self.co * plane];
        y.par_chunks_mut(self.co * plane).zip(x.par_chunks(self.image())).for_each_init(Vec::new, |scratch, (y, x)| {
            for g in 0..self.groups() {
                let cols = self.columns(x, g, scratch);
                let wg = MatRef::rows(&w[g * cog * kdim..][..cog * kdim], cog, kdim);
                matmul(&mut y[g * cog * plane..][..cog * plane], wg, MatRef::rows(cols, kdim, plane), false, threads);
            }
        });
        y
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

/// The op: `conv2d(x, weight)` without bias.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp(pub Conv2dParams);

fn f32_data(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let geo = Geometry::new(xl.dims(), wl.dims(), self.0)?;
        let x = crate::act::kernels::contiguous::<f32>("conv2d", xs, xl)?;
        let w = crate::act::kernels::contiguous::<f32>("conv2d", ws, wl)?;
        Ok((CpuStorage::F32(geo.forward(x, w)), Shape::from((geo.n, geo.co, geo.oh, geo.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Everything but the input-gradient pass counts as the weight gradient.
        let _t = profile::span(Stage::ConvBackwardWeight);
        let geo = Geometry::new(x.dims(), w.dims(), self.0)?;
        // The input image (or any constant) needs no gradient.
        let want_dx = x.track_op();
        let (dx, dw) = geo.backward(&f32_data(x)?, &f32_data(w)?, &f32_data(dy)?, want_dx);
        let dx = dx.map(|dx| Tensor::from_vec(dx, x.shape(), x.device())).transpose()?;
        Ok((dx, Some(Tensor::from_vec(dw, w.shape(), w.device())?)))
    }
}

/// `conv2d` of f32 NCHW `x` with `weight` (out, in / groups, kh, kw); differentiable in both.
pub fn conv2d(x: &Tensor, weight: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    let _t = profile::span(Stage::ConvForward);
    x.contiguous()?.apply_op2(&weight.contiguous()?, Conv2dOp(params))
}
