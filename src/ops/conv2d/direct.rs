//! Convolution without unfolding, on CPUs with AVX-512: each tile of 8 output channels ×
//! 48 output positions sums its products in registers, reading the input where it lies.
//!
//! The output is cut into bands of rows. Each task copies the input its band reads into
//! zero-padded *phase planes* (sized for L2), or, where several tasks share a band, every
//! band is filled once before the tasks start: for stride s, plane (c, a, b) holds the
//! padded input's rows ≡ a and columns ≡ b (mod s). Output position (oy, ox), numbered
//! q = oy · wq + ox over rows of `wq` (the phase planes' width), then reads tap (ki, kj) of
//! channel c at q plus a constant offset, so every one of the K = c · kh · kw rows of the
//! product is a contiguous run: the GEMM's columns, without im2col's nine copies of the
//! input. The `wq − ow` positions past each output row are computed and dropped. A 1×1
//! stride-1 unpadded conv reads its input as it is, and its input may come in parts (the
//! tensors a concatenation would join along the channels): product row k then reads the
//! part that holds channel k, so the concatenation is never written.
//!
//! The bias seeds the sums, the activation runs on each finished tile while it is in L1
//! (one with an AVX-512 kernel as the tile is stored, in registers), and each output is the sum of its K products in order, whatever the threads: runs
//! repeat bit for bit.

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_storeu_ps,
};

use std::ops::Range;

use rayon::prelude::*;

use super::{Geometry, SharedOut};
use crate::ops::act_avx512::Kernel;
use crate::ops::elementwise::Elementwise;

/// Output channels per register tile.
const MR: usize = 8;
/// 16-float vectors per row of a register tile: 8 × 3 sums, 3 input vectors and one
/// broadcast weight fill 28 of the 32 registers.
const VECS: usize = 3;
/// Output positions per register tile.
const NR: usize = 16 * VECS;

/// Whether this CPU runs the kernel (AVX-512).
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// Whether this CPU runs the kernel and it applies to the geometry (ungrouped, undilated).
pub(super) fn applies(geo: &Geometry) -> bool {
    geo.groups() == 1 && geo.p.dilation == 1 && available()
}

/// Floats of one band's phase planes: an eighth of L2, so that a band stays there
/// while every channel block reads it.
const BAND_FLOATS: usize = 1 << 16;

/// How the output is cut into bands of rows, the phase planes of one band, and each
/// product row's offset in them.
struct Layout {
    /// Width of the phase planes, and of the rows the positions are numbered over.
    wq: usize,
    /// Output rows per band (the last band may have fewer).
    band_rows: usize,
    /// Tasks per band, each with its share of the channel blocks.
    groups: usize,
    /// Rows per phase plane of a band.
    hq: usize,
    /// Whether the input is read as it is (1×1, stride 1, unpadded): its bands are views.
    in_place: bool,
    /// For product row k = (c · kh + ki) · kw + kj: where its run starts in a band's
    /// phase planes (or in its part of the image, read in place), for the band's first
    /// position.
    offsets: Vec<usize>,
    /// The product rows each input part holds (one part unless read in place), and their
    /// largest offset: position q's furthest read in that part.
    segments: Vec<(Range<usize>, usize)>,
}

impl Layout {
    /// The layout of `geo`, whose input comes in parts of `part_channels` channels (their
    /// sum is `geo.c`; several only when read in place).
    fn new(geo: &Geometry, part_channels: &[usize]) -> Layout {
        let (s, pad) = (geo.p.stride, geo.p.padding);
        let in_place = reads_in_place(geo);
        debug_assert!(in_place || part_channels.len() == 1);
        let wq = (geo.w + 2 * pad).div_ceil(s);
        // A position's taps reach (kh - 1) / s rows and (kw - 1) / s columns further; one
        // more row holds the column overrun of the band's last output row.
        let reach = (geo.kh - 1) / s + 1;
        // Bands small enough for L2 but at least a few register tiles long; then enough
        // tasks for every thread several times over: channel blocks split first (their
        // tasks share the band's one fill), bands cut shorter only when blocks run out.
        // An input read in place has no band to fill and no rows shared between bands, but
        // each group of blocks reads it again from memory: its bands are cut for the tasks
        // first (yolov5s 8%, yolov5n 5% faster at 640, measured).
        let wanted = 4 * rayon::current_num_threads();
        let cache_rows = if in_place {
            geo.oh.div_ceil(wanted.div_ceil(geo.n))
        } else {
            (BAND_FLOATS / (geo.c * s * s * wq)).saturating_sub(reach)
        };
        let mut band_rows = cache_rows.max((2 * NR).div_ceil(wq)).clamp(1, geo.oh);
        let groups = wanted
            .div_ceil(geo.n * geo.oh.div_ceil(band_rows))
            .clamp(1, geo.co.div_ceil(MR));
        let bands_wanted = wanted.div_ceil(geo.n * groups);
        if geo.oh.div_ceil(band_rows) < bands_wanted {
            band_rows = geo.oh.div_ceil(bands_wanted).max(1);
        }
        let hq = if in_place { geo.h } else { band_rows + reach };
        let plane = hq * wq;
        let taps = geo.kh * geo.kw;
        let mut offsets = Vec::with_capacity(geo.kdim());
        let mut segments = Vec::with_capacity(part_channels.len());
        for &channels in part_channels {
            let first = offsets.len();
            for c in 0..channels {
                for ki in 0..geo.kh {
                    for kj in 0..geo.kw {
                        let phase = (c * s + ki % s) * s + kj % s;
                        offsets.push(phase * plane + (ki / s) * wq + kj / s);
                    }
                }
            }
            let furthest = offsets[first..].iter().copied().max().unwrap_or(0);
            segments.push((first..first + channels * taps, furthest));
        }
        Layout {
            wq,
            band_rows,
            groups,
            hq,
            in_place,
            offsets,
            segments,
        }
    }

