//! The Detect head's 1×1 convolution with its output already in the layout the loss and
//! the decode read, (batch, anchors, y, x, outputs), as one custom op: the composition
//! conv → reshape → permute → contiguous made a strided copy of the head's largest
//! tensors, and two more full-size graph nodes, each step.
//!
//! Per image i and anchor a, with X_i (c × plane) and W_a (outputs × c):
//! Y_ia (plane × outputs) = X_iᵀ · W_aᵀ + b_a; dW_a = Σ_i dY_iaᵀ · X_iᵀ;
//! dX_i = Σ_a W_aᵀ · dY_iaᵀ; db_a = Σ over images and cells of dY_ia.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fake_quant;
use super::gemm::{matmul, matmul_strided, MatRef};
use super::portable;
use super::storage::{contiguous_f32, with_f32_data};
use crate::util::profile::{self, Stage};

/// Cells per parallel task of the forward pass.
const TILE_CELLS: usize = 512;

#[derive(Debug, Clone, Copy)]
struct HeadConv {
    anchors: usize,
}

/// (images, channels, cells, outputs per anchor), checked.
fn sizes(
    x: &[usize],
    w: &[usize],
    bias: usize,
    anchors: usize,
) -> Result<(usize, usize, usize, usize)> {
    let ([n, c, h, wd], [co, ci, 1, 1]) = (x, w) else {
        candle_core::bail!(
            "head conv: expected an NCHW input and a 1×1 weight, got {x:?} and {w:?}"
        );
    };
    if ci != c || co % anchors != 0 || bias != *co {
        candle_core::bail!(
            "head conv: input {x:?}, weight {w:?} and {bias} biases do not fit {anchors} anchors"
        );
    }
    Ok((*n, *c, h * wd, co / anchors))
}

/// X_iᵀ (plane × c) as a view of image i's (c × plane) block.
fn image_t(x: &[f32], (c, plane): (usize, usize)) -> MatRef<'_> {
    MatRef::rows(x, c, plane).t()
}

/// One image's share of the backward: dW, db and, when x needs it, dX.
type ImageGrads = (Vec<f32>, Vec<f64>, Option<Vec<f32>>);

/// Adds the rows of `rows` (each `db.len()` floats) to `db` in order, in f64: the bias
/// gradient of a block of cells.
fn add_rows(db: &mut [f64], rows: &[f32]) {
    for row in rows.chunks_exact(db.len()) {
        db.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
    }
}

/// One image's and anchor's gradient dY_ia (cells × no) where it is mostly zeros, as the
/// loss leaves it: the objectness output has a gradient in every cell, the other outputs
/// only in the cells of positives. The dense GEMMs over every cell and output then spent
/// almost all their products on zeros; here the columns nonzero in many cells are summed
/// over every cell, the other outputs over the few cells that have any (yolov5n at batch
/// 8, 320: the head's backward over its three levels 9.9 → 3.6–4.9 ms).
struct SparseBlock {
    cells: usize,
    no: usize,
    /// The columns (outputs) nonzero in many cells, and their values (columns × cells).
    columns: Vec<usize>,
    column_values: Vec<f32>,
    /// The cells with another output nonzero, ascending, and their rows (cells × no) with
    /// the dense columns zeroed.
    rows: Vec<usize>,
    row_values: Vec<f32>,
}

impl SparseBlock {
    /// The block's sparse form, if it saves three quarters of the products or more.
    fn of(block: &[f32], no: usize) -> Option<SparseBlock> {
        // A float's bits without the sign: nonzero exactly when the float is. Counting and
        // or-ing bits, both passes run in vector lanes.
        const MAGNITUDE: u32 = 0x7fff_ffff;
        let cells = block.len() / no;
        let worth_it =
            |columns: usize, rows: usize| (columns * cells + rows * no) * 4 <= cells * no;
        let mut nonzero = vec![0u32; no];
        for row in block.chunks_exact(no) {
            for (count, &v) in nonzero.iter_mut().zip(row) {
                *count += u32::from(v.to_bits() & MAGNITUDE != 0);
            }
        }
        // Dense: nonzero in more than half the cells (objectness). The outputs of positives
        // go by their rows, even where they fill a tenth of a coarse level's cells.
        let dense: Vec<bool> = nonzero
            .iter()
            .map(|&count| count as usize * 2 > cells)
            .collect();
        let columns: Vec<usize> = (0..no).filter(|&o| dense[o]).collect();
        if !worth_it(columns.len(), 0) {
            return None;
        }
        let sparse_bits: Vec<u32> = dense
            .iter()
            .map(|&d| if d { 0 } else { MAGNITUDE })
            .collect();
        let rows: Vec<usize> = block
            .chunks_exact(no)
            .enumerate()
            .filter(|(_, row)| {
                let bits = row.iter().zip(&sparse_bits);
                bits.fold(0, |any, (&v, &keep)| any | (v.to_bits() & keep)) != 0
            })
            .map(|(cell, _)| cell)
            .collect();
        if !worth_it(columns.len(), rows.len()) {
            return None;
        }
        let column_values = columns
            .iter()
            .flat_map(|&o| block.chunks_exact(no).map(move |row| row[o]))
            .collect();
        let row_values = rows
            .iter()
            .flat_map(|&cell| {
                block[cell * no..][..no]
                    .iter()
                    .zip(&dense)
                    .map(|(&v, &d)| if d { 0.0 } else { v })
            })
            .collect();
        Some(SparseBlock {
            cells,
            no,
            columns,
            column_values,
            rows,
            row_values,
        })
    }

