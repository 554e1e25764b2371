//! The model's detection [`Head`]: YOLOv5's Detect head (one 1×1 conv per level, anchors
//! and strides, and the decode xy = (2σ − 0.5 + grid)·stride, wh = (2σ)²·anchor), yolov7's
//! IDetect (the same head with implicit knowledge around each conv: conv(x + ia)·im), or
//! ultralytics 8's anchor-free head ([`AnchorFreeDetect`]).

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::Init;

use super::anchor_free::AnchorFreeDetect;
use super::block::BlockContext;
use crate::act::zoo::Sigmoid;
use crate::act::Activation;
use crate::ops::conv2d::{conv2d_with_bias, Conv2dParams};
use crate::ops::conv_bn_layer::Cost;
use crate::ops::elementwise::Elementwise;
use crate::ops::graph::{Attr, Graph, GraphError};
use crate::ops::head_conv::head_conv;
use rayon::prelude::*;

use crate::ops::storage::with_f32_data;

/// The head that ends a model.
#[derive(Debug)]
pub enum Head {
    /// YOLOv5's Detect and yolov7's IDetect.
    Anchors(Detect),
    /// ultralytics 8's Detect (YOLOv8, YOLO11).
    AnchorFree(AnchorFreeDetect),
}

impl Head {
    pub fn nc(&self) -> usize {
        match self {
            Head::Anchors(d) => d.nc,
            Head::AnchorFree(d) => d.nc,
        }
    }

    /// Each level's stride in input pixels.
    pub fn strides(&self) -> &[f64] {
        match self {
            Head::Anchors(d) => &d.strides,
            Head::AnchorFree(d) => &d.strides,
        }
    }

    /// The anchor-based head, which YOLOv5's loss, AutoAnchor and the anchors need.
    pub fn anchored(&self) -> Option<&Detect> {
        match self {
            Head::Anchors(d) => Some(d),
            Head::AnchorFree(_) => None,
        }
    }

    /// Values per cell of each level's raw map (all anchors).
    pub fn outputs_per_cell(&self) -> usize {
        match self {
            Head::Anchors(d) => d.na * d.no,
            Head::AnchorFree(d) => d.no(),
        }
    }

    /// Raw maps per level, (bs, anchors, ny, nx, outputs).
    pub fn forward(&self, xs: &[Tensor], train: bool) -> Result<Vec<Tensor>> {
        match self {
            Head::Anchors(d) => d.forward(xs),
            Head::AnchorFree(d) => d.forward(xs, train),
        }
    }

    /// Boxes (cx, cy, w, h in input pixels), objectness and class scores: (bs, N, 5 + nc).
    pub fn decode(&self, raw: &[Tensor]) -> Result<Tensor> {
        match self {
            Head::Anchors(d) => d.decode(raw),
            Head::AnchorFree(d) => d.decode(raw),
        }
    }

    pub fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        match self {
            Head::Anchors(d) => d.export(g, xs),
            Head::AnchorFree(d) => d.export(g, xs),
        }
    }

    pub fn fuse(&mut self) -> Result<()> {
        match self {
            Head::Anchors(d) => d.fuse(),
            Head::AnchorFree(d) => d.fuse(),
        }
    }

    pub fn params(&self) -> Vec<Tensor> {
        match self {
            Head::Anchors(d) => d.params(),
            Head::AnchorFree(d) => d.params(),
        }
    }

    /// The activations of the head's Convs (the anchor-free head has some).
    pub fn activations(&self) -> Vec<&Activation> {
        match self {
            Head::Anchors(_) => Vec::new(),
            Head::AnchorFree(d) => d.activations(),
        }
    }

    pub fn cost(&self, hws: &[(usize, usize)], cost: &mut Cost) {
        match self {
            Head::Anchors(d) => d.cost(hws, cost),
            Head::AnchorFree(d) => d.cost(hws, cost),
        }
    }
}

/// Which anchor-based head a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectKind {
    /// YOLOv5's Detect.
    Detect,
    /// yolov7's IDetect: Detect with implicit knowledge (ImplicitA/ImplicitM) around each conv.
    IDetect,
}

#[derive(Debug)]
pub struct Detect {
    pub nc: usize,
    /// Anchors per level.
    pub na: usize,
    /// Outputs per anchor: box (4), objectness, classes.
    pub no: usize,
    /// Per level: the 1×1 conv's weight and bias.
    convs: Vec<(Tensor, Tensor)>,
    /// IDetect's implicit knowledge per level (none for Detect, and none once fused).
    implicit: Vec<Implicit>,
    /// (levels, anchors, 2) in units of each level's stride (state_dict `anchors`).
    pub anchors: Tensor,
    pub strides: Vec<f64>,
}