    fn bands(&self, geo: &Geometry) -> usize {
        geo.oh.div_ceil(self.band_rows)
    }

    /// Floats of one band's phase planes.
    fn band_floats(&self, geo: &Geometry) -> usize {
        let s = geo.p.stride;
        geo.c * s * s * self.hq * self.wq
    }

    /// The phase planes of the band that starts at output row `oy0`, written into `out`
    /// (`band_floats`) from one image `x`.
    fn fill(&self, geo: &Geometry, x: &[f32], oy0: usize, out: &mut [f32]) {
        let (s, pad) = (geo.p.stride, geo.p.padding);
        // Columns col with 0 <= col · s + b - pad < w come from the input row.
        let columns = |b: usize| {
            let lo = pad.saturating_sub(b).div_ceil(s).min(self.wq);
            let hi = (geo.w + pad)
                .saturating_sub(b)
                .div_ceil(s)
                .clamp(lo, self.wq);
            (lo, hi)
        };
        for (at, dst) in out.chunks_exact_mut(self.hq * self.wq).enumerate() {
            let (c, a, b) = (at / (s * s), at / s % s, at % s);
            let src = &x[c * geo.h * geo.w..][..geo.h * geo.w];
            let (lo, hi) = columns(b);
            for (r, row) in dst.chunks_exact_mut(self.wq).enumerate() {
                // Phase row oy0 + r is padded row (oy0 + r) · s + a.
                let iy = ((oy0 + r) * s + a).wrapping_sub(pad);
                if iy >= geo.h || hi == lo {
                    row.fill(0.0);
                    continue;
                }
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                super::gather(&mut row[lo..hi], &src[iy * geo.w + lo * s + b - pad..], s);
            }
        }
    }
}