    /// This block's dW_a (`no × c`, written) and db_a (added to), and its share of dX_i
    /// (`c × cells`, added to) when given; `x` is X_i (`c × cells`), `w` is W_a (`no × c`).
    /// db sums each output over the cells in order, skipping only zeros: the dense route's
    /// bits.
    fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        (dw, db): (&mut [f32], &mut [f64]),
        dx: Option<&mut [f32]>,
    ) {
        let (cells, no) = (self.cells, self.no);
        let c = x.len() / cells;
        let columns = MatRef::rows(&self.column_values, self.columns.len(), cells);
        let rows = MatRef::rows(&self.row_values, self.rows.len(), no);
        // X_i's columns at the sparse cells, as rows (cells × c).
        let x_rows: Vec<f32> = self
            .rows
            .iter()
            .flat_map(|&cell| (0..c).map(move |ch| x[ch * cells + cell]))
            .collect();
        // The sparse cells' products (exact zeros in the dense outputs' rows), then the
        // dense outputs' over every cell.
        matmul(
            dw,
            rows.t(),
            MatRef::rows(&x_rows, self.rows.len(), c),
            false,
            1,
        );
        let mut dense_dw = vec![0f32; self.columns.len() * c];
        matmul(&mut dense_dw, columns, image_t(x, (c, cells)), false, 1);
        for (&o, sums) in self.columns.iter().zip(dense_dw.chunks_exact(c)) {
            dw[o * c..][..c]
                .iter_mut()
                .zip(sums)
                .for_each(|(s, &v)| *s += v);
        }
        for (&o, values) in self
            .columns
            .iter()
            .zip(self.column_values.chunks_exact(cells))
        {
            db[o] += values.iter().map(|&v| v as f64).sum::<f64>();
        }
        add_rows(db, &self.row_values);
        let Some(dx) = dx else { return };
        // Dense outputs: W_a's rows for them, transposed (c × columns), times their values.
        let w_columns: Vec<f32> = self
            .columns
            .iter()
            .flat_map(|&o| w[o * c..][..c].iter().copied())
            .collect();
        let w_columns = MatRef::rows(&w_columns, self.columns.len(), c);
        matmul(dx, w_columns.t(), columns, true, 1);
        if self.rows.is_empty() {
            return;
        }
        // Sparse cells: W_aᵀ (c × no) times their rows, transposed, added into their columns.
        let mut sparse_dx = vec![0f32; c * self.rows.len()];
        matmul(
            &mut sparse_dx,
            MatRef::rows(w, no, c).t(),
            rows.t(),
            false,
            1,
        );
        for (dx_ch, sums) in dx
            .chunks_exact_mut(cells)
            .zip(sparse_dx.chunks_exact(self.rows.len()))
        {
            for (&cell, &v) in self.rows.iter().zip(sums) {
                dx_ch[cell] += v;
            }
        }
    }
}

