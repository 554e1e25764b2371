//! 2-D max pooling with padding (candle's has none, and no backward unless the kernel
//! equals the stride, as SPPF's k5 s1 p2 needs). Padding counts as -inf, as in torch;
//! the gradient goes to the first maximum in scan order, as torch's CPU kernel picks it.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::portable;
use super::simd::widest_simd;
use super::storage::with_f32_data;
use super::window::valid_outputs;
use crate::util::profile::{self, Stage};

#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool2d {
    /// 0 when the window is larger than the padded input (then there is no output).
    fn out_size(&self, size: usize) -> usize {
        (size + 2 * self.padding)
            .checked_sub(self.kernel)
            .map_or(0, |span| span / self.stride + 1)
    }

    /// One plane's input gradient: each output's gradient added to the element it took,
    /// found from the forward's result `out`: the first element of the window in scan
    /// order equal to it (the first maximum, as torch's CPU kernel picks it; when every
    /// element is −inf, the first), or for a NaN result the window's last NaN (torch's scan
    /// takes each NaN it meets). A scan for the maximum itself branched unpredictably on
    /// every element; this one leaves its loop once per output.
    fn grad_plane(
        &self,
        (plane, (h, w)): (&[f32], (usize, usize)),
        (out, grad): (&[f32], &[f32]),
        dx: &mut [f32],
    ) {
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let span = |o: usize, size: usize| {
            let start = (o * self.stride) as isize - self.padding as isize;
            let end = ((start + self.kernel as isize) as usize).min(size);
            start.max(0) as usize..end
        };
        for oy in 0..oh {
            let rows = span(oy, h);
            for ox in 0..ow {
                let cols = span(ox, w);
                let o = oy * ow + ox;
                let result = out[o];
                let mut window = rows
                    .clone()
                    .flat_map(|y| cols.clone().map(move |x| y * w + x));
                let taken = if result.is_nan() {
                    window.rfind(|&i| plane[i].is_nan())
                } else {
                    window.find(|&i| plane[i] == result)
                };
                dx[taken.unwrap_or(rows.start * w + cols.start)] += grad[o];
            }
        }
    }

    /// The forward values of one plane, as a max over window rows of the max over window
    /// columns (2k comparisons per output instead of k²); NaN propagates as in torch.
    #[inline(always)]
    fn max_plane(
        &self,
        plane: &[f32],
        (h, w): (usize, usize),
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        if self.stride == 1 {
            return self.max_plane_stride1(plane, (h, w), out, scratch);
        }
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let row_max = scratch;
        row_max.clear();
        row_max.resize(h * ow, f32::NEG_INFINITY);
        for (src, dst) in plane.chunks_exact(w).zip(row_max.chunks_exact_mut(ow)) {
            for j in 0..self.kernel {
                let (lo, hi, x0) = valid_outputs(j, self.stride, self.padding, w, ow);
                max_into(&mut dst[lo..hi], src[x0..].iter().step_by(self.stride));
            }
        }
        for (oy, dst) in out.chunks_exact_mut(ow).take(oh).enumerate() {
            dst.fill(f32::NEG_INFINITY);
            for i in 0..self.kernel {
                let y = (oy * self.stride + i) as isize - self.padding as isize;
                if (0..h as isize).contains(&y) {
                    max_into(dst, &row_max[y as usize * ow..][..ow]);
                }
            }
        }
    }

    /// [`Self::max_plane`] at stride 1 (SPPF's, SPP's): the plane padded with −inf once,
    /// then k passes along the rows and k down the columns, each one loop over the whole
    /// plane, numbering positions over the padded width (the columns past each output row
    /// are computed and dropped). Row by row, yolov5n's 20×20 planes made hundreds of short
    /// loops whose overhead was most of the pooling's time.
    #[inline(always)]
    fn max_plane_stride1(
        &self,
        plane: &[f32],
        (h, w): (usize, usize),
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let (k, pad) = (self.kernel, self.padding);
        let (wp, hp) = (w + 2 * pad, h + 2 * pad);
        let (oh, ow, padded_len) = (hp + 1 - k, wp + 1 - k, hp * wp);
        // The padded plane, k − 1 floats of slack for the last row's dropped columns, then
        // each padded position's max along its row (written whole below: no fill).
        scratch.resize(scratch.len().max(2 * padded_len + k), 0.0);
        let (padded, along_rows) = scratch[..2 * padded_len + k].split_at_mut(padded_len + k);
        padded.fill(f32::NEG_INFINITY);
        for (dst, src) in padded[pad * wp..]
            .chunks_exact_mut(wp)
            .zip(plane.chunks_exact(w))
        {
            dst[pad..pad + w].copy_from_slice(src);
        }
        along_rows.copy_from_slice(&padded[..padded_len]);
        for j in 1..k {
            max_into(along_rows, &padded[j..][..padded_len]);
        }
        // Down the columns, into the padded plane's floats (no longer needed).
        let windows = &mut padded[..oh * wp];
        windows.copy_from_slice(&along_rows[..oh * wp]);
        for i in 1..k {
            max_into(windows, &along_rows[i * wp..][..oh * wp]);
        }
        for (dst, src) in out.chunks_exact_mut(ow).zip(windows.chunks_exact(wp)) {
            dst.copy_from_slice(&src[..ow]);
        }
    }
}

/// `dst = max(dst, src)` elementwise, a NaN on either side winning, as in torch.
#[inline(always)]
fn max_into<'a>(dst: &mut [f32], src: impl IntoIterator<Item = &'a f32>) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = if *d > v || d.is_nan() { *d } else { v };
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::storage::contiguous::<f32>("max_pool2d", s, l)?;
        let dims = l.shape().dims();
        if dims.len() != 4
            || dims[2] + 2 * self.padding < self.kernel
            || dims[3] + 2 * self.padding < self.kernel
        {
            candle_core::bail!(
                "max_pool2d: input {dims:?} too small for kernel {} with padding {}",
                self.kernel,
                self.padding
            );
        }
        let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each_init(Vec::new, |scratch, (out, plane)| {
                widest_simd(
                    #[inline(always)]
                    || self.max_plane(plane, (h, w), out, scratch),
                )
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let _t = profile::span(Stage::PoolUpsampleBackward);
        let (_, _, h, w) = arg.dims4()?;
        let (_, _, oh, ow) = res.dims4()?;
        let dx = with_f32_data("max_pool2d backward", [arg, res, grad], |[x, y, g]| {
            let mut dx = vec![0f32; x.len()];
            dx.par_chunks_mut(h * w)
                .zip(x.par_chunks(h * w))
                .zip(y.par_chunks(oh * ow).zip(g.par_chunks(oh * ow)))
                .for_each(|((dx, x), (y, g))| self.grad_plane((x, (h, w)), (y, g), dx));
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Max pooling of an f32 NCHW tensor; differentiable.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let _t = profile::span(Stage::PoolUpsampleForward);
    if portable::wanted(x.device()) {
        return portable::max_pool2d(x, kernel, stride, padding);
    }
    x.contiguous()?.apply_op1(MaxPool2d {
        kernel,
        stride,
        padding,
    })
}
