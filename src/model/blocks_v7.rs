//! yolov7's own blocks (WongKinYiu/yolov7 `models/common.py`): SPPCSPC and RepConv. Its
//! Conv, Concat and nn.Upsample are YOLOv5's ([`super::blocks`]); MP and SP are
//! [`Block::MaxPool`](super::blocks::Block::MaxPool); IDetect is the Detect head with
//! implicit knowledge ([`super::detect`]). Parameter names follow yolov7's state_dict,
//! relative to the `VarBuilder` each block is given.

use candle_core::{Result, Tensor};

use super::blocks::{pyramid, BlockContext, Conv};
use crate::act::{ActSpec, Activation};
use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::norm::{BatchNorm2d, BnConfig};

/// SPP inside a CSP block: cv1 → cv3 → cv4 and its max-pool pyramid, then cv5 → cv6, beside
/// the cv2 shortcut; cv7 joins them.
#[derive(Debug)]
pub struct Sppcspc {
    cv1: Conv,
    cv2: Conv,
    cv3: Conv,
    cv4: Conv,
    cv5: Conv,
    cv6: Conv,
    cv7: Conv,
    ks: Vec<usize>,
}

impl Sppcspc {
    /// yolov7's `SPPCSPC(c1, c2, n, shortcut, g, e, k)`, whose n, shortcut and g are unused.
    pub fn new(
        c1: usize,
        c2: usize,
        e: f64,
        ks: &[usize],
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = (2.0 * c2 as f64 * e) as usize;
        let conv = |c_in, c_out, k, name: &str| {
            Conv::new(ConvShape::new(c_in, c_out, k, 1), act, &ctx.pp(name))
        };
        Ok(Sppcspc {
            cv1: conv(c1, hidden, 1, "cv1")?,
            cv2: conv(c1, hidden, 1, "cv2")?,
            cv3: conv(hidden, hidden, 3, "cv3")?,
            cv4: conv(hidden, hidden, 1, "cv4")?,
            cv5: conv(hidden * (ks.len() + 1), hidden, 1, "cv5")?,
            cv6: conv(hidden, hidden, 3, "cv6")?,
            cv7: conv(2 * hidden, c2, 1, "cv7")?,
            ks: ks.to_vec(),
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x1 = self.cv4.forward(
            &self.cv3.forward(&self.cv1.forward(x, train)?, train)?,
            train,
        )?;
        let y1 = self
            .cv6
            .forward(&self.cv5.forward(&pyramid(&x1, &self.ks)?, train)?, train)?;
        let y2 = self.cv2.forward(x, train)?;
        self.cv7.forward(&Tensor::cat(&[y1, y2], 1)?, train)
    }

    /// Its Convs in state_dict order.
    pub fn convs(&self) -> Vec<&Conv> {
        vec![
            &self.cv1, &self.cv2, &self.cv3, &self.cv4, &self.cv5, &self.cv6, &self.cv7,
        ]
    }

    pub fn convs_mut(&mut self) -> Vec<&mut Conv> {
        vec![
            &mut self.cv1,
            &mut self.cv2,
            &mut self.cv3,
            &mut self.cv4,
            &mut self.cv5,
            &mut self.cv6,
            &mut self.cv7,
        ]
    }

    /// Output size and thop's count for an input of `hw` (every conv keeps the size).
    pub fn cost(&self, hw: (usize, usize), cost: &mut Cost) -> (usize, usize) {
        self.convs()
            .into_iter()
            .fold(hw, |hw, conv| conv.cost(hw, cost))
    }
}

/// RepVGG's re-parameterisable 3×3 conv, in its training form: a 3×3 conv + BatchNorm, a 1×1
/// conv + BatchNorm and, when c1 == c2 and s == 1, a BatchNorm of the input itself, summed
/// before the activation. [`RepConv::fuse`] folds the three into one 3×3 conv with bias, as
/// yolov7's `fuse_repvgg_block` does for inference.
#[derive(Debug)]
pub struct RepConv {
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
    pub fn new(
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

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let Some(pointwise) = &self.pointwise else {
            return self.act.forward_after(&self.dense, x, train);
        };
        let mut y = (self.dense.forward(x, train, None)? + pointwise.forward(x, train, None)?)?;
        if let Some(bn) = &self.identity {
            y = (y + bn.forward_t(x, train)?)?;
        }
        self.act.forward(&y, train)
    }

    /// Folds the three branches into the 3×3 conv: the 1×1 kernel zero-padded to 3×3, the
    /// identity as a 3×3 kernel with a 1 at the centre of each channel's own input.
    /// An activation with its own BatchNorm (FReLU) is folded too.
    pub fn fuse(&mut self) -> Result<()> {
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

    pub fn params(&self) -> Vec<Tensor> {
        let mut params = self.dense.params();
        params.extend(self.pointwise.iter().flat_map(ConvBn::params));
        params.extend(self.identity.iter().flat_map(BatchNorm2d::params));
        params.extend(self.act.params());
        params
    }

    pub fn activation(&self) -> &Activation {
        &self.act
    }

    /// Output size and thop's count for an input of `hw`: every branch's convolution and
    /// BatchNorm.
    pub fn cost(&self, hw: (usize, usize), cost: &mut Cost) -> (usize, usize) {
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