impl CustomOp3 for HeadConv {
    fn name(&self) -> &'static str {
        "detect-head-conv"
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
        let [x, w, b] = contiguous_f32("head conv", [(xs, xl), (ws, wl), (bs, bl)])?;
        let (n, c, plane, no) = sizes(xl.dims(), wl.dims(), b.len(), self.anchors)?;
        let na = self.anchors;
        let len = n * na * plane * no;
        // Not zero-filled (a pass over the largest output of the network): every tile is
        // written by its product before anything reads it.
        let mut y = Vec::with_capacity(len);
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(plane * no)
            .enumerate()
            .for_each(|(ia, block)| {
                let (i, a) = (ia / na, ia % na);
                let x = image_t(&x[i * c * plane..][..c * plane], (c, plane));
                let w_t = MatRef::rows(&w[a * no * c..][..no * c], no, c).t();
                let bias = &b[a * no..][..no];
                block
                    .par_chunks_mut(TILE_CELLS * no)
                    .enumerate()
                    .for_each(|(t, tile)| {
                        let cells = tile.len() / no;
                        let rows = MatRef {
                            data: &x.data[t * TILE_CELLS..],
                            rows: cells,
                            ..x
                        };
                        let tile = tile.as_mut_ptr().cast::<f32>();
                        // SAFETY: the tile's cells × no floats are this task's alone; without
                        // accumulating, the product only writes them. Then they are all
                        // initialised, and read as floats.
                        let tile = unsafe {
                            matmul_strided(tile, no, rows, w_t, false, 1);
                            std::slice::from_raw_parts_mut(tile, cells * no)
                        };
                        for cell in tile.chunks_exact_mut(no) {
                            for (v, b) in cell.iter_mut().zip(bias) {
                                *v += b;
                            }
                        }
                    });
            });
        // SAFETY: the tiles cover every block, and the blocks every output.
        unsafe { y.set_len(len) };
        let (_, _, h, wd) = xl.shape().dims4()?;
        Ok((CpuStorage::F32(y), Shape::from(vec![n, na, h, wd, no])))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = profile::span(Stage::ConvBackwardWeight);
        let (n, c, plane, no) = sizes(x.dims(), w.dims(), b.elem_count(), self.anchors)?;
        let na = self.anchors;
        let want_dx = x.track_op();
        let (dx, dw, db) = with_f32_data("head conv backward", [x, w, dy], |[x, w, dy]| {
            // Per image: its share of dW and db (summed in image order below, so that the
            // result does not depend on the threads), and dX_i.
            let per_image: Vec<ImageGrads> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let x_i = &x[i * c * plane..][..c * plane];
                    let x_t = image_t(x_i, (c, plane));
                    let dy_i = &dy[i * na * plane * no..][..na * plane * no];
                    let mut dw = vec![0f32; na * no * c];
                    let mut db = vec![0f64; na * no];
                    let mut dx = want_dx.then(|| vec![0f32; c * plane]);
                    let anchors = dw
                        .chunks_exact_mut(no * c)
                        .zip(db.chunks_exact_mut(no))
                        .zip(w.chunks_exact(no * c).zip(dy_i.chunks_exact(plane * no)));
                    for ((dw_a, db_a), (w_a, dy_ia)) in anchors {
                        if let Some(sparse) = SparseBlock::of(dy_ia, no) {
                            sparse.backward(x_i, w_a, (dw_a, db_a), dx.as_deref_mut());
                            continue;
                        }
                        // dY_ia (plane × no); its transpose is (no × plane).
                        let block = MatRef::rows(dy_ia, plane, no);
                        matmul(dw_a, block.t(), x_t, false, 1);
                        add_rows(db_a, dy_ia);
                        if let Some(dx) = dx.as_mut() {
                            // dx starts at zero: accumulating from the first anchor on is
                            // the same, and a sparse anchor before this one added to it.
                            matmul(dx, MatRef::rows(w_a, no, c).t(), block.t(), true, 1);
                        }
                    }
                    (dw, db, dx)
                })
                .collect();
            let mut dw = vec![0f32; na * no * c];
            let mut db = vec![0f64; na * no];
            let mut dx = want_dx.then(|| Vec::with_capacity(n * c * plane));
            for (w_i, b_i, x_i) in per_image {
                dw.iter_mut().zip(&w_i).for_each(|(s, v)| *s += v);
                db.iter_mut().zip(&b_i).for_each(|(s, v)| *s += v);
                if let (Some(dx), Some(x_i)) = (dx.as_mut(), x_i) {
                    dx.extend_from_slice(&x_i);
                }
            }
            (
                dx,
                dw,
                db.into_iter().map(|v| v as f32).collect::<Vec<f32>>(),
            )
        })?;
        let dx = dx
            .map(|dx| Tensor::from_vec(dx, x.shape(), x.device()))
            .transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// The head's 1×1 conv of `x` (N, C, H, W) with `weight` (anchors · outputs, C, 1, 1) and
/// `bias`, as (N, anchors, H, W, outputs); differentiable in all three.
pub fn head_conv(x: &Tensor, weight: &Tensor, bias: &Tensor, anchors: usize) -> Result<Tensor> {
    let _t = profile::span(Stage::ConvForward);
    let (x, weight, bias) = fake_quant::conv_operands_with_bias(x, weight, bias)?;
    if portable::wanted(x.device()) {
        return portable::head_conv(&x, &weight, &bias, anchors);
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        HeadConv { anchors },
    )
}
