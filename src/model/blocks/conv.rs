//! Conv: Conv2d (no bias) + BatchNorm2d + activation; after `fuse`, Conv2d with bias +
//! activation. YOLOv5's `Conv(c1, c2, k, s, p, g, d, act)`, or yolov7's
//! `Conv(c1, c2, k, s, p, g, act)` (no dilation).

use std::sync::Arc;

use candle_core::{Result, Tensor};
use serde_yaml::Value;

use crate::act::{ActArg, ActSpec, Activation};
use crate::model::block::{Block, BlockContext};
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowContext, RowError};
use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};

pub static CONV: BlockDef = BlockDef {
    name: "Conv",
    parse: parse_conv,
    head: false,
};

/// A Conv's row arguments (Focus takes the same, without dilation).
#[derive(Debug)]
pub(super) struct ConvRow {
    c2: usize,
    k: usize,
    s: usize,
    p: Option<usize>,
    g: usize,
    d: usize,
    act: ActArg,
}

fn parse_conv(
    values: &[Value],
    _: &RowContext,
) -> std::result::Result<Arc<dyn LayerSpec>, RowError> {
    // yolov7's Conv has no dilation: True, False or a spec in the sixth place is its `act`.
    let yolov7 = matches!(values.get(5), Some(Value::Bool(_) | Value::String(_)));
    let names: &'static [&'static str] = if yolov7 {
        &["c2", "k", "s", "p", "g", "act"]
    } else {
        &["c2", "k", "s", "p", "g", "d", "act"]
    };
    Ok(Arc::new(ConvRow::read(
        &RowArgs::new(values, names, 1)?,
        !yolov7,
    )?))
}

impl ConvRow {
    /// `c2, k, s, p, g`, then `d` when the row has it, then `act`.
    pub(super) fn read(a: &RowArgs, has_dilation: bool) -> std::result::Result<Self, RowError> {
        Ok(ConvRow {
            c2: a.c2()?,
            k: a.usize_or(1, 1)?,
            s: a.usize_or(2, 1)?,
            p: a.opt_usize(3)?,
            g: a.usize_or(4, 1)?,
            d: if has_dilation { a.usize_or(5, 1)? } else { 1 },
            act: a.act(if has_dilation { 6 } else { 5 })?,
        })
    }

    /// The convolution on this layer's input, and its activation.
    pub(super) fn shape(&self, layer: &LayerInputs) -> (ConvShape, ActSpec) {
        let shape = ConvShape {
            c1: layer.c1(),
            c2: layer.width(self.c2),
            k: self.k,
            s: self.s,
            p: self.p,
            g: self.g,
            d: self.d,
        };
        (shape, layer.act(&self.act))
    }
}

impl LayerSpec for ConvRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (shape, act) = self.shape(layer);
        let ConvShape { c1, c2, .. } = shape;
        Ok(Built::Layer {
            blocks: layer.repeat(|ctx| Ok(Box::new(Conv::new(shape, &act, ctx)?)))?,
            c2,
            args: format!(
                "[{c1}, {c2}, {}, {}, {}, {}, {}, {act}]",
                self.k,
                self.s,
                self.p.map_or("None".into(), |p| p.to_string()),
                self.g,
                self.d
            ),
        })
    }
}

/// Conv2d (no bias) + BatchNorm2d + activation.
#[derive(Debug)]
pub struct Conv {
    body: ConvBn,
    act: Activation,
}

impl Conv {
    pub fn new(shape: ConvShape, act: &ActSpec, ctx: &BlockContext) -> Result<Conv> {
        // GLU halves its input, so the convolution makes twice the block's output channels.
        let conv_out = shape.c2 * act.channel_factor();
        let body = ConvBn::new(
            ConvShape {
                c2: conv_out,
                ..shape
            },
            ctx.vb.pp("conv"),
            ctx.vb.pp("bn"),
        )?;
        let act = Activation::new(act, conv_out, ctx.vb.pp("act"), ctx.rng())?;
        Ok(Conv { body, act })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.act.forward_after(&self.body, x, train)
    }

    /// Adds the convolution (BatchNorm folded) and its activation to an ONNX graph.
    pub fn export_on(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let y = self.body.export(g, x)?;
        self.act.export(g, &y)
    }

    /// Output size and thop's count for an input of `hw`.
    pub fn conv_cost(&self, hw: (usize, usize), cost: &mut Cost) -> (usize, usize) {
        let out = self.body.cost(hw, cost);
        cost.macs += self.act.macs(out);
        out
    }
}

impl Block for Conv {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward(&xs[0], train)
    }

    fn params(&self) -> Vec<Tensor> {
        let mut params = self.body.params();
        params.extend(self.act.params());
        params
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        self.conv_cost(hws[0], cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        self.export_on(g, &xs[0])
    }

    /// Folds the BatchNorm into the convolution for inference (and the activation's own,
    /// if it has one).
    fn fuse(&mut self) -> Result<()> {
        self.body.fuse()?;
        self.act.fuse()
    }

    fn activations(&self) -> Vec<&Activation> {
        vec![&self.act]
    }
}