impl Detect {
    /// Builds the head for inputs of `channels` with `strides`. `anchors_px` are in pixels;
    /// when the weights come from a checkpoint its `anchors` (already in stride units) win.
    pub fn new(
        kind: DetectKind,
        nc: usize,
        anchors_px: &[Vec<(f64, f64)>],
        channels: &[usize],
        strides: Vec<f64>,
        ctx: &BlockContext,
    ) -> Result<Detect> {
        let (nl, na, no) = (anchors_px.len(), anchors_px[0].len(), nc + 5);
        let loading = ctx.vb.contains_tensor("anchors");
        let anchors = ctx
            .vb
            .get_with_hints((nl, na, 2), "anchors", Init::Const(0.0))?;
        let anchors = if loading {
            anchors
        } else {
            let fresh = Tensor::from_vec(
                grid_units(anchors_px, &strides),
                (nl, na, 2),
                ctx.vb.device(),
            )?
            .to_dtype(ctx.vb.dtype())?;
            Var::from_tensor(&anchors)?.set(&fresh)?;
            anchors
        };
        let mut convs = Vec::with_capacity(nl);
        for (i, &c) in channels.iter().enumerate() {
            let vb = ctx.vb.pp("m").pp(i);
            let bound = 1.0 / (c as f64).sqrt();
            let init = Init::Uniform {
                lo: -bound,
                up: bound,
            };
            let fresh = !vb.contains_tensor("bias");
            let weight = vb.get_with_hints((na * no, c, 1, 1), "weight", init)?;
            let bias = vb.get_with_hints(na * no, "bias", init)?;
            if fresh {
                Var::from_tensor(&bias)?.set(&prior_bias(kind, &bias, na, nc, strides[i])?)?;
            }
            convs.push((weight, bias));
        }
        let implicit = match kind {
            DetectKind::Detect => vec![],
            DetectKind::IDetect => channels
                .iter()
                .enumerate()
                .map(|(i, &c)| Implicit::new(c, na * no, i, ctx))
                .collect::<Result<_>>()?,
        };
        Ok(Detect {
            nc,
            na,
            no,
            convs,
            implicit,
            anchors,
            strides,
        })
    }

    pub fn params(&self) -> Vec<Tensor> {
        let convs = self.convs.iter().flat_map(|(w, b)| [w.clone(), b.clone()]);
        convs
            .chain(
                self.implicit
                    .iter()
                    .flat_map(|k| [k.add.clone(), k.mul.clone()]),
            )
            .collect()
    }

    /// Folds IDetect's implicit knowledge into the convs, as yolov7's `IDetect.fuse`:
    /// bias' = (bias + W·ia)·im and W' = W·im, per output channel.
    pub fn fuse(&mut self) -> Result<()> {
        for ((weight, bias), Implicit { add, mul }) in self
            .convs
            .iter_mut()
            .zip(std::mem::take(&mut self.implicit))
        {
            let (co, ci) = (weight.dim(0)?, weight.dim(1)?);
            let shift = weight
                .detach()
                .reshape((co, ci))?
                .matmul(&add.detach().reshape((ci, 1))?)?
                .reshape(co)?;
            let scale = mul.detach().reshape(co)?;
            *bias = ((bias.detach() + shift)? * &scale)?;
            *weight = weight
                .detach()
                .broadcast_mul(&scale.reshape((co, 1, 1, 1))?)?;
        }
        Ok(())
    }

    /// Raw maps per level, (bs, na, ny, nx, no), as Detect returns them in training.
    pub fn forward(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        xs.iter()
            .zip(&self.convs)
            .enumerate()
            .map(|(i, (x, (w, b)))| {
                let (bs, _, ny, nx) = x.dims4()?;
                let implicit = self.implicit.get(i);
                if implicit.is_none() {
                    return head_conv(x, w, b, self.na);
                }
                let x = match implicit {
                    Some(k) => x.broadcast_add(&k.add)?,
                    None => x.clone(),
                };
                let y = conv2d_with_bias(&x, w, b, Conv2dParams::POINTWISE)?;
                let y = match implicit {
                    Some(k) => y.broadcast_mul(&k.mul)?,
                    None => y,
                };
                y.reshape((bs, self.na, self.no, ny, nx))?
                    .permute((0, 1, 3, 4, 2))?
                    .contiguous()
            })
            .collect()
    }

