//! Conv: Conv2d (no bias) + BatchNorm2d + activation; after `fuse`, Conv2d with bias +
//! activation. The block every other block and the anchor-free head are made of.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use super::block::{Block, BlockContext};
use crate::act::{probe, ActSpec, Activation};
use crate::ops::conv2d::{conv2d_bias_act_split, Conv2dParams};
use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::elementwise::Elementwise;
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

/// 1×1 Convs of one input, once fused, as one conv of their weights stacked along the
/// output channels: at inference it reads the input once, where each conv read it again
/// (C3's cv1 and cv2, whose input is the largest tensor of each stage, often in parts).
#[derive(Debug)]
pub struct StackedConvs {
    weight: Tensor,
    bias: Tensor,
    params: Conv2dParams,
    act: Arc<dyn Elementwise>,
    /// Each conv's output channels.
    splits: Vec<usize>,
}

impl StackedConvs {
    /// `convs` (fused) stacked, or None unless they are 1×1 convs of the same input
    /// channels and geometry with the same parameter-free activation.
    pub fn of(convs: &[&Conv]) -> Result<Option<StackedConvs>> {
        let Some(first) = convs.first() else {
            return Ok(None);
        };
        let (weights, biases): (Vec<Tensor>, Vec<Tensor>) = convs
            .iter()
            .map(|c| c.body.folded())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let params = first.body.conv_params();
        let input = weights[0].dim(1)?;
        let alike = convs.iter().zip(&weights).all(|(c, w)| {
            c.body.conv_params() == params
                && w.dims()[1..] == [input, 1, 1]
                && c.act.spec() == first.act.spec()
        });
        let (Some(act), true) = (first.act.fusable(false), alike) else {
            return Ok(None);
        };
        Ok(Some(StackedConvs {
            splits: weights.iter().map(|w| w.dim(0)).collect::<Result<_>>()?,
            weight: Tensor::cat(&weights, 0)?,
            bias: Tensor::cat(&biases, 0)?,
            params,
            act,
        }))
    }

    /// Each conv's `forward_joined(parts)`, or None where the stacked conv does not run
    /// (training, diagnostics, or where the kernel does not apply): then each conv runs on
    /// its own.
    pub fn forward(&self, parts: &[Tensor], train: bool) -> Result<Option<Vec<Tensor>>> {
        if train || probe::is_capturing() {
            return Ok(None);
        }
        let act = Some(&self.act);
        conv2d_bias_act_split(
            parts,
            &self.weight,
            &self.bias,
            self.params,
            act,
            &self.splits,
        )
    }
}
