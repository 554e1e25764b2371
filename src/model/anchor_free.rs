//! ultralytics 8's anchor-free Detect head (YOLOv8, YOLO11): per level, a box branch
//! (two 3×3 Convs and a 1×1 conv to 4·reg_max logits: a distribution over distances to
//! each side) and a class branch (two 3×3 Convs, or YOLO11's depthwise 3×3 + 1×1 pairs,
//! and a 1×1 conv to nc logits). The decode takes each side's expected distance under the
//! softmax (the fixed DFL conv, whose weight is 0..reg_max) from the cell's centre.

use candle_core::{Result, Tensor, Var};
use candle_nn::Init;
use rayon::prelude::*;

use super::block::{Block, BlockContext};
use super::conv::Conv;
use crate::act::ActSpec;
use crate::ops::conv2d::Conv2dParams;
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Attr, Graph, GraphError};
use crate::ops::head_conv::head_conv;
use crate::ops::scalar::sigmoid;
use crate::ops::storage::with_f32_data;

/// One branch of one level: Convs, then a 1×1 conv with bias.
#[derive(Debug)]
struct Branch {
    convs: Vec<Conv>,
    weight: Tensor,
    bias: Tensor,
}

impl Branch {
    /// Convs under their names (`0`, or `0.1` inside a nested pair), then the final conv
    /// under `2`, from the last Conv's width to `c_out`, its bias filled with `bias`.
    fn new(
        convs: &[(&str, ConvShape)],
        c_out: usize,
        bias: f64,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Branch> {
        let shapes = convs;
        let convs: Vec<Conv> = shapes
            .iter()
            .map(|(name, shape)| {
                let ctx = name.split('.').fold(ctx.clone(), |ctx, part| ctx.pp(part));
                Conv::new(*shape, act, &ctx)
            })
            .collect::<Result<_>>()?;
        let c_in = shapes.last().map_or(0, |(_, shape)| shape.c2);
        let vb = ctx.vb.pp("2");
        let bound = 1.0 / (c_in as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let fresh = !vb.contains_tensor("bias");
        let weight = vb.get_with_hints((c_out, c_in, 1, 1), "weight", init)?;
        let b = vb.get_with_hints(c_out, "bias", init)?;
        if fresh {
            Var::from_tensor(&b)?.set(&b.ones_like()?.affine(0.0, bias)?)?;
        }
        Ok(Branch {
            convs,
            weight,
            bias: b,
        })
    }

    /// (bs, 1, ny, nx, c_out).
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for conv in &self.convs {
            y = conv.forward(&y, train)?;
        }
        head_conv(&y, &self.weight, &self.bias, 1)
    }
}

#[derive(Debug)]
pub struct AnchorFreeDetect {
    pub nc: usize,
    /// Bins per box side.
    pub reg_max: usize,
    pub strides: Vec<f64>,
    /// `cv2.{level}`: box distributions.
    boxes: Vec<Branch>,
    /// `cv3.{level}`: class logits.
    classes: Vec<Branch>,
    /// `dfl.conv.weight`, (1, reg_max, 1, 1) = 0..reg_max: fixed, in the state_dict.
    dfl: Tensor,
}

impl AnchorFreeDetect {
    /// `legacy` (YOLOv8): the class branch is two 3×3 Convs; otherwise (YOLO11) two
    /// depthwise 3×3 + 1×1 pairs. A fresh head gets ultralytics' `bias_init`.
    pub fn new(
        nc: usize,
        reg_max: usize,
        channels: &[usize],
        strides: Vec<f64>,
        legacy: bool,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<AnchorFreeDetect> {
        let first = channels[0];
        let c_box = 16.max(first / 4).max(4 * reg_max);
        let c_cls = first.max(nc.min(100));
        let mut boxes = Vec::with_capacity(channels.len());
        let mut classes = Vec::with_capacity(channels.len());
        for (i, (&c, &stride)) in channels.iter().zip(&strides).enumerate() {
            let box_convs = [
                ("0", ConvShape::new(c, c_box, 3, 1)),
                ("1", ConvShape::new(c_box, c_box, 3, 1)),
            ];
            boxes.push(Branch::new(
                &box_convs,
                4 * reg_max,
                2.0,
                act,
                &ctx.pp("cv2").pp(i),
            )?);
            let depthwise = |c: usize| ConvShape {
                g: c,
                ..ConvShape::new(c, c, 3, 1)
            };
            let cls_convs: Vec<(&str, ConvShape)> = if legacy {
                vec![
                    ("0", ConvShape::new(c, c_cls, 3, 1)),
                    ("1", ConvShape::new(c_cls, c_cls, 3, 1)),
                ]
            } else {
                vec![
                    ("0.0", depthwise(c)),
                    ("0.1", ConvShape::new(c, c_cls, 1, 1)),
                    ("1.0", depthwise(c_cls)),
                    ("1.1", ConvShape::new(c_cls, c_cls, 1, 1)),
                ]
            };
            // About 0.01 objects of each of 80 classes per cell of a 640 image.
            let prior = (5.0 / nc as f64 / (640.0 / stride).powi(2)).ln();
            classes.push(Branch::new(
                &cls_convs,
                nc,
                prior,
                act,
                &ctx.pp("cv3").pp(i),
            )?);
        }
        let vb = ctx.vb.pp("dfl").pp("conv");
        let dfl = vb.get_with_hints((1, reg_max, 1, 1), "weight", Init::Const(0.0))?;
        let bins: Vec<f32> = (0..reg_max).map(|i| i as f32).collect();
        Var::from_tensor(&dfl)?.set(&Tensor::from_vec(bins, (1, reg_max, 1, 1), dfl.device())?)?;
        Ok(AnchorFreeDetect {
            nc,
            reg_max,
            strides,
            boxes,
            classes,
            dfl,
        })
    }

    /// Outputs per cell: 4·reg_max box logits, then nc class logits.
    pub fn no(&self) -> usize {
        4 * self.reg_max + self.nc
    }

    fn convs(&self) -> impl Iterator<Item = &Conv> {
        self.boxes
            .iter()
            .chain(&self.classes)
            .flat_map(|b| &b.convs)
    }

    pub fn params(&self) -> Vec<Tensor> {
        let mut params: Vec<Tensor> = self.convs().flat_map(|c| c.params()).collect();
        for b in self.boxes.iter().chain(&self.classes) {
            params.extend([b.weight.clone(), b.bias.clone()]);
        }
        params.push(self.dfl.clone());
        params
    }

    pub fn fuse(&mut self) -> Result<()> {
        for branch in self.boxes.iter_mut().chain(&mut self.classes) {
            for conv in &mut branch.convs {
                conv.fuse()?;
            }
        }
        Ok(())
    }

    pub fn activations(&self) -> Vec<&crate::act::Activation> {
        self.convs().flat_map(|c| c.activations()).collect()
    }

    /// Raw maps per level, (bs, 1, ny, nx, 4·reg_max + nc): the layout of YOLOv5's head
    /// with one anchor, so the code that reads raw maps serves both.
    pub fn forward(&self, xs: &[Tensor], train: bool) -> Result<Vec<Tensor>> {
        xs.iter()
            .zip(self.boxes.iter().zip(&self.classes))
            .map(|(x, (b, c))| Tensor::cat(&[b.forward(x, train)?, c.forward(x, train)?], 4))
            .collect()
    }

    /// Boxes (cx, cy, w, h in input pixels), an objectness of 1 and the class scores:
    /// (bs, N, 5 + nc), levels in order, cells row-major, so YOLOv5's NMS reads it (its
    /// objectness × class score is the class score, as ultralytics 8 scores).
    pub fn decode(&self, raw: &[Tensor]) -> Result<Tensor> {
        let (no, r, nc) = (self.no(), self.reg_max, self.nc);
        let mut shapes = Vec::with_capacity(raw.len());
        for t in raw {
            let (bs, na, ny, nx, c) = t.dims5()?;
            if na != 1 || c != no || bs != raw[0].dim(0)? {
                candle_core::bail!(
                    "decode: level of shape {:?} does not fit one cell of {no} outputs",
                    t.dims()
                );
            }
            shapes.push((ny, nx));
        }
        let bs = raw.first().map_or(Ok(0), |t| t.dim(0))?;
        let cells: usize = shapes.iter().map(|(ny, nx)| ny * nx).sum();
        let out_no = 5 + nc;
        let mut out = vec![0f32; bs * cells * out_no];
        let mut first_cell = 0;
        for (level, (t, &(ny, nx))) in raw.iter().zip(&shapes).enumerate() {
            let stride = self.strides[level] as f32;
            let level_cells = ny * nx;
            with_f32_data("decode", [t], |[src]| {
                for (image, src) in src.chunks_exact(level_cells * no).enumerate() {
                    let dst =
                        &mut out[(image * cells + first_cell) * out_no..][..level_cells * out_no];
                    dst.par_chunks_mut(out_no)
                        .zip(src.par_chunks(no))
                        .enumerate()
                        .for_each(|(cell, (d, s))| {
                            let (y, x) = ((cell / nx) as f32 + 0.5, (cell % nx) as f32 + 0.5);
                            let [l, t, rt, b] =
                                [0, 1, 2, 3].map(|side| expected_bin(&s[side * r..][..r]));
                            let (x1, y1, x2, y2) = (x - l, y - t, x + rt, y + b);
                            d[0] = (x1 + x2) / 2.0 * stride;
                            d[1] = (y1 + y2) / 2.0 * stride;
                            d[2] = (x2 - x1) * stride;
                            d[3] = (y2 - y1) * stride;
                            d[4] = 1.0;
                            for (o, &v) in d[5..].iter_mut().zip(&s[4 * r..]) {
                                *o = sigmoid(v);
                            }
                        });
                }
            })?;
            first_cell += level_cells;
        }
        Tensor::from_vec(out, (bs, cells, out_no), self.dfl.device())
    }

    /// Adds the head and its decode to an ONNX graph in ultralytics 8's export layout: the
    /// levels' maps in, (bs, 4 + nc, N) out: boxes (cx, cy, w, h in pixels) then class
    /// probabilities, with the arithmetic of [`AnchorFreeDetect::decode`]. The grid comes
    /// from each map's shape, so the graph takes any input size.
    pub fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let (r, nc) = (self.reg_max as i64, self.nc as i64);
        let pointwise = Conv2dParams::POINTWISE;
        let bins = g.floats(
            &[1, 1, self.reg_max, 1],
            (0..self.reg_max).map(|i| i as f32).collect(),
        );
        let mut levels = Vec::with_capacity(xs.len());
        for ((x, (b, c)), &stride) in xs
            .iter()
            .zip(self.boxes.iter().zip(&self.classes))
            .zip(&self.strides)
        {
            let branch = |g: &mut Graph, branch: &Branch| {
                let mut y = x.clone();
                for conv in &branch.convs {
                    y = conv.export_on(g, &y)?;
                }
                g.conv(&y, &branch.weight, Some(&branch.bias), pointwise)
            };
            let dist = branch(g, b)?;
            let cls = branch(g, c)?;
            // (bs, 4·R, ny, nx) → (bs, 4, R, cells): each side's expected bin.
            let sides_shape = g.ints(&[0, 4, r, -1]);
            let dist = g.binary("Reshape", &dist, &sides_shape);
            let dist = g.op("Softmax", &[&dist], vec![("axis", Attr::Int(2))]);
            let dist = g.binary("Mul", &dist, &bins);
            let axes = g.ints(&[2]);
            let dist = g.op(
                "ReduceSum",
                &[&dist, &axes],
                vec![("keepdims", Attr::Int(0))],
            );
            let halves = g.ints(&[2, 2]);
            let parts = g.op_outputs("Split", &[&dist, &halves], vec![("axis", Attr::Int(1))], 2);
            // Cell centres (2, cells), against (bs, 2, cells) distances.
            let centres = g.grid_cells(x, 0.5);
            let centres = g.op(
                "Transpose",
                &[&centres],
                vec![("perm", Attr::Ints(vec![1, 0]))],
            );
            let top_left = g.binary("Sub", &centres, &parts[0]);
            let bottom_right = g.binary("Add", &centres, &parts[1]);
            let sum = g.binary("Add", &top_left, &bottom_right);
            let two = g.scalar(2.0);
            let centre = g.binary("Div", &sum, &two);
            let size = g.binary("Sub", &bottom_right, &top_left);
            let xywh = g.concat(&[&centre, &size], 1);
            let s = g.scalar(stride);
            let xywh = g.binary("Mul", &xywh, &s);
            let cls_shape = g.ints(&[0, nc, -1]);
            let cls = g.binary("Reshape", &cls, &cls_shape);
            let cls = g.unary("Sigmoid", &cls);
            levels.push(g.concat(&[&xywh, &cls], 1));
        }
        Ok(g.concat(&levels, 2))
    }

    /// thop's count: the branches' Convs and final convs, and the DFL conv (reg_max
    /// multiply-adds per side and cell).
    pub fn cost(&self, hws: &[(usize, usize)], cost: &mut Cost) {
        for ((b, c), &hw) in self.boxes.iter().zip(&self.classes).zip(hws) {
            for branch in [b, c] {
                let hw = branch
                    .convs
                    .iter()
                    .fold(hw, |hw, conv| conv.conv_cost(hw, cost));
                let [co, ci] = [0, 1].map(|d| branch.weight.dim(d).unwrap_or(0));
                cost.macs += (hw.0 * hw.1 * co * ci) as f64;
            }
            cost.macs += (hw.0 * hw.1 * 4 * self.reg_max) as f64;
        }
    }
}

/// Σ i·softmax(logits)ᵢ: a side's distance in grid cells.
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut weighted) = (0f32, 0f32);
    for (i, &v) in logits.iter().enumerate() {
        let e = (v - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    weighted / sum
}