    /// Boxes (cx, cy, w, h in input pixels), objectness and class scores: (bs, N, no),
    /// levels in order, each (anchor, y, x)-major. One pass per level over its raw map.
    pub fn decode(&self, raw: &[Tensor]) -> Result<Tensor> {
        let anchors = self
            .anchors
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut shapes = Vec::with_capacity(raw.len());
        for r in raw {
            let (bs, na, ny, nx, no) = r.dims5()?;
            if na != self.na || no != self.no || bs != raw[0].dim(0)? {
                candle_core::bail!(
                    "decode: level of shape {:?} does not fit {} anchors of {} outputs",
                    r.dims(),
                    self.na,
                    self.no
                );
            }
            shapes.push((ny, nx));
        }
        let (bs, no) = (raw.first().map_or(Ok(0), |r| r.dim(0))?, self.no);
        let cells: usize = shapes.iter().map(|(ny, nx)| self.na * ny * nx).sum();
        // Not zero-filled (as large as the head's output): every level writes its cells.
        let len = bs * cells * no;
        let mut out = Vec::with_capacity(len);
        let mut first_cell = 0;
        for (level, (r, &(ny, nx))) in raw.iter().zip(&shapes).enumerate() {
            let stride = self.strides[level] as f32;
            let level_cells = self.na * ny * nx;
            with_f32_data("decode", [r], |[r]| {
                for (image, src) in r.chunks_exact(level_cells * no).enumerate() {
                    let dst = &mut out.spare_capacity_mut()[(image * cells + first_cell) * no..]
                        [..level_cells * no];
                    // Blocks of CELLS cells: σ of the whole block into the output in one
                    // vectorised loop, then each cell's box.
                    const CELLS: usize = 256;
                    dst.par_chunks_mut(no * CELLS)
                        .zip(src.par_chunks(no * CELLS))
                        .enumerate()
                        .for_each(|(block, (d, s))| {
                            Sigmoid.inference_into(s, d);
                            // SAFETY: `inference_into` wrote every element.
                            let d = unsafe { d.assume_init_mut() };
                            for (j, d) in d.chunks_exact_mut(no).enumerate() {
                                let cell = block * CELLS + j;
                                let (a, y, x) = (cell / (ny * nx), cell / nx % ny, cell % nx);
                                let anchor = &anchors[(level * self.na + a) * 2..][..2];
                                d[0] = (d[0] * 2.0 + (x as f32 - 0.5)) * stride;
                                d[1] = (d[1] * 2.0 + (y as f32 - 0.5)) * stride;
                                d[2] = (d[2] * 2.0).powi(2) * (anchor[0] * stride);
                                d[3] = (d[3] * 2.0).powi(2) * (anchor[1] * stride);
                            }
                        });
                }
            })?;
            first_cell += level_cells;
        }
        // SAFETY: the levels' cells cover every cell of every image.
        unsafe { out.set_len(len) };
        Tensor::from_vec(out, (bs, cells, no), self.anchors.device())
    }

