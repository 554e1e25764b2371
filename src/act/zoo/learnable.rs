//! Activations that learn per channel, from ultralytics' `activations.py`: FReLU (a funnel
//! of a depthwise convolution and BatchNorm), ACON-C and Meta-ACON-C.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::act::probe::{self, LearnedSummary};
use crate::act::registry::ActModule;
use crate::act::registry::{
    no_check, param, ActDef, ArgError, ParamDefault::I, ParamType::Int, Properties, ELEMENTWISE,
};
use crate::ops::conv2d::Conv2dParams;
use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};
use crate::ops::{acon, maximum, pointwise};

use super::sigmoid::Sigmoid;

pub static FRELU: ActDef = ActDef {
    name: "FReLU",
    torch: false,
    aliases: &["funnelrelu"],
    params: &[param("k", Int, I(3))],
    formula: "max(x, BN(depthwise kxk conv(x))), learnable per channel",
    properties: Properties {
        monotonic: None,
        bounded_below: Some(false),
        bounded_above: Some(false),
        smooth: Some(false),
        zero_at_zero: None,
    },
    check: |a| match a.i(0) {
        k if k >= 1 && k % 2 == 1 => Ok(()),
        k => Err(ArgError::new(
            "k",
            format!("{k}: the depthwise kernel size must be odd and >= 1 (3 in the paper)"),
        )),
    },
    learnable: true,
    pointwise: false,
    module: Some(|m| {
        let k = m.args.i(0) as usize;
        let shape = ConvShape {
            p: Some(k / 2),
            g: m.channels,
            ..ConvShape::new(m.channels, m.channels, k, 1)
        };
        Ok(Box::new(Frelu {
            funnel: ConvBn::new(shape, m.vb.pp("conv"), m.vb.pp("bn"))?,
        }))
    }),
    ..ELEMENTWISE
};

/// `max(x, funnel(x))`, the funnel a depthwise k×k conv and BatchNorm (folded into one conv
/// with bias by `fuse`).
#[derive(Debug)]
struct Frelu {
    funnel: ConvBn,
}

impl ActModule for Frelu {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            if let Some(y) = self.funnel.forward_max_input(x)? {
                return Ok(y);
            }
        }
        let funnel = self
            .funnel
            .forward(std::slice::from_ref(x), train, None, None)?;
        match x.dtype() {
            DType::F32 => maximum::apply(x, &funnel),
            _ => x.maximum(&funnel),
        }
    }

    fn params(&self) -> Vec<Tensor> {
        self.funnel.params()
    }

    fn macs(&self, hw: (usize, usize)) -> f64 {
        let mut cost = Cost::default();
        self.funnel.cost(hw, &mut cost);
        cost.macs
    }

    fn fuse(&mut self) -> Result<()> {
        self.funnel.fuse()
    }

    fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let funnel = self.funnel.export(g, x)?;
        Ok(g.binary("Max", x, &funnel))
    }
}

/// ACON's learnable switches, one per channel: p1, p2 ~ N(0, 1).
fn switches(vb: &VarBuilder, channels: usize) -> Result<(Tensor, Tensor)> {
    let init = Init::Randn {
        mean: 0.0,
        stdev: 1.0,
    };
    let shape = (1, channels, 1, 1);
    Ok((
        vb.get_with_hints(shape, "p1", init)?,
        vb.get_with_hints(shape, "p2", init)?,
    ))
}

pub static ACON_C: ActDef = ActDef {
    name: "AconC",
    torch: false,
    aliases: &["acon"],
    formula: "(p1 - p2) x * sigmoid(beta (p1 - p2) x) + p2 x, learnable p1, p2, beta per channel",
    properties: Properties {
        monotonic: None,
        bounded_below: None,
        bounded_above: None,
        smooth: Some(true),
        zero_at_zero: Some(true),
    },
    check: no_check,
    learnable: true,
    pointwise: false,
    module: Some(|m| {
        let (p1, p2) = switches(&m.vb, m.channels)?;
        let beta =
            m.vb.get_with_hints((1, m.channels, 1, 1), "beta", Init::Const(1.0))?;
        Ok(Box::new(Acon {
            p1,
            p2,
            beta: AconBeta::Learned(beta),
        }))
    }),
    ..ELEMENTWISE
};

pub static META_ACON_C: ActDef = ActDef {
    name: "MetaAconC",
    torch: false,
    aliases: &["metaacon"],
    params: &[param("r", Int, I(16))],
    formula: "AconC with beta = sigmoid(fc2(fc1(mean_hw(x)))), hidden width max(r, C / r)",
    properties: Properties {
        monotonic: None,
        bounded_below: None,
        bounded_above: None,
        smooth: Some(true),
        zero_at_zero: Some(true),
    },
    check: |a| match a.i(0) {
        r if r >= 1 => Ok(()),
        r => Err(ArgError::new(
            "r",
            format!("{r}: the reduction ratio must be >= 1"),
        )),
    },
    learnable: true,
    pointwise: false,
    module: Some(|m| {
        let (r, channels) = (m.args.i(0) as usize, m.channels);
        let hidden = r.max(channels / r);
        let (p1, p2) = switches(&m.vb, channels)?;
        let (fc1, fc2) = (m.vb.pp("fc1"), m.vb.pp("fc2"));
        Ok(Box::new(Acon {
            p1,
            p2,
            beta: AconBeta::Meta {
                fc1_weight: fc1.get_with_hints(
                    (hidden, channels, 1, 1),
                    "weight",
                    torch_conv_init(channels),
                )?,
                fc1_bias: fc1.get_with_hints(hidden, "bias", torch_conv_init(channels))?,
                fc2_weight: fc2.get_with_hints(
                    (channels, hidden, 1, 1),
                    "weight",
                    torch_conv_init(hidden),
                )?,
                fc2_bias: fc2.get_with_hints(channels, "bias", torch_conv_init(hidden))?,
            },
        }))
    }),
    ..ELEMENTWISE
};