/// The weight rows (K floats each) and biases of channel block `block`; past the last
/// channel, the last one's again (computed, never stored).
fn block_rows<'a>(
    geo: &Geometry,
    w: &'a [f32],
    bias: Option<&[f32]>,
    block: usize,
) -> ([&'a [f32]; MR], [f32; MR]) {
    let k = geo.kdim();
    let channel = |r: usize| (block * MR + r).min(geo.co - 1);
    (
        std::array::from_fn(|r| &w[channel(r) * k..][..k]),
        std::array::from_fn(|r| bias.map_or(0.0, |b| b[channel(r)])),
    )
}

thread_local! {
    /// Each thread's band of phase planes, kept between tasks and calls: a fresh one per
    /// task cost an allocation and a clear of every float.
    static BAND: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Every band's phase planes, filled once before the tasks when several tasks share a
    /// band; kept by the calling thread between calls for the same reason as `BAND`.
    static SHARED_BANDS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Whether the kernel reads the input where it lies (1×1, stride 1, unpadded): then it
/// also reads an input in parts.
pub(super) fn reads_in_place(geo: &Geometry) -> bool {
    geo.kh == 1 && geo.kw == 1 && geo.p.stride == 1 && geo.p.padding == 0
}

/// The convolution plus `bias`, then `act`, then plus `residual` (the output's shape), of
/// every image of the input: `parts`, whose channels follow each other (one part unless
/// [`reads_in_place`]), each `n · channels · h · w` floats. The output is NCHW, or, with
/// `output_parts` (channel counts adding up to `co`; only without a residual), each part's
/// `n · channels · plane` block after the one before.
pub(super) fn forward(
    geo: &Geometry,
    parts: &[&[f32]],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Option<&dyn Elementwise>,
    residual: Option<&[f32]>,
    output_parts: &[usize],
) -> Vec<f32> {
    let len = geo.n * geo.co * geo.plane();
    if len == 0 {
        return Vec::new();
    }
    // Parts are read in place, so 1×1 and unpadded: a plane of at least one float.
    let part_channels: Vec<usize> = match parts {
        [_] => vec![geo.c],
        _ => parts
            .iter()
            .map(|part| part.len() / (geo.n * geo.h * geo.w))
            .collect(),
    };
    // Every product row's weights are read: the parts hold exactly the input's channels.
    assert_eq!(part_channels.iter().sum::<usize>(), geo.c);
    let layout = Layout::new(geo, &part_channels);
    let starts = ChannelStarts::new(geo, output_parts);
    let x = parts[0];
    let (blocks, bands) = (geo.co.div_ceil(MR), layout.bands(geo));
    let block_params: Vec<_> = (0..blocks)
        .map(|block| block_rows(geo, w, bias, block))
        .collect();
    let groups = layout.groups;
    let blocks_per_group = blocks.div_ceil(groups);

    // A band split among groups of channel blocks is filled once for all of them: each
    // task filling its own copy did the same work `groups` times, a large share of the
    // small planes' convs, whose bands are split most.
    let band_floats = layout.band_floats(geo);
    let mut shared_bands = SHARED_BANDS.take();
    let shared = groups > 1 && !layout.in_place;
    if shared {
        let floats = geo.n * bands * band_floats;
        shared_bands.resize(shared_bands.len().max(floats), 0.0);
        shared_bands[..floats]
            .par_chunks_mut(band_floats)
            .enumerate()
            .for_each(|(at, planes)| {
                let image = &x[at / bands * geo.image()..][..geo.image()];
                layout.fill(geo, image, at % bands * layout.band_rows, planes);
            });
    }

    // An activation with a register kernel runs as the tile is stored, on the vectors that
    // hold outputs only: not on a separate pass over the tile, nor on the padded columns'
    // and a partial tile's dropped sums.
    let in_registers = act.and_then(|act| act.avx512_kernel());
    let mut y = Vec::<f32>::with_capacity(len);
    let out = SharedOut(y.as_mut_ptr());
    (0..geo.n * bands * groups)
        .into_par_iter()
        .for_each(|task| {
            #[allow(clippy::redundant_locals)]
            let out = out; // the whole wrapper, not its raw-pointer field, moves in
            let (i, band, group) = (
                task / (bands * groups),
                task / groups % bands,
                task % groups,
            );
            let oy0 = band * layout.band_rows;
            let positions = layout.band_rows.min(geo.oh - oy0) * layout.wq;
            BAND.with_borrow_mut(|own_band| {
                let sources: Vec<&[f32]> = if layout.in_place {
                    parts
                        .iter()
                        .zip(&part_channels)
                        .map(|(part, &c)| {
                            let image = c * geo.h * geo.w;
                            &part[i * image..][..image][oy0 * geo.w..]
                        })
                        .collect()
                } else if shared {
                    vec![&shared_bands[(i * bands + band) * band_floats..][..band_floats]]
                } else {
                    // Every float is written: what a previous band left needs no clearing.
                    own_band.resize(own_band.len().max(band_floats), 0.0);
                    let planes = &mut own_band[..band_floats];
                    let image = &x[i * geo.image()..][..geo.image()];
                    layout.fill(geo, image, oy0, planes);
                    vec![planes]
                };
                // What makes `tile_sums`' unchecked reads safe: a band's phase planes end
                // (kw - 1) / s + 1 floats or more past its last position's furthest tap,
                // and each part read in place past its last band's.
                let runs: Vec<(&[f32], Range<usize>)> = sources
                    .into_iter()
                    .zip(&layout.segments)
                    .map(|(src, (ks, furthest))| {
                        assert!(furthest + positions <= src.len());
                        (src, ks.clone())
                    })
                    .collect();
                let task_blocks =
                    group * blocks_per_group..((group + 1) * blocks_per_group).min(blocks);
                let mut sums = [[0f32; NR]; MR];
                let mut pieces = StorePieces { pieces: Vec::new() };
                // Tile by tile, every block: a tile's input runs stay in L1 while the blocks'
                // weights stream past (an eighth of the floats per product).
                for q0 in (0..positions).step_by(NR) {
                    pieces.refill(geo, &layout, oy0, q0..(q0 + NR).min(positions));
                    // A band's last tile sums only the vectors that hold its positions: bands
                    // cut for the threads end mid-tile, and a whole tile there computed up to
                    // half of the sums of yolov5n's 320-px inference (a 20% waste overall).
                    let tile_sums = match (positions - q0).min(NR).div_ceil(16) {
                        1 => tile_sums::<1>,
                        2 => tile_sums::<2>,
                        _ => tile_sums::<VECS>,
                    };
                    for block in task_blocks.clone() {
                        let (weights, block_bias) = &block_params[block];
                        // SAFETY: the CPU has AVX-512F (`applies`); `tile_sums` reads only
                        // inside each run's source (asserted above).
                        unsafe {
                            tile_sums(
                                &runs, &layout, weights, block_bias, q0, positions, &mut sums,
                            )
                        };
                        if let (Some(act), None) = (act, in_registers) {
                            act.inference_in_place(sums.as_flattened_mut());
                        }
                        let channels = block * MR..(block * MR + MR).min(geo.co);
                        // SAFETY: as above for AVX-512F; only this task writes these channels
                        // of this band of image i, and `store` writes inside `y`'s `len` floats
                        // (and reads inside `residual`'s, the same number).
                        unsafe {
                            let out = (out, &starts);
                            pieces.store(&sums, in_registers, out, residual, i, channels)
                        };
                    }
                }
            });
        });
    SHARED_BANDS.set(shared_bands);
    // SAFETY: the tasks wrote every output: every image, band and channel block.
    unsafe { y.set_len(len) };
    y
}

/// The sums of one register tile, `V` vectors wide: output channels of `weights`' block at
/// positions `q0..q0 + 16 · V` of a band, seeded with the biases, into the first `16 · V`
/// sums of each row of `out`. `runs` pairs each source (a band's phase planes, or a part
/// of the input read in place) with the product rows it holds, in order. Positions past
/// `positions` (the band's) are not read.
///
/// # Safety
/// The CPU must have AVX-512F, and for each run, its rows' largest offset plus
/// `positions` must not pass its source's end.
#[target_feature(enable = "avx512f")]
unsafe fn tile_sums<const V: usize>(
    runs: &[(&[f32], Range<usize>)],
    layout: &Layout,
    weights: &[&[f32]; MR],
    bias: &[f32; MR],
    q0: usize,
    positions: usize,
    out: &mut [[f32; NR]; MR],
) {
    // Lanes at positions < `positions` read inside `src` (the caller's condition).
    let valid = positions.saturating_sub(q0).min(16 * V);
    let masks: [u16; V] = std::array::from_fn(|v| {
        let lanes = valid.saturating_sub(16 * v).min(16);
        ((1u32 << lanes) - 1) as u16
    });
    let full = valid == 16 * V;
    let mut acc: [[__m512; V]; MR] = [[_mm512_set1_ps(0.0); V]; MR];
    for (row, &b) in acc.iter_mut().zip(bias) {
        *row = [_mm512_set1_ps(b); V];
    }
    let rows: [*const f32; MR] = std::array::from_fn(|r| weights[r].as_ptr());
    for (src, ks) in runs {
        let base = src.as_ptr().wrapping_add(q0);
        for (k, &offset) in ks.clone().zip(&layout.offsets[ks.clone()]) {
            let run = base.wrapping_add(offset);
            // SAFETY: full tiles read 16 · V floats inside `src`; the last tile's masked
            // loads touch only its valid lanes.
            let b: [__m512; V] = std::array::from_fn(|v| unsafe {
                if full {
                    _mm512_loadu_ps(run.wrapping_add(16 * v))
                } else {
                    _mm512_maskz_loadu_ps(masks[v], run.wrapping_add(16 * v))
                }
            });
            for (sums, &row) in acc.iter_mut().zip(&rows) {
                // SAFETY: every row holds K = `offsets.len()` floats.
                let weight = _mm512_set1_ps(unsafe { *row.add(k) });
                for (sum, &b) in sums.iter_mut().zip(&b) {
                    *sum = _mm512_fmadd_ps(weight, b, *sum);
                }
            }
        }
    }
    for (row, sums) in out.iter_mut().zip(&acc) {
        for (chunk, &sum) in row.chunks_exact_mut(16).zip(sums) {
            // SAFETY: `chunk` holds 16 floats.
            unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), sum) };
        }
    }
}

