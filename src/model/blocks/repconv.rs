//! yolov7's RepConv: `RepConv(c1, c2, k=3, s, p, g, act)`, RepVGG's re-parameterisable 3×3
//! conv in its training form.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::act::{ActSpec, Activation};
use crate::model::block::{Block, BlockContext};
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};
use crate::ops::norm::{BatchNorm2d, BnConfig};

pub static REPCONV: BlockDef = BlockDef {
    name: "RepConv",
    parse: |values, _| {
        let a = RowArgs::new(values, &["c2", "k", "s", "p", "g", "act", "deploy"], 1)?;
        if a.usize_or(1, 3)? != 3 {
            return Err(a.bad(1, "3 (yolov7's RepConv is 3×3 only)"));
        }
        if a.opt_usize(3)?.is_some_and(|p| p != 1) {
            return Err(a.bad(3, "None or 1 (yolov7's RepConv pads by 1)"));
        }
        if a.bool_or(6, false)? {
            return Err(a.bad(6, "False: actyolo builds the training form, and `fuse` makes the deploy form for inference"));
        }
        Ok(Arc::new(RepConvRow {
            c2: a.c2()?,
            s: a.usize_or(2, 1)?,
            g: a.usize_or(4, 1)?,
            act: a.act(5)?,
        }))
    },
    head: false,
};

#[derive(Debug)]
struct RepConvRow {
    c2: usize,
    s: usize,
    g: usize,
    act: crate::act::ActArg,
}

impl LayerSpec for RepConvRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2, s, g) = (layer.c1(), layer.width(self.c2), self.s, self.g);
        let act = layer.act(&self.act);
        Ok(Built::Layer {
            blocks: layer.repeat(|ctx| Ok(Box::new(RepConv::new(c1, c2, s, g, &act, ctx)?)))?,
            c2,
            args: format!("[{c1}, {c2}, 3, {s}, None, {g}, {act}]"),
        })
    }
}

/// RepVGG's re-parameterisable 3×3 conv, in its training form: a 3×3 conv + BatchNorm, a 1×1
/// conv + BatchNorm and, when c1 == c2 and s == 1, a BatchNorm of the input itself, summed
/// before the activation. [`RepConv::fuse`] folds the three into one 3×3 conv with bias, as
/// yolov7's `fuse_repvgg_block` does for inference.
#[derive(Debug)]
struct RepConv {
    /// `rbr_dense`; once fused, the one convolution every branch folds into.
    dense: ConvBn,
    /// `rbr_1x1`; None once fused.
    pointwise: Option<ConvBn>,
    /// `rbr_identity`; None without one or once fused.
    identity: Option<BatchNorm2d>,
    act: Activation,
}

impl RepConv {
    /// yolov7's `RepConv(c1, c2, 3, s, None, g, act)`.
    fn new(
        c1: usize,
        c2: usize,
        s: usize,
        g: usize,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        // GLU halves its input, so the convolutions make twice the block's output channels.
        let conv_out = c2 * act.channel_factor();
        let with_identity = c1 == c2 && s == 1;
        if with_identity && conv_out != c1 {
            candle_core::bail!("RepConv({c1}, {c2}): its identity branch cannot be summed with the {conv_out} channels that {act} needs");
        }
        let branch = |k: usize, p: usize, name: &str| {
            let shape = ConvShape {
                c1,
                c2: conv_out,
                k,
                s,
                p: Some(p),
                g,
                d: 1,
            };
            ConvBn::new(shape, ctx.vb.pp(name).pp(0), ctx.vb.pp(name).pp(1))
        };
        Ok(RepConv {
            dense: branch(3, 1, "rbr_dense")?,
            pointwise: Some(branch(1, 0, "rbr_1x1")?),
            identity: if with_identity {
                Some(BatchNorm2d::new(
                    c1,
                    BnConfig::YOLO,
                    ctx.vb.pp("rbr_identity"),
                )?)
            } else {
                None
            },
            act: Activation::new(act, conv_out, ctx.vb.pp("act"), ctx.rng())?,
        })
    }
}

impl Block for RepConv {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let Some(pointwise) = &self.pointwise else {
            return self.act.forward_after(&self.dense, &xs[..1], None, train);
        };
        let x = &xs[..1];
        let mut y = (self.dense.forward(x, train, None, None)?
            + pointwise.forward(x, train, None, None)?)?;
        if let Some(bn) = &self.identity {
            y = (y + bn.forward_t(&xs[0], train)?)?;
        }
        self.act.forward(&y, train)
    }

    /// Folds the three branches into the 3×3 conv: the 1×1 kernel zero-padded to 3×3, the
    /// identity as a 3×3 kernel with a 1 at the centre of each channel's own input.
    /// An activation with its own BatchNorm (FReLU) is folded too.
    fn fuse(&mut self) -> Result<()> {
        self.act.fuse()?;
        let Some(pointwise) = self.pointwise.take() else {
            return Ok(());
        };
        let (dense_weight, dense_bias) = self.dense.folded()?;
        let (point_weight, point_bias) = pointwise.folded()?;
        let mut weight = (dense_weight
            + point_weight
                .pad_with_zeros(2, 1, 1)?
                .pad_with_zeros(3, 1, 1)?)?;
        let mut bias = (dense_bias + point_bias)?;
        if let Some(bn) = self.identity.take() {
            let (id_weight, id_bias) = bn.fold(&identity_kernel(&weight)?)?;
            weight = (weight + id_weight)?;
            bias = (bias + id_bias)?;
        }
        self.dense.set_folded(weight, bias);
        Ok(())
    }

    fn params(&self) -> Vec<Tensor> {
        let mut params = self.dense.params();
        params.extend(self.pointwise.iter().flat_map(ConvBn::params));
        params.extend(self.identity.iter().flat_map(BatchNorm2d::params));
        params.extend(self.act.params());
        params
    }

    fn activations(&self) -> Vec<&Activation> {
        vec![&self.act]
    }

    /// The fused form only: one convolution and the activation.
    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        if self.pointwise.is_some() {
            return Err(GraphError::Unfused("RepConv"));
        }
        let y = self.dense.export(g, &xs[0])?;
        self.act.export(g, &y)
    }

    /// Output size and thop's count for an input of `hw`: every branch's convolution and
    /// BatchNorm.
    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let hw = hws[0];
        let out = self.dense.cost(hw, cost);
        if let Some(pointwise) = &self.pointwise {
            pointwise.cost(hw, cost);
        }
        let channels = self.dense.out_channels();
        if self.identity.is_some() {
            // Only with stride 1, so on the output's size.
            cost.macs += 4.0 * (channels * out.0 * out.1) as f64;
        }
        cost.macs += self.act.macs(out);
        out
    }
}

/// The 3×3 kernel of the identity for a (c, c / g, 3, 3) weight: output channel i reads its
/// own input channel, i mod (c / g) within its group.
fn identity_kernel(like: &Tensor) -> Result<Tensor> {
    let (c, per_group, kh, kw) = like.dims4()?;
    let mut values = vec![0f32; c * per_group * kh * kw];
    for i in 0..c {
        values[((i * per_group + i % per_group) * kh + kh / 2) * kw + kw / 2] = 1.0;
    }
    Tensor::from_vec(values, (c, per_group, kh, kw), like.device())?.to_dtype(like.dtype())
}
