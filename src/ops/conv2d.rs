//! 2-D convolution as im2col + GEMM, forward and backward, as one candle custom op. On
//! CPUs with AVX-512, the forward of ungrouped convolutions runs without unfolding
//! ([`direct`]). candle's own backward runs the input gradient through a direct
//! conv_transpose2d loop and computes it even for the input image; here both gradients are
//! GEMMs over the same unfolded columns, and the input gradient is skipped when nothing
//! upstream needs it.
//! Depthwise convolutions at stride 1 (FReLU's) run as direct per-plane loops instead.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;

use super::concat;
use super::elementwise::Elementwise;
use super::fake_quant;
use super::gemm::{matmul, matmul_strided, MatRef};
use super::pointwise;
use super::portable;
use super::scalar::Identity;
use super::simd::{lane_sums, widest_simd};
use super::storage::{contiguous, contiguous_f32, with_f32_data, with_f32_slices};
use super::window::valid_outputs;
use crate::util::profile::{self, Stage};

pub use super::window::Conv2dParams;

#[cfg(target_arch = "x86_64")]
mod direct;

/// Floats per task when the images' weight-gradient shares are summed.
const SUM_CHUNK: usize = 1 << 14;

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

thread_local! {
    /// Each thread's zero-padded plane for the depthwise forward, kept between planes.
    static PADDED_PLANE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
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
        Ok(Geometry {
            n: *n,
            c: *c,
            h: *h,
            w: *wd,
            co: *co,
            kh: *kh,
            kw: *kw,
            oh: out(*h, *kh),
            ow: out(*wd, *kw),
            p: Conv2dParams { groups: g, ..p },
        })
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
        self.kh == 1
            && self.kw == 1
            && self.p.stride == 1
            && self.p.padding == 0
            && self.groups() == 1
    }

    /// One filter per channel at stride 1 (FReLU's funnel): computed directly, where the
    /// GEMM route would multiply a 1 × k² row per channel.
    fn is_depthwise(&self) -> bool {
        self.groups() == self.c && self.co == self.c && self.p.stride == 1 && self.p.dilation == 1
    }

    /// For each output row `oy` and kernel row `ki` whose input row lies inside the image:
    /// `(oy, ki, iy)`.
    #[inline(always)]
    fn valid_rows(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.oh).flat_map(move |oy| self.valid_rows_of(oy).map(move |(ki, iy)| (oy, ki, iy)))
    }

    /// Depthwise forward of one channel plane: each output is the bias plus its k² taps,
    /// summed in kernel order (row, then column), read from `padded`, the plane with its
    /// zero padding (the padding's taps add zeros). Numbering outputs q = oy · wp + ox over
    /// the padded rows' width wp, tap (ki, kj) of every output is padded[q + ki · wp + kj],
    /// so a run of sums (in L1) is vectorised over q whatever the plane's size: 3×3 taps all
    /// at once, other sizes one pass per tap (the `wp − ow` sums past each row are
    /// dropped). Then `act` on the sums, or with `max_with`, FReLU's `max(x, ·)` against
    /// that plane (of the output's size), with torch's NaN rule. Writes every output.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn depthwise_plane(
        &self,
        x: &[f32],
        k: &[f32],
        bias: f32,
        act: Option<&dyn Elementwise>,
        max_with: Option<&[f32]>,
        padded: &mut Vec<f32>,
        out: &mut [MaybeUninit<f32>],
    ) {
        // Sums per run: 4 KiB, in L1 beside the padded rows it reads.
        const RUN: usize = 1024;
        let (pad, kw) = (self.p.padding, self.kw);
        // At stride 1, ow + kw - 1 = wp: every tap lies in the padded plane; the last row's
        // dropped sums read kw - 1 floats past it.
        let (wp, hp) = (self.w + 2 * pad, self.h + 2 * pad);
        padded.resize(padded.len().max(hp * wp + kw), 0.0);
        let padded = &mut padded[..hp * wp + kw];
        // Every float is written: what the previous plane left needs no clearing.
        padded[..pad * wp].fill(0.0);
        padded[(pad + self.h) * wp..].fill(0.0);
        for (row, src) in padded[pad * wp..]
            .chunks_exact_mut(wp)
            .zip(x.chunks_exact(self.w))
        {
            row[..pad].fill(0.0);
            row[pad..pad + self.w].copy_from_slice(src);
            row[pad + self.w..].fill(0.0);
        }
        let padded = &padded[..];
        let mut sums = [0f32; RUN];
        let positions = self.oh * wp;
        for q0 in (0..positions).step_by(RUN) {
            let sums = &mut sums[..RUN.min(positions - q0)];
            let len = sums.len();
            let tap = |t: usize| (k[t], &padded[q0 + t / kw * wp + t % kw..][..len]);
            if (self.kh, kw) == (3, 3) {
                // Each sum in a register through its nine taps (a third faster, measured).
                let taps: [_; 9] = std::array::from_fn(tap);
                for (q, sum) in sums.iter_mut().enumerate() {
                    *sum = taps.iter().fold(bias, |acc, &(wk, src)| acc + wk * src[q]);
                }
            } else {
                sums.fill(bias);
                for (wk, src) in (0..self.kh * kw).map(tap) {
                    for (sum, &v) in sums.iter_mut().zip(src) {
                        *sum += wk * v;
                    }
                }
            }
            if let Some(act) = act {
                act.bias_in_place(0.0, sums);
            }
            // The run's pieces of output rows.
            let end = q0 + sums.len();
            for oy in q0 / wp..end.div_ceil(wp) {
                let (lo, hi) = (q0.max(oy * wp), end.min(oy * wp + self.ow));
                if lo >= hi {
                    continue;
                }
                let at = oy * self.ow + lo - oy * wp;
                let (dst, run) = (&mut out[at..at + hi - lo], &sums[lo - q0..hi - q0]);
                match max_with {
                    Some(m) => {
                        for ((o, &v), &sum) in dst.iter_mut().zip(&m[at..]).zip(run) {
                            o.write(if v.is_nan() || v > sum { v } else { sum });
                        }
                    }
                    None => {
                        for (o, &sum) in dst.iter_mut().zip(run) {
                            o.write(sum);
                        }
                    }
                }
            }
        }
    }

    /// The (kernel row, input row) pairs of output row `oy` whose input row is inside the
    /// image, kernel rows in order.
    #[inline(always)]
    fn valid_rows_of(&self, oy: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let pad = self.p.padding as isize;
        (0..self.kh).filter_map(move |ki| {
            let iy = oy as isize - pad + ki as isize;
            (0..self.h as isize)
                .contains(&iy)
                .then_some((ki, iy as usize))
        })
    }

    /// The depthwise forward of every plane, then `act`, or (FReLU) `max(x, ·)` with
    /// `max_with` (the input planes again).
    fn depthwise_forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        act: Option<&dyn Elementwise>,
        max_with: Option<&[f32]>,
    ) -> Vec<f32> {
        assert!(
            act.is_none() || max_with.is_none(),
            "depthwise: act or max, not both"
        );
        let (plane, taps) = (self.plane(), self.kh * self.kw);
        let len = self.n * self.co * plane;
        let mut y = Vec::with_capacity(len);
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(plane)
            .zip(x.par_chunks(self.h * self.w))
            .enumerate()
            .for_each(|(at, (out, x))| {
                let ch = at % self.c;
                let (k, b) = (&w[ch * taps..][..taps], bias.map_or(0.0, |b| b[ch]));
                let m = max_with.map(|m| &m[at * plane..][..plane]);
                PADDED_PLANE.with_borrow_mut(|padded| {
                    widest_simd(
                        #[inline(always)]
                        || self.depthwise_plane(x, k, b, act, m, padded, out),
                    )
                });
            });
        // SAFETY: every plane wrote each of its outputs (`depthwise_plane`).
        unsafe { y.set_len(len) };
        y
    }

    /// Depthwise input gradient of one channel plane, added onto `dx`.
    #[inline(always)]
    fn depthwise_plane_grad(&self, dy: &[f32], k: &[f32], dx: &mut [f32]) {
        for (oy, ki, iy) in self.valid_rows() {
            let (row_dy, row_dx) = (
                &dy[oy * self.ow..][..self.ow],
                &mut dx[iy * self.w..][..self.w],
            );
            for kj in 0..self.kw {
                let (lo, hi, ix0) = self.valid_columns(kj);
                let wk = k[ki * self.kw + kj];
                row_dx[ix0..]
                    .iter_mut()
                    .zip(&row_dy[lo..hi])
                    .for_each(|(o, &g)| *o += wk * g);
            }
        }
    }

    /// Depthwise weight gradient of channel `ch`: per tap, Σ over images and positions of
    /// dY · X (by [`lane_sums`]).
    #[inline(always)]
    fn depthwise_weight_grad(&self, x: &[f32], dy: &[f32], ch: usize) -> Vec<f32> {
        let mut dk = vec![0f64; self.kh * self.kw];
        for i in 0..self.n {
            let (x, dy) = (
                &x[(i * self.c + ch) * self.h * self.w..][..self.h * self.w],
                &dy[(i * self.c + ch) * self.plane()..][..self.plane()],
            );
            for (oy, ki, iy) in self.valid_rows() {
                for kj in 0..self.kw {
                    let (lo, hi, ix0) = self.valid_columns(kj);
                    let row_x = &x[iy * self.w + ix0..][..hi - lo];
                    dk[ki * self.kw + kj] +=
                        lane_sums(row_x, &dy[oy * self.ow + lo..][..hi - lo], |a, b| [a * b])[0];
                }
            }
        }
        dk.into_iter().map(|v| v as f32).collect()
    }

    /// For kernel column `kj`: the output columns whose input column lies inside the
    /// image, as `ox_lo..ox_hi`, and the input column of `ox_lo`.
    #[inline(always)]
    fn valid_columns(&self, kj: usize) -> (usize, usize, usize) {
        valid_outputs(
            kj * self.p.dilation,
            self.p.stride,
            self.p.padding,
            self.w,
            self.ow,
        )
    }

    /// Output rows per tile. A tile's unfolded columns (kdim × rows · ow) stay in L2
    /// while the GEMM reads them, and the output tile is still in cache for the bias and
    /// activation; when there are fewer images than threads, tiles are cut small enough
    /// for every thread to get some.
    fn tile_rows(&self) -> usize {
        const TILE_FLOATS: usize = 1 << 16;
        // Narrower tiles would spend more on packing the weights than on multiplying.
        const MIN_TILE_COLS: usize = 256;
        let threads = rayon::current_num_threads();
        let min_rows = MIN_TILE_COLS.div_ceil(self.ow);
        let mut rows = (TILE_FLOATS / self.kdim()).div_ceil(self.ow).max(min_rows);
        if self.n < threads {
            let tiles_per_image = (2 * threads).div_ceil(self.n);
            rows = rows.min(self.oh.div_ceil(tiles_per_image).max(min_rows));
        }
        rows.clamp(1, self.oh)
    }

    /// The output-row ranges of the tiles of one image.
    fn tiles(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let rows = self.tile_rows();
        (0..self.oh)
            .step_by(rows)
            .map(move |start| start..(start + rows).min(self.oh))
    }

    /// Unfolds output rows `rows` of group `g` of one image into `cols`
    /// (kdim × rows · ow, row-major).
    fn im2col(&self, x: &[f32], g: usize, rows: Range<usize>, cols: &mut [f32]) {
        let (s, pad, d) = (
            self.p.stride,
            self.p.padding as isize,
            self.p.dilation as isize,
        );
        let len = rows.len() * self.ow;
        for ci in 0..self.cg() {
            let plane_in = &x[(g * self.cg() + ci) * self.h * self.w..][..self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let (lo, hi, ix0) = self.valid_columns(kj);
                    let row = &mut cols[((ci * self.kh + ki) * self.kw + kj) * len..][..len];
                    for (out, oy) in row.chunks_exact_mut(self.ow).zip(rows.clone()) {
                        let iy = oy as isize * s as isize - pad + ki as isize * d;
                        if iy < 0 || iy >= self.h as isize || lo == hi {
                            out.fill(0.0);
                            continue;
                        }
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        gather(&mut out[lo..hi], &plane_in[iy as usize * self.w + ix0..], s);
                    }
                }
            }
        }
    }

    /// Folds the columns of output rows `rows` of group `g` back onto one image's input
    /// gradient, adding.
    fn col2im(&self, cols: &[f32], g: usize, rows: Range<usize>, dx: &mut [f32]) {
        let (s, pad, d) = (
            self.p.stride,
            self.p.padding as isize,
            self.p.dilation as isize,
        );
        let len = rows.len() * self.ow;
        for ci in 0..self.cg() {
            let plane_in = &mut dx[(g * self.cg() + ci) * self.h * self.w..][..self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let (lo, hi, ix0) = self.valid_columns(kj);
                    let row = &cols[((ci * self.kh + ki) * self.kw + kj) * len..][..len];
                    for (src, oy) in row.chunks_exact(self.ow).zip(rows.clone()) {
                        let iy = oy as isize * s as isize - pad + ki as isize * d;
                        if iy < 0 || iy >= self.h as isize || lo == hi {
                            continue;
                        }
                        let dst = &mut plane_in[iy as usize * self.w + ix0..];
                        let src = &src[lo..hi];
                        // At stride 1 a plain zip, which vectorises; `step_by` does not.
                        if s == 1 {
                            dst.iter_mut().zip(src).for_each(|(o, v)| *o += v);
                        } else {
                            dst.iter_mut()
                                .step_by(s)
                                .zip(src)
                                .for_each(|(o, v)| *o += v);
                        }
                    }
                }
            }
        }
    }

    /// The unfolded columns (kdim × rows · ow) of output rows `rows` of group `g` of image
    /// `x`: a view of the image itself for pointwise convs.
    fn columns<'a>(
        &self,
        x: &'a [f32],
        g: usize,
        rows: Range<usize>,
        scratch: &'a mut Vec<f32>,
    ) -> MatRef<'a> {
        let len = rows.len() * self.ow;
        if self.is_pointwise() {
            return MatRef {
                data: &x[rows.start * self.ow..],
                rows: self.c,
                cols: len,
                row_stride: self.plane(),
                col_stride: 1,
            };
        }
        scratch.resize(self.kdim() * len, 0.0);
        self.im2col(x, g, rows, scratch);
        MatRef::rows(scratch, self.kdim(), len)
    }

    /// Output rows `rows` of group `g`'s channels in `y` (one image's co × plane): a view.
    fn tile<'a>(&self, y: &'a [f32], g: usize, rows: &Range<usize>) -> MatRef<'a> {
        let start = g * self.cog() * self.plane() + rows.start * self.ow;
        MatRef {
            data: &y[start..],
            rows: self.cog(),
            cols: rows.len() * self.ow,
            row_stride: self.plane(),
            col_stride: 1,
        }
    }

    /// Threads for each GEMM: one when the images (or tiles) already keep every thread
    /// busy, all of them otherwise.
    fn gemm_threads(&self, tasks: usize) -> usize {
        let threads = rayon::current_num_threads();
        if tasks >= threads {
            1
        } else {
            threads
        }
    }

    /// Whether the forward runs on the unfolding-free kernel (depthwise convs have their
    /// own pass).
    fn runs_direct(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if !self.is_depthwise() && direct::applies(self) {
            return true;
        }
        false
    }

    /// Whether the input may come in parts (the tensors a concatenation along the channels
    /// would join): the unfolding-free kernel reads a pointwise conv's parts where they lie.
    fn reads_parts(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.runs_direct() && direct::reads_in_place(self) {
            return true;
        }
        false
    }

    /// The convolution of the input `parts` (their channels following each other; one part
    /// unless [`Self::reads_parts`]), plus `bias` per output channel when given, then `act`,
    /// then plus `residual` (the output's shape) when given: the unfolding-free kernel adds
    /// it as it stores each tile; the other routes add it in a pass of their own. The output
    /// is NCHW, or with `output_parts` (only where the input may come in parts), each part's
    /// (n, channels, plane) block after the one before.
    fn forward(
        &self,
        parts: &[&[f32]],
        w: &[f32],
        bias: Option<&[f32]>,
        act: Option<&dyn Elementwise>,
        residual: Option<&[f32]>,
        output_parts: &[usize],
    ) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if self.runs_direct() {
            return direct::forward(self, parts, w, bias, act, residual, output_parts);
        }
        let ([x], []) = (parts, output_parts) else {
            unreachable!("only the unfolding-free kernel reads or writes a tensor in parts")
        };
        let mut y = if self.is_depthwise() {
            self.depthwise_forward(x, w, bias, act, None)
        } else {
            self.unfolded_forward(x, w, bias, act)
        };
        if let Some(residual) = residual {
            y.par_iter_mut()
                .with_min_len(1 << 14)
                .zip(residual)
                .for_each(|(y, &r)| *y += r);
        }
        y
    }

    /// The convolution, plus `bias` per output channel when given, then `act`, by im2col +
    /// GEMM: each (image, tile) task unfolds its columns, multiplies, and applies bias and
    /// activation to its output tile while that is still in cache.
    fn unfolded_forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        act: Option<&dyn Elementwise>,
    ) -> Vec<f32> {
        let (plane, kdim, cog) = (self.plane(), self.kdim(), self.cog());
        let tiles: Vec<Range<usize>> = self.tiles().collect();
        let tasks: Vec<(usize, &Range<usize>)> = (0..self.n)
            .flat_map(|i| tiles.iter().map(move |t| (i, t)))
            .collect();
        let threads = self.gemm_threads(tasks.len());
        let len = self.n * self.co * plane;
        let mut y = Vec::<f32>::with_capacity(len);
        let out = SharedOut(y.as_mut_ptr());
        tasks
            .par_iter()
            .for_each_init(Vec::new, |scratch, &(i, rows)| {
                #[allow(clippy::redundant_locals)]
                let out = out; // the whole wrapper, not its raw-pointer field, moves in
                let x = &x[i * self.image()..][..self.image()];
                let width = rows.len() * self.ow;
                for g in 0..self.groups() {
                    let cols = self.columns(x, g, rows.clone(), scratch);
                    let wg = MatRef::rows(&w[g * cog * kdim..][..cog * kdim], cog, kdim);
                    let first = (i * self.co + g * cog) * plane + rows.start * self.ow;
                    // SAFETY: task (i, rows) alone writes output rows `rows` of image i, all
                    // inside the `len` elements `y` holds; every element is written by exactly
                    // one task before `set_len` below.
                    unsafe { matmul_strided(out.0.add(first), plane, wg, cols, false, threads) };
                    if bias.is_none() && act.is_none() {
                        continue;
                    }
                    for r in 0..cog {
                        // SAFETY: as above: this task's own, just written, elements.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(out.0.add(first + r * plane), width)
                        };
                        let b = bias.map_or(0.0, |b| b[g * cog + r]);
                        act.unwrap_or(&Identity).bias_in_place(b, row);
                    }
                }
            });
        // SAFETY: the tasks above wrote all `len` elements (the tiles cover every output
        // row of every image and group).
        unsafe { y.set_len(len) };
        y
    }

    /// The bias gradient: dY summed per output channel over the images and the plane.
    fn bias_grad(&self, dy: &[f32]) -> Vec<f32> {
        let plane = self.plane();
        (0..self.co)
            .into_par_iter()
            .map(|co| {
                (0..self.n)
                    .map(|i| {
                        dy[(i * self.co + co) * plane..][..plane]
                            .iter()
                            .sum::<f32>()
                    })
                    .sum()
            })
            .collect()
    }

    /// The weight gradient, and the input gradient when `want_dx`, in two parallel
    /// passes over the images (so that a profile can tell the two apart; neither needs
    /// the other's intermediates).
    fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        want_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let dw = self.weight_grad(x, dy);
        let dx = want_dx.then(|| {
            let _t = profile::span(Stage::ConvBackwardInput);
            self.input_grad(w, dy)
        });
        (dx, dw)
    }

    /// dW = Σ over images and tiles of dY_tile · cols_tileᵀ. Each image's share is summed
    /// tile by tile, and the shares in image order, so the result does not depend on how
    /// the images were spread over threads (runs repeat bit for bit).
    fn weight_grad(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        if self.is_depthwise() {
            return (0..self.c)
                .into_par_iter()
                .flat_map_iter(|ch| {
                    widest_simd(
                        #[inline(always)]
                        || self.depthwise_weight_grad(x, dy, ch),
                    )
                })
                .collect();
        }
        let (kdim, cog) = (self.kdim(), self.cog());
        let threads = self.gemm_threads(self.n);
        // Both factors run along the sum (positions) in memory, and the GEMM copies one of
        // them into its packed layout first: the columns (kdim rows) for dY · colsᵀ, dY
        // (co rows) for cols · dYᵀ = dWᵀ. The second where it copies less (measured: the
        // packing was about a quarter of the weight gradient's time). Each group's block
        // stays in the product's orientation until the images are summed, and is
        // transposed once: per image, the scattered writes took a tenth of the time.
        let transposed = kdim >= cog;
        let block = cog * kdim;
        let partials: Vec<Vec<f32>> = x
            .par_chunks(self.image())
            .zip(dy.par_chunks(self.co * self.plane()))
            .map_init(Vec::new, |scratch, (x, dy)| {
                let mut dw = vec![0f32; self.co * kdim];
                for (g, dw) in dw.chunks_exact_mut(block).enumerate() {
                    for rows in self.tiles() {
                        let dyg = self.tile(dy, g, &rows);
                        let cols = self.columns(x, g, rows, scratch);
                        if transposed {
                            matmul(dw, cols, dyg.t(), true, threads);
                        } else {
                            matmul(dw, dyg, cols.t(), true, threads);
                        }
                    }
                }
                dw
            })
            .collect();
        // Summed in image order for every element, in chunks spread over the threads (the
        // whole sum ran on one before).
        let mut sum = vec![0f32; self.co * kdim];
        sum.par_chunks_mut(SUM_CHUNK)
            .enumerate()
            .for_each(|(at, sum)| {
                for partial in &partials {
                    let partial = &partial[at * SUM_CHUNK..][..sum.len()];
                    sum.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
                }
            });
        if !transposed {
            return sum;
        }
        let mut dw = vec![0f32; self.co * kdim];
        for (dw, dw_t) in dw.chunks_exact_mut(block).zip(sum.chunks_exact(block)) {
            for (j, column) in dw_t.chunks_exact(cog).enumerate() {
                for (r, &v) in column.iter().enumerate() {
                    dw[r * kdim + j] = v;
                }
            }
        }
        dw
    }

    /// dX: per image, group and tile, dcols = W_gᵀ · dY_tile folded back onto the input;
    /// for a pointwise conv the product is dX itself.
    fn input_grad(&self, w: &[f32], dy: &[f32]) -> Vec<f32> {
        let (plane, kdim, cog) = (self.plane(), self.kdim(), self.cog());
        let threads = self.gemm_threads(self.n);
        if self.is_depthwise() {
            let taps = self.kh * self.kw;
            let mut dx = vec![0f32; self.n * self.image()];
            dx.par_chunks_mut(self.h * self.w)
                .zip(dy.par_chunks(plane))
                .enumerate()
                .for_each(|(at, (dx, dy))| {
                    let ch = at % self.c;
                    let k = &w[ch * taps..][..taps];
                    widest_simd(
                        #[inline(always)]
                        || self.depthwise_plane_grad(dy, k, dx),
                    );
                });
            return dx;
        }
        let len = self.n * self.image();
        let mut dx = Vec::<f32>::with_capacity(len);
        // Not zero-filled up front (one thread's pass over the whole gradient): a pointwise
        // conv's product writes each image's gradient whole, and the other images are
        // zeroed by their own task before their columns are folded on.
        dx.spare_capacity_mut()[..len]
            .par_chunks_mut(self.image())
            .zip(dy.par_chunks(self.co * plane))
            .for_each_init(Vec::new, |dcols, (dx, dy)| {
                if self.is_pointwise() {
                    // SAFETY: this task's image alone, `image` floats; without accumulating
                    // the product only writes them.
                    unsafe {
                        matmul_strided(
                            dx.as_mut_ptr().cast(),
                            plane,
                            MatRef::rows(w, self.co, kdim).t(),
                            MatRef::rows(dy, self.co, plane),
                            false,
                            threads,
                        )
                    };
                    return;
                }
                dx.fill(MaybeUninit::new(0.0));
                // SAFETY: just initialised, and f32 has the layout of MaybeUninit<f32>.
                let dx =
                    unsafe { std::slice::from_raw_parts_mut(dx.as_mut_ptr().cast(), dx.len()) };
                for g in 0..self.groups() {
                    let wg = MatRef::rows(&w[g * cog * kdim..][..cog * kdim], cog, kdim);
                    for rows in self.tiles() {
                        dcols.resize(kdim * rows.len() * self.ow, 0.0);
                        matmul(dcols, wg.t(), self.tile(dy, g, &rows), false, threads);
                        self.col2im(dcols, g, rows, dx);
                    }
                }
            });
        // SAFETY: every image's task above wrote all of its floats.
        unsafe { dx.set_len(len) };
        dx
    }
}