/// Where each output channel's plane starts, per image: NCHW, or each output part's
/// (n, channels, plane) block after the one before, so that each part is a tensor of its
/// own (the outputs of convs that read the same input, computed as one).
struct ChannelStarts {
    /// For each output channel, its plane's start in image 0, and the floats between images.
    starts: Vec<(usize, usize)>,
}

impl ChannelStarts {
    /// `output_parts`: the parts' channels, adding up to `geo.co`; none for NCHW.
    fn new(geo: &Geometry, output_parts: &[usize]) -> ChannelStarts {
        let plane = geo.plane();
        let nchw = [geo.co];
        let parts = if output_parts.is_empty() {
            &nchw[..]
        } else {
            output_parts
        };
        assert_eq!(parts.iter().sum::<usize>(), geo.co);
        let mut starts = Vec::with_capacity(geo.co);
        let mut part_start = 0;
        for &channels in parts {
            starts.extend((0..channels).map(|c| (part_start + c * plane, channels * plane)));
            part_start += geo.n * channels * plane;
        }
        ChannelStarts { starts }
    }

    /// Where channel `co` of image `i` starts.
    fn of(&self, i: usize, co: usize) -> usize {
        let (start, image) = self.starts[co];
        start + i * image
    }
}

/// Where a tile's outputs go (positions `q0..end`, at most NR, of the band that starts at
/// output row `oy0`, where they lie inside an output row): position q of the band's row oy
/// goes to (oy0 + oy) · ow + (q − oy · wq). The same for every channel block of the tile.
/// Kept by a task and refilled per tile: a fixed array built per tile (zeroed, then
/// returned by copy) took 4% of yolov5n's inference (perf).
struct StorePieces {
    /// (vector, lanes, output index of its lane 0) for each output row a vector touches.
    pieces: Vec<(usize, u16, isize)>,
}