/// PyTorch's default Conv2d initialisation (kaiming_uniform with a=√5): U(±1/√fan_in).
fn torch_conv_init(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

#[derive(Debug)]
struct Acon {
    p1: Tensor,
    p2: Tensor,
    beta: AconBeta,
}

/// ACON-C learns beta directly; Meta-ACON-C computes it from the input with a small
/// 1×1-conv MLP (no BatchNorm: it breaks at batch size 1).
#[derive(Debug)]
enum AconBeta {
    Learned(Tensor),
    Meta {
        fc1_weight: Tensor,
        fc1_bias: Tensor,
        fc2_weight: Tensor,
        fc2_bias: Tensor,
    },
}

impl Acon {
    /// β: learned, or Meta-ACON's from the input `x`.
    fn beta_on(&self, x: &Tensor) -> Result<Tensor> {
        match &self.beta {
            AconBeta::Learned(b) => Ok(b.clone()),
            AconBeta::Meta {
                fc1_weight,
                fc1_bias,
                fc2_weight,
                fc2_bias,
            } => meta_acon_beta(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias),
        }
    }
}

impl ActModule for Acon {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let (p1, p2) = (&self.p1, &self.p2);
        let beta = self.beta_on(x)?;
        if x.dtype() == DType::F32 && x.rank() >= 2 {
            return acon::apply(x, p1, p2, &beta);
        }
        let dpx = x.broadcast_mul(&(p1 - p2)?)?;
        let sig = pointwise::apply(&(Arc::new(Sigmoid) as _), &dpx.broadcast_mul(&beta)?)?;
        (dpx * sig)? + x.broadcast_mul(p2)?
    }

    fn params(&self) -> Vec<Tensor> {
        let mut params = vec![self.p1.clone(), self.p2.clone()];
        match &self.beta {
            AconBeta::Learned(b) => params.push(b.clone()),
            AconBeta::Meta {
                fc1_weight,
                fc1_bias,
                fc2_weight,
                fc2_bias,
            } => params.extend([fc1_weight, fc1_bias, fc2_weight, fc2_bias].map(Tensor::clone)),
        }
        params
    }

    fn learned(&self, x: &Tensor) -> Result<Vec<LearnedSummary>> {
        let beta = self.beta_on(x)?;
        Ok(vec![
            probe::summarize("p1", &self.p1)?,
            probe::summarize("p2", &self.p2)?,
            probe::summarize("beta", &beta)?,
        ])
    }

    /// dpx·σ(β·dpx) + p2·x with dpx = (p1 − p2)·x; Meta-ACON's β from the pooled input
    /// through its two 1×1 convolutions.
    fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let beta = match &self.beta {
            AconBeta::Learned(b) => g.tensor(b)?,
            AconBeta::Meta {
                fc1_weight,
                fc1_bias,
                fc2_weight,
                fc2_bias,
            } => {
                let pointwise = Conv2dParams::POINTWISE;
                let pooled = g.unary("GlobalAveragePool", x);
                let hidden = g.conv(&pooled, fc1_weight, Some(fc1_bias), pointwise)?;
                let logits = g.conv(&hidden, fc2_weight, Some(fc2_bias), pointwise)?;
                g.unary("Sigmoid", &logits)
            }
        };
        let dp = g.tensor(&(&self.p1 - &self.p2)?)?;
        let dpx = g.binary("Mul", x, &dp);
        let scaled = g.binary("Mul", &dpx, &beta);
        let gate = g.unary("Sigmoid", &scaled);
        let gated = g.binary("Mul", &dpx, &gate);
        let p2 = g.tensor(&self.p2)?;
        let linear = g.binary("Mul", x, &p2);
        Ok(g.binary("Add", &gated, &linear))
    }

    fn macs(&self, _hw: (usize, usize)) -> f64 {
        match &self.beta {
            AconBeta::Meta { fc1_weight, .. } => 2.0 * fc1_weight.elem_count() as f64,
            AconBeta::Learned(_) => 0.0,
        }
    }
}

/// β = σ(fc2(fc1(mean over H, W of x))), as (N, C, 1, 1).
fn meta_acon_beta(
    x: &Tensor,
    w1: &Tensor,
    b1: &Tensor,
    w2: &Tensor,
    b2: &Tensor,
) -> Result<Tensor> {
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let hidden = w1.dim(0)?;
    let pooled = x
        .mean_keepdim(D::Minus1)?
        .mean_keepdim(D::Minus2)?
        .reshape((n, c))?;
    let h = pooled
        .matmul(&w1.reshape((hidden, c))?.t()?)?
        .broadcast_add(b1)?;
    let logits = h
        .matmul(&w2.reshape((c, hidden))?.t()?)?
        .broadcast_add(b2)?;
    pointwise::apply(&(Arc::new(Sigmoid) as _), &logits)?.reshape((n, c, 1, 1))
}