/// `out[i] = src[i · stride]`. Stride 2 (every downsampling conv) has a vector path: a
/// plain strided loop stays scalar, and was a large share of unfolding.
fn gather(out: &mut [f32], src: &[f32], stride: usize) {
    let done = match stride {
        1 => {
            out.copy_from_slice(&src[..out.len()]);
            return;
        }
        2 => gather_even(out, src),
        _ => 0,
    };
    out[done..]
        .iter_mut()
        .zip(src[done * stride..].iter().step_by(stride))
        .for_each(|(o, v)| *o = *v);
}

/// The vector part of a stride-2 gather: 16 outputs from each 32 inputs, as one AVX-512
/// two-register permute. Returns how many outputs it wrote (0 without AVX-512).
fn gather_even(out: &mut [f32], src: &[f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { gather_even_avx512(out, src) };
    }
    0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gather_even_avx512(out: &mut [f32], src: &[f32]) -> usize {
    use std::arch::x86_64::{
        _mm512_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32, _mm512_storeu_ps,
    };
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let blocks = (out.len() / 16).min(src.len() / 32);
    for (o, pair) in out
        .chunks_exact_mut(16)
        .zip(src.chunks_exact(32))
        .take(blocks)
    {
        // SAFETY: `pair` holds 32 floats and `o` 16: the loads and the store stay inside.
        unsafe {
            let (lo, hi) = (
                _mm512_loadu_ps(pair.as_ptr()),
                _mm512_loadu_ps(pair.as_ptr().add(16)),
            );
            _mm512_storeu_ps(o.as_mut_ptr(), _mm512_permutex2var_ps(lo, even, hi));
        }
    }
    blocks * 16
}

/// The output buffer of a parallel forward pass, shared by tasks that each write their
/// own disjoint tiles of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the tasks holding copies write disjoint elements (see `Geometry::forward`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// The op: `conv2d(x, weight)` (two arguments) or `conv2d(x, weight) + bias` (three),
/// then `act` when given, then plus `residual` when given. With an activation, a residual
/// or further input parts it has no backward: [`conv2d_bias_act`] builds those only when
/// nothing needs a gradient.
#[derive(Debug, Clone)]
pub struct Conv2dOp {
    pub params: Conv2dParams,
    pub act: Option<Arc<dyn Elementwise>>,
    pub residual: Option<Tensor>,
    /// Inputs whose channels follow x's: the op convolves their concatenation along the
    /// channels without writing it (a 1×1, stride-1 conv on the unfolding-free kernel only).
    pub more_channels: Vec<Tensor>,
    /// The output's channels in parts (none: one NCHW output), for convs that read the same
    /// input computed as one: the output is flat, each part's (n, channels, h, w) block
    /// after the one before (on the same kernel only, without a residual).
    pub output_parts: Vec<usize>,
}

impl Conv2dOp {
    /// The convolution alone: no activation, residual or further input parts.
    pub fn plain(params: Conv2dParams) -> Conv2dOp {
        Conv2dOp {
            params,
            act: None,
            residual: None,
            more_channels: Vec::new(),
            output_parts: Vec::new(),
        }
    }

    fn fwd(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, shape) = self.forward_vec(x, w, bias)?;
        Ok((CpuStorage::F32(y), shape))
    }

    /// The forward pass on storage: the output's elements and shape.
    pub(super) fn forward_vec(
        &self,
        (xs, xl): (&CpuStorage, &Layout),
        (ws, wl): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(Vec<f32>, Shape)> {
        let more: Vec<&[usize]> = self.more_channels.iter().map(Tensor::dims).collect();
        let Some(x_dims) = joined_dims(xl.dims(), &more) else {
            candle_core::bail!(
                "conv2d: input parts of shapes {:?} and {more:?} do not join along the channels",
                xl.dims()
            );
        };
        let geo = Geometry::new(&x_dims, wl.dims(), self.params)?;
        let in_parts = !more.is_empty() || !self.output_parts.is_empty();
        if in_parts && !geo.reads_parts() {
            candle_core::bail!(
                "conv2d: only a 1×1, stride-1 convolution on this CPU reads its input or writes \
                 its output in parts; join them first"
            );
        }
        let split = !self.output_parts.is_empty();
        if split && (self.output_parts.iter().sum::<usize>() != geo.co || self.residual.is_some()) {
            candle_core::bail!(
                "conv2d: output parts of {:?} channels for {} output channels{}",
                self.output_parts,
                geo.co,
                if self.residual.is_some() {
                    ", with a residual"
                } else {
                    ""
                }
            );
        }
        let [x, w] = contiguous_f32("conv2d", [(xs, xl), (ws, wl)])?;
        let bias = bias
            .map(|(bs, bl)| contiguous::<f32>("conv2d", bs, bl))
            .transpose()?;
        if let Some(b) = bias.filter(|b| b.len() != geo.co) {
            candle_core::bail!("conv2d: {} biases for {} output channels", b.len(), geo.co);
        }
        let shape = Shape::from((geo.n, geo.co, geo.oh, geo.ow));
        let act = self.act.as_deref();
        if let Some(r) = self.residual.as_ref().filter(|r| r.dims() != shape.dims()) {
            candle_core::bail!(
                "conv2d: a residual of shape {:?} for an output of shape {:?}",
                r.dims(),
                shape.dims()
            );
        }
        let borrowed: Vec<&Tensor> = self.more_channels.iter().chain(&self.residual).collect();
        let y = with_f32_slices("conv2d", &borrowed, |data| {
            let (more, residual) = data.split_at(self.more_channels.len());
            let parts: Vec<&[f32]> = std::iter::once(x).chain(more.iter().copied()).collect();
            let residual = residual.first().copied();
            geo.forward(&parts, w, bias, act, residual, &self.output_parts)
        })?;
        let shape = if split { Shape::from(y.len()) } else { shape };
        Ok((y, shape))
    }

    /// The input gradient (None for a constant input, such as the image), the weight
    /// gradient, and the bias gradient when `with_bias`.
    pub(super) fn gradients(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        with_bias: bool,
    ) -> Result<(Option<Tensor>, Tensor, Option<Vec<f32>>)> {
        // Everything but the input-gradient pass counts as the weight gradient.
        let _t = profile::span(Stage::ConvBackwardWeight);
        if self.act.is_some() || self.residual.is_some() {
            candle_core::bail!(
                "conv2d with a fused activation or residual has no backward (it is built for \
                 inference only)"
            );
        }
        let geo = Geometry::new(x.dims(), w.dims(), self.params)?;
        let want_dx = x.track_op();
        let (dx, dw, db) = with_f32_data("conv2d backward", [x, w, dy], |[x, w, dy]| {
            let (dx, dw) = geo.backward(x, w, dy, want_dx);
            (dx, dw, with_bias.then(|| geo.bias_grad(dy)))
        })?;
        let dx = dx
            .map(|dx| Tensor::from_vec(dx, x.shape(), x.device()))
            .transpose()?;
        Ok((dx, Tensor::from_vec(dw, w.shape(), w.device())?, db))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.fwd((xs, xl), (ws, wl), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.gradients(x, w, dy, false)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-gemm-bias"
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
        self.fwd((xs, xl), (ws, wl), Some((bs, bl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.gradients(x, w, dy, true)?;
        let db = db
            .map(|db| Tensor::from_vec(db, b.shape(), b.device()))
            .transpose()?;
        Ok((dx, Some(dw), db))
    }
}

/// `conv2d` of f32 NCHW `x` with `weight` (out, in / groups, kh, kw); differentiable in both.
pub fn conv2d(x: &Tensor, weight: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    let _t = profile::span(Stage::ConvForward);
    let (x, weight) = fake_quant::conv_operands(x, weight)?;
    if portable::wanted(x.device()) {
        return portable::conv2d(&x, &weight, params);
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, Conv2dOp::plain(params))
}

/// `conv2d` plus one `bias` per output channel, in one op: where a broadcast add would
/// leave a broadcast node whose backward is a slow strided sum over (n, h, w), the bias
/// gradient is one pass over dY inside the convolution's backward.
pub fn conv2d_with_bias(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
) -> Result<Tensor> {
    let _t = profile::span(Stage::ConvForward);
    let (x, weight, bias) = fake_quant::conv_operands_with_bias(x, weight, bias)?;
    if portable::wanted(x.device()) {
        return portable::conv2d_with_bias(&x, &weight, &bias, params);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        Conv2dOp::plain(params),
    )
}

/// FReLU at inference, `max(x, conv2d(x, weight) + bias)`, in one pass per plane where
/// the composition wrote the funnel out and read it back for the max. `None` (use the
/// composition) unless the conv is depthwise at stride 1 and keeps the size, as FReLU's
/// is, the tensors are f32 on the CPU, and nothing needs a gradient.
pub fn conv2d_bias_max_input(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
) -> Result<Option<Tensor>> {
    let geo = Geometry::new(x.dims(), weight.dims(), params)?;
    if !geo.is_depthwise()
        || (geo.oh, geo.ow) != (geo.h, geo.w)
        || [x, weight, bias]
            .iter()
            .any(|t| t.dtype() != DType::F32 || t.track_op())
        || portable::wanted(x.device())
    {
        return Ok(None);
    }
    let _t = profile::span(Stage::ConvForward);
    // The funnel sees the (simulated INT8) conv input; the max, as in the composition, x.
    let (conv_x, weight, bias) = fake_quant::conv_operands_with_bias(x, weight, bias)?;
    let y = with_f32_data("frelu", [&conv_x, &weight, &bias, x], |[cx, w, b, x]| {
        geo.depthwise_forward(cx, w, Some(b), None, Some(x))
    })?;
    Tensor::from_vec(y, x.shape(), x.device()).map(Some)
}

/// `act(conv2d(x, weight) + bias)`, plus `residual` when given (a Bottleneck's shortcut,
/// added after the activation), in one pass for inference: the bias, activation and
/// residual run on each output tile while it is in cache. The input `xs` is the channel
/// concatenation of its parts (often one): a 1×1, stride-1 conv reads them where they lie,
/// other convs join them first. When any input needs a gradient, or off the CPU, it is the
/// differentiable composition instead.
pub fn conv2d_bias_act(
    xs: &[Tensor],
    weight: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
    act: Option<&Arc<dyn Elementwise>>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        candle_core::bail!("conv2d: no input");
    };
    let tracked = xs
        .iter()
        .chain([weight, bias])
        .chain(residual)
        .any(Tensor::track_op);
    if tracked || portable::wanted(first.device()) {
        let y = conv2d_with_bias(&concat::channels(xs)?, weight, bias, params)?;
        let y = act.map_or(Ok(y.clone()), |act| pointwise::apply(act, &y))?;
        return plus_residual(y, residual);
    }
    let _t = profile::span(Stage::ConvForward);
    let (x, more_channels) = if xs.len() > 1 && reads_in_parts(xs, weight, params) {
        let more = xs[1..].iter().map(Tensor::contiguous);
        (first.clone(), more.collect::<Result<Vec<_>>>()?)
    } else {
        (concat::channels(xs)?, Vec::new())
    };
    let (x, weight, bias) = fake_quant::conv_operands_with_bias(&x, weight, bias)?;
    x.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &bias.contiguous()?,
        &Conv2dOp {
            params,
            act: act.cloned(),
            residual: residual.map(Tensor::contiguous).transpose()?,
            more_channels,
            output_parts: Vec::new(),
        },
    )
}

/// [`conv2d_bias_act`], without a residual, of convs that read the same input `xs`, as one
/// conv: `weight` and `bias` are theirs stacked along the output channels, and `splits`
/// their output channels. The input is read once, and each conv's output is a tensor of its
/// own, written as such. `None` where this does not apply (anything but a 1×1, stride-1
/// conv of f32 tensors that need no gradient, on the unfolding-free kernel, without
/// simulated INT8): then the caller runs the convs one by one.
pub fn conv2d_bias_act_split(
    xs: &[Tensor],
    weight: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
    act: Option<&Arc<dyn Elementwise>>,
    splits: &[usize],
) -> Result<Option<Vec<Tensor>>> {
    let Some(first) = xs.first() else {
        candle_core::bail!("conv2d: no input");
    };
    let tracked = xs.iter().chain([weight, bias]).any(Tensor::track_op);
    if tracked || !reads_in_parts(xs, weight, params) {
        return Ok(None);
    }
    let _t = profile::span(Stage::ConvForward);
    let more_channels = xs[1..].iter().map(Tensor::contiguous);
    let y = first.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &bias.contiguous()?,
        &Conv2dOp {
            params,
            act: act.cloned(),
            residual: None,
            more_channels: more_channels.collect::<Result<_>>()?,
            output_parts: splits.to_vec(),
        },
    )?;
    // 1×1, stride 1, unpadded: each output plane is the input's.
    let (n, _, h, w) = first.dims4()?;
    let mut start = 0;
    let parts = splits.iter().map(|&channels| {
        let floats = n * channels * h * w;
        start += floats;
        y.narrow(0, start - floats, floats)?
            .reshape((n, channels, h, w))
    });
    parts.collect::<Result<_>>().map(Some)
}

/// Whether a conv of `weight` reads `xs` (f32 on the CPU, whose channels follow each other)
/// where they lie: a 1×1, stride-1 conv on the unfolding-free kernel, without simulated
/// INT8.
fn reads_in_parts(xs: &[Tensor], weight: &Tensor, params: Conv2dParams) -> bool {
    let more: Vec<&[usize]> = xs[1..].iter().map(Tensor::dims).collect();
    reads_input_parts(xs[0].device())
        && xs.iter().all(|x| x.dtype() == DType::F32)
        && joined_dims(xs[0].dims(), &more)
            .and_then(|dims| Geometry::new(&dims, weight.dims(), params).ok())
            .is_some_and(|geo| geo.reads_parts())
}

/// Whether [`conv2d_bias_act`] on `device` may read a 1×1 conv's input parts where they lie
/// (the unfolding-free kernel on the CPU, without simulated INT8, which quantizes the whole
/// input with one scale and so sees it joined), so that a caller gains by not joining them:
/// elsewhere each conv joins its parts itself.
pub fn reads_input_parts(device: &candle_core::Device) -> bool {
    #[cfg(target_arch = "x86_64")]
    let unfolding_free = direct::available();
    #[cfg(not(target_arch = "x86_64"))]
    let unfolding_free = false;
    unfolding_free && !portable::wanted(device) && !fake_quant::active()
}

/// The NCHW shape of `first` joined with tensors of shapes `more` along the channels, or
/// None where they do not join (not 4-D, or another batch or plane).
fn joined_dims(first: &[usize], more: &[&[usize]]) -> Option<Vec<usize>> {
    let mut joined = first.to_vec();
    for dims in more {
        match (joined.as_mut_slice(), dims) {
            ([n, c, h, w], &&[pn, pc, ph, pw]) if (*n, *h, *w) == (pn, ph, pw) => *c += pc,
            _ => return None,
        }
    }
    Some(joined)
}

/// `residual + y`, or `y` without a residual: a shortcut added where it cannot be fused.
pub fn plus_residual(y: Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
    match residual {
        Some(r) => r + y,
        None => Ok(y),
    }
}