impl StorePieces {
    fn refill(
        &mut self,
        geo: &Geometry,
        layout: &Layout,
        oy0: usize,
        Range { start: q0, end }: Range<usize>,
    ) {
        let (wq, ow) = (layout.wq, geo.ow);
        self.pieces.clear();
        // One division per tile: each vector's first row follows from the one before.
        let mut oy = q0 / wq;
        for v in 0..VECS {
            let (first, last) = (q0 + 16 * v, (q0 + 16 * v + 16).min(end));
            while (oy + 1) * wq <= first {
                oy += 1;
            }
            let mut oy = oy;
            while oy * wq < last {
                let (lo, hi) = (first.max(oy * wq), last.min(oy * wq + ow));
                if lo < hi {
                    let lanes = ((1u32 << (hi - first)) - (1u32 << (lo - first))) as u16;
                    let lane0 = ((oy0 + oy) * ow) as isize + first as isize - (oy * wq) as isize;
                    self.pieces.push((v, lanes, lane0));
                }
                oy += 1;
            }
        }
    }

    /// Writes a finished tile of `channels` of image `i` as masked vector stores, each
    /// output `act` of its sum when given, plus its element of `residual` when given.
    ///
    /// # Safety
    /// The CPU must have AVX-512F. No other thread may write these outputs; `out`, and
    /// `residual` when given, hold `n · co · plane` floats, where `starts` puts each channel.
    #[target_feature(enable = "avx512f")]
    unsafe fn store(
        &self,
        sums: &[[f32; NR]; MR],
        act: Option<Kernel>,
        (out, starts): (SharedOut, &ChannelStarts),
        residual: Option<&[f32]>,
        i: usize,
        channels: Range<usize>,
    ) {
        for (r, co) in channels.enumerate() {
            let first = starts.of(i, co);
            let base = out.0.wrapping_add(first);
            let residual = residual.map(|x| x.as_ptr().wrapping_add(first));
            // A vector that spans two output rows is two pieces, activated once.
            let mut activated: Option<(usize, __m512)> = None;
            for &(v, lanes, lane0) in &self.pieces {
                // SAFETY: the set lanes are outputs of row oy of this channel, inside `out`
                // (and `residual`); masked-off lanes are not read or written (nor checked for
                // faults).
                unsafe {
                    let mut sum = match activated {
                        Some((at, sum)) if at == v => sum,
                        _ => {
                            let sum = _mm512_loadu_ps(sums[r][16 * v..].as_ptr());
                            let sum = act.map_or(sum, |act| act.apply16(sum));
                            activated = Some((v, sum));
                            sum
                        }
                    };
                    if let Some(residual) = residual {
                        let shortcut =
                            _mm512_maskz_loadu_ps(lanes, residual.wrapping_offset(lane0));
                        sum = _mm512_add_ps(shortcut, sum);
                    }
                    if lanes == u16::MAX {
                        _mm512_storeu_ps(base.wrapping_offset(lane0), sum);
                    } else {
                        _mm512_mask_storeu_ps(base.wrapping_offset(lane0), lanes, sum);
                    }
                }
            }
        }
    }
}
