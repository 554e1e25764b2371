//! Conv: Conv2d (no bias) + BatchNorm2d + activation; after `fuse`, Conv2d with bias +
//! activation. The block every other block and the anchor-free head are made of.

use candle_core::{Result, Tensor};

use super::block::{Block, BlockContext};
use crate::act::{ActSpec, Activation};
use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};

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
        self.act
            .forward_after(&self.body, std::slice::from_ref(x), None, train)
    }

    /// `forward` of the concatenation of `parts` along the channels: at inference a 1×1
    /// conv reads the parts where they lie, and the concatenation is never written.
    pub fn forward_joined(&self, parts: &[Tensor], train: bool) -> Result<Tensor> {
        self.act.forward_after(&self.body, parts, None, train)
    }

    /// `residual + forward(x)` (a shortcut): at inference, added as the convolution
    /// stores its output, where a separate add would read and write the whole tensor again.
    pub fn forward_plus(&self, x: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        self.act
            .forward_after(&self.body, std::slice::from_ref(x), Some(residual), train)
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

    fn forward_parts(&self, parts: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_joined(parts, train)
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