    /// Adds the head and the decode to an ONNX graph, as yolov5 exports them: the levels'
    /// maps in, (bs, N, no) out, with the same arithmetic as [`Detect::decode`]. The grid
    /// comes from each map's shape, so the graph takes any input size. IDetect must be
    /// fused first.
    pub fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        if !self.implicit.is_empty() {
            return Err(GraphError::Unfused("IDetect"));
        }
        let anchors = self
            .anchors
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (na, no) = (self.na as i64, self.no as i64);
        let pointwise = Conv2dParams::POINTWISE;
        let mut levels = Vec::with_capacity(xs.len());
        for (level, (x, (w, b))) in xs.iter().zip(&self.convs).enumerate() {
            let stride = self.strides[level] as f32;
            let y = g.conv(x, w, Some(b), pointwise)?;
            // (bs, na·no, ny, nx) → (bs, na, no, ny·nx) → (bs, na, ny·nx, no)
            let cells_shape = g.ints(&[0, na, no, -1]);
            let y = g.binary("Reshape", &y, &cells_shape);
            let y = g.op(
                "Transpose",
                &[&y],
                vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))],
            );
            let y = g.unary("Sigmoid", &y);
            let sizes = g.ints(&[2, 2, no - 4]);
            let parts = g.op_outputs("Split", &[&y, &sizes], vec![("axis", Attr::Int(-1))], 3);
            let two = g.scalar(2.0);
            let grid = g.grid_cells(x, -0.5);
            let xy = g.binary("Mul", &parts[0], &two);
            let xy = g.binary("Add", &xy, &grid);
            let s = g.scalar(stride as f64);
            let xy = g.binary("Mul", &xy, &s);
            let wh = g.binary("Mul", &parts[1], &two);
            let wh = g.binary("Mul", &wh, &wh);
            let anchor_px = anchors[level * self.na * 2..][..self.na * 2]
                .iter()
                .map(|a| a * stride)
                .collect();
            let anchor_px = g.floats(&[1, self.na, 1, 2], anchor_px);
            let wh = g.binary("Mul", &wh, &anchor_px);
            let cat = g.concat(&[&xy, &wh, &parts[2]], -1);
            let rows = g.ints(&[0, -1, no]);
            levels.push(g.binary("Reshape", &cat, &rows));
        }
        Ok(g.concat(&levels, 1))
    }

    /// thop's count for the 1×1 convs at the levels' sizes.
    pub fn cost(&self, hws: &[(usize, usize)], cost: &mut Cost) {
        for ((w, _), hw) in self.convs.iter().zip(hws) {
            cost.macs += (hw.0 * hw.1 * w.dim(0).unwrap_or(0) * w.dim(1).unwrap_or(0)) as f64;
        }
    }
}

/// yolov7's ImplicitA (`ia.{level}.implicit`, added to the conv's input) and ImplicitM
/// (`im.{level}.implicit`, multiplying its output), each (1, channels, 1, 1).
#[derive(Debug)]
struct Implicit {
    add: Tensor,
    mul: Tensor,
}

impl Implicit {
    /// Initialised as yolov7 does: normal around 0 (ia) and 1 (im), std 0.02.
    fn new(c_in: usize, c_out: usize, level: usize, ctx: &BlockContext) -> Result<Implicit> {
        let add = ctx.vb.pp("ia").pp(level).get_with_hints(
            (1, c_in, 1, 1),
            "implicit",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let mul = ctx.vb.pp("im").pp(level).get_with_hints(
            (1, c_out, 1, 1),
            "implicit",
            Init::Randn {
                mean: 1.0,
                stdev: 0.02,
            },
        )?;
        Ok(Implicit { add, mul })
    }
}

/// Anchors in stride units, flipped first if their order disagrees with the strides'
/// (ultralytics' `check_anchor_order`).
fn grid_units(anchors_px: &[Vec<(f64, f64)>], strides: &[f64]) -> Vec<f32> {
    let area = |level: &Vec<(f64, f64)>| {
        level.iter().map(|(w, h)| w * h).sum::<f64>() / level.len() as f64
    };
    let (first, last) = (
        area(&anchors_px[0]),
        area(&anchors_px[anchors_px.len() - 1]),
    );
    let ds = strides[strides.len() - 1] - strides[0];
    let da = last - first;
    let flip = da != 0.0 && da.signum() != ds.signum();
    let ordered: Vec<&Vec<(f64, f64)>> = if flip {
        anchors_px.iter().rev().collect()
    } else {
        anchors_px.iter().collect()
    };
    ordered
        .iter()
        .zip(strides)
        .flat_map(|(level, &s)| {
            level
                .iter()
                .flat_map(move |(w, h)| [(w / s) as f32, (h / s) as f32])
        })
        .collect()
}

/// YOLOv5's prior on a fresh head: objectness for ~8 objects per 640² image, and class
/// scores of 0.6 / (nc − 0.99999) (https://arxiv.org/abs/1708.02002 section 3.3); yolov7
/// writes nc − 0.99.
fn prior_bias(
    kind: DetectKind,
    bias: &Tensor,
    na: usize,
    nc: usize,
    stride: f64,
) -> Result<Tensor> {
    let no = nc + 5;
    let mut b = bias.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let obj = (8.0 / (640.0 / stride).powi(2)).ln();
    let offset = match kind {
        DetectKind::Detect => 0.99999,
        DetectKind::IDetect => 0.99,
    };
    let cls = (0.6 / (nc as f64 - offset)).ln();
    for a in 0..na {
        b[a * no + 4] += obj;
        for c in 0..nc {
            b[a * no + 5 + c] += cls;
        }
    }
    Tensor::from_vec(b, bias.shape(), bias.device())?.to_dtype(bias.dtype())
}
