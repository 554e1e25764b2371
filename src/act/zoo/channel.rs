//! Channel-wise activations, over the channels of NCHW: GLU (which halves them), and the
//! softmax family (Softmax, Softmin, Softmax2d, LogSoftmax).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::act::registry::ActModule;
use crate::act::registry::Args;
use crate::act::registry::{
    channelwise, param, ActDef, ArgError, ParamDefault::I, ParamType::Dim, ParamType::Int,
    Properties, ELEMENTWISE,
};
use crate::ops::graph::{Attr, Graph, GraphError};
use crate::ops::pointwise;

use super::sigmoid::Sigmoid;

pub static GLU: ActDef = ActDef {
    name: "GLU",
    params: &[param("dim", Int, I(1))],
    formula: "a * sigmoid(b), where a, b = the two halves of the input along dim (channels)",
    properties: Properties {
        monotonic: None,
        bounded_below: Some(false),
        bounded_above: Some(false),
        smooth: Some(true),
        zero_at_zero: Some(true),
    },
    check: |a| match a.i(0) {
        1 | -3 => Ok(()),
        dim => Err(ArgError::new(
            "dim",
            format!("{dim}: in a Conv block GLU gates the channel dimension; allowed: 1 or -3"),
        )),
    },
    channel_factor: 2,
    pointwise: false,
    module: Some(|m| {
        if m.channels % 2 != 0 {
            candle_core::bail!(
                "GLU needs an even number of input channels, got {}",
                m.channels
            );
        }
        Ok(Box::new(Glu {
            dim: m.args.i(0),
            channels: m.channels,
        }))
    }),
    ..ELEMENTWISE
};

/// The first half of the channels gated by the sigmoid of the second.
#[derive(Debug)]
struct Glu {
    dim: i64,
    /// Of its input, along `dim` (the channels, which the declaration's check ensures).
    channels: usize,
}

impl ActModule for Glu {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let dim = resolve_dim(self.dim, x)?;
        let half = x.dim(dim)? / 2;
        let gate = pointwise::apply(&(Arc::new(Sigmoid) as _), &x.narrow(dim, half, half)?)?;
        x.narrow(dim, 0, half)?.mul(&gate)
    }

    fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let half = (self.channels / 2) as i64;
        let sizes = g.ints(&[half, half]);
        let halves = g.op_outputs(
            "Split",
            &[x, &sizes],
            vec![("axis", Attr::Int(self.dim))],
            2,
        );
        let gate = g.unary("Sigmoid", &halves[1]);
        Ok(g.binary("Mul", &halves[0], &gate))
    }
}

/// `dim` of a softmax is a dimension of an NCHW tensor (`None` meant 1).
fn nchw_dim(a: &Args) -> std::result::Result<(), ArgError> {
    match a.i(0) {
        -4..=3 => Ok(()),
        dim => Err(ArgError::new(
            "dim",
            format!("{dim} is not a dimension of an NCHW tensor; allowed: -4..=3 (1 is the channel dimension)"),
        )),
    }
}

pub static SOFTMIN: ActDef = ActDef {
    name: "Softmin",
    params: &[param("dim", Dim, I(1))],
    formula: "exp(-x_i) / sum_j exp(-x_j) over dim (channels)",
    properties: channelwise(true, true),
    check: nchw_dim,
    pointwise: false,
    module: Some(|m| softmax(m.args.i(0), SoftmaxKind::Softmin)),
    ..ELEMENTWISE
};

pub static SOFTMAX: ActDef = ActDef {
    name: "Softmax",
    params: &[param("dim", Dim, I(1))],
    formula: "exp(x_i) / sum_j exp(x_j) over dim (channels)",
    properties: channelwise(true, true),
    check: nchw_dim,
    pointwise: false,
    module: Some(|m| softmax(m.args.i(0), SoftmaxKind::Softmax)),
    ..ELEMENTWISE
};

pub static SOFTMAX2D: ActDef = ActDef {
    name: "Softmax2d",
    formula: "softmax over the channels of each spatial location",
    properties: channelwise(true, true),
    pointwise: false,
    module: Some(|_| softmax(-3, SoftmaxKind::Softmax)),
    ..ELEMENTWISE
};

pub static LOG_SOFTMAX: ActDef = ActDef {
    name: "LogSoftmax",
    params: &[param("dim", Dim, I(1))],
    formula: "x_i - log(sum_j exp(x_j)) over dim (channels)",
    properties: channelwise(false, true),
    check: nchw_dim,
    pointwise: false,
    module: Some(|m| softmax(m.args.i(0), SoftmaxKind::LogSoftmax)),
    ..ELEMENTWISE
};

/// The module of a softmax-family activation over `dim`.
fn softmax(dim: i64, kind: SoftmaxKind) -> Result<Box<dyn ActModule>> {
    Ok(Box::new(Softmax { dim, kind }))
}

#[derive(Debug, Clone, Copy)]
enum SoftmaxKind {
    Softmax,
    Softmin,
    LogSoftmax,
}

#[derive(Debug)]
struct Softmax {
    dim: i64,
    kind: SoftmaxKind,
}

impl ActModule for Softmax {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let dim = resolve_dim(self.dim, x)?;
        match self.kind {
            SoftmaxKind::Softmax => candle_nn::ops::softmax(x, dim),
            SoftmaxKind::Softmin => candle_nn::ops::softmax(&x.neg()?, dim),
            SoftmaxKind::LogSoftmax => candle_nn::ops::log_softmax(x, dim),
        }
    }

    fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let axis = vec![("axis", Attr::Int(self.dim))];
        Ok(match self.kind {
            SoftmaxKind::Softmax => g.op("Softmax", &[x], axis),
            SoftmaxKind::Softmin => {
                let negated = g.unary("Neg", x);
                g.op("Softmax", &[&negated], axis)
            }
            SoftmaxKind::LogSoftmax => g.op("LogSoftmax", &[x], axis),
        })
    }
}

/// A possibly negative dimension index, resolved against the tensor's rank.
fn resolve_dim(dim: i64, x: &Tensor) -> Result<usize> {
    let rank = x.rank() as i64;
    let resolved = if dim < 0 { dim + rank } else { dim };
    if resolved < 0 || resolved >= rank {
        candle_core::bail!("dim {dim} is out of range for a tensor of rank {rank}");
    }
    Ok(resolved as usize)
}
