//! Conv2d (no bias) + BatchNorm2d: the body of every Conv block and of FReLU's funnel,
//! with its shapes and the cost count of ultralytics' summary. In training the two run as
//! one op with the activation fused in; for inference the BatchNorm folds into the
//! convolution's bias.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::concat;
use super::conv2d::{conv2d, conv2d_bias_act, conv2d_bias_max_input, plus_residual, Conv2dParams};
use super::elementwise::Elementwise;
use super::graph::{Graph, GraphError};
use super::norm::{BatchNorm2d, BnConfig};

/// Input size and cost bookkeeping, as thop counts it for ultralytics' summary:
/// multiply-accumulates of convolutions, 4 per element of a BatchNorm, 1 per upsampled element.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub macs: f64,
}

/// Output spatial size of a convolution or pooling window.
/// 0 when the window is larger than the padded input (PyTorch would refuse to run it).
pub fn conv_out(size: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    match (size + 2 * p).checked_sub(d * (k - 1) + 1) {
        Some(span) => span / s + 1,
        None => 0,
    }
}

/// ultralytics `autopad`: 'same' padding unless given.
pub fn autopad(k: usize, p: Option<usize>, d: usize) -> usize {
    let dilated_kernel = d * (k - 1) + 1;
    p.unwrap_or(dilated_kernel / 2)
}

/// Conv2d (no bias) + BatchNorm2d; after [`ConvBn::fuse`], Conv2d with bias. The part of a
/// Conv before its activation, and each branch of yolov7's RepConv.
#[derive(Debug)]
pub struct ConvBn {
    weight: Tensor,
    norm: Normalization,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
}

/// What follows a [`ConvBn`]'s convolution.
#[derive(Debug)]
enum Normalization {
    BatchNorm(BatchNorm2d),
    /// Once fused: the BatchNorm folded into the convolution, which leaves a bias.
    Bias(Tensor),
}

/// A Conv's shape, as in ultralytics' `Conv(c1, c2, k, s, p, g, d, act)`.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub s: usize,
    pub p: Option<usize>,
    pub g: usize,
    pub d: usize,
}

impl ConvShape {
    pub fn new(c1: usize, c2: usize, k: usize, s: usize) -> Self {
        ConvShape {
            c1,
            c2,
            k,
            s,
            p: None,
            g: 1,
            d: 1,
        }
    }
}

impl ConvBn {
    /// The convolution's weight under `conv_vb` (`weight`), the BatchNorm's under `bn_vb`.
    pub fn new(shape: ConvShape, conv_vb: VarBuilder, bn_vb: VarBuilder) -> Result<ConvBn> {
        let ConvShape {
            c1,
            c2,
            k,
            s,
            p,
            g,
            d,
        } = shape;
        if c1 % g != 0 || c2 % g != 0 {
            candle_core::bail!("Conv({c1}, {c2}): groups {g} must divide both channel counts");
        }
        let fan_in = c1 / g * k * k;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = conv_vb.get_with_hints(
            (c2, c1 / g, k, k),
            "weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let bn = BatchNorm2d::new(c2, BnConfig::YOLO, bn_vb)?;
        Ok(ConvBn {
            weight,
            norm: Normalization::BatchNorm(bn),
            stride: s,
            padding: autopad(k, p, d),
            dilation: d,
            groups: g,
        })
    }

    /// The convolution of `xs` (the input, as the parts a concatenation along the channels
    /// would join; often one), then the BatchNorm (or, once fused, the bias), then `act` if
    /// given: inside the BatchNorm's kernel when there is one; then plus `residual` if given:
    /// inside the convolution's kernel once fused.
    pub fn forward(
        &self,
        xs: &[Tensor],
        train: bool,
        act: Option<&Arc<dyn Elementwise>>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let params = self.conv_params();
        let y = match &self.norm {
            Normalization::BatchNorm(bn) if train => {
                bn.forward_conv_act(&concat::channels(xs)?, &self.weight, params, act.cloned())?
            }
            Normalization::BatchNorm(bn) => bn.forward_act(
                &conv2d(&concat::channels(xs)?, &self.weight, params)?,
                train,
                act.cloned(),
            )?,
            Normalization::Bias(bias) => {
                return conv2d_bias_act(xs, &self.weight, bias, params, act, residual)
            }
        };
        plus_residual(y, residual)
    }

    /// FReLU's `max(x, self(x))` in one pass, once fused into a conv with bias (inference);
    /// `None` where the composition must run (see [`conv2d_bias_max_input`]).
    pub fn forward_max_input(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match &self.norm {
            Normalization::Bias(bias) => {
                conv2d_bias_max_input(x, &self.weight, bias, self.conv_params())
            }
            Normalization::BatchNorm(_) => Ok(None),
        }
    }

    pub fn conv_params(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    /// The convolution and its BatchNorm (eval-mode statistics) as one convolution with bias.
    pub fn folded(&self) -> Result<(Tensor, Tensor)> {
        match &self.norm {
            Normalization::BatchNorm(bn) => bn.fold(&self.weight),
            Normalization::Bias(bias) => Ok((self.weight.detach(), bias.detach())),
        }
    }

    /// Replaces the convolution and its BatchNorm by one convolution with bias, of the same
    /// kernel size, stride, padding and groups.
    pub fn set_folded(&mut self, weight: Tensor, bias: Tensor) {
        self.weight = weight;
        self.norm = Normalization::Bias(bias);
    }

    /// Folds the BatchNorm into the convolution for inference.
    pub fn fuse(&mut self) -> Result<()> {
        if let Normalization::BatchNorm(_) = self.norm {
            let (weight, bias) = self.folded()?;
            self.set_folded(weight, bias);
        }
        Ok(())
    }

    /// Adds the convolution, its BatchNorm folded in, to an ONNX graph.
    pub fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let (weight, bias) = self.folded()?;
        g.conv(x, &weight, Some(&bias), self.conv_params())
    }

    pub fn params(&self) -> Vec<Tensor> {
        let mut params = vec![self.weight.clone()];
        match &self.norm {
            Normalization::BatchNorm(bn) => params.extend(bn.params()),
            Normalization::Bias(bias) => params.push(bias.clone()),
        }
        params
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims().first().copied().unwrap_or(0)
    }

    /// Output size and thop's count for an input of `hw`.
    pub fn cost(&self, hw: (usize, usize), cost: &mut Cost) -> (usize, usize) {
        let (co, ci_g, k, _) = self.weight.dims4().unwrap_or((0, 0, 0, 0));
        let out = (
            conv_out(hw.0, k, self.stride, self.padding, self.dilation),
            conv_out(hw.1, k, self.stride, self.padding, self.dilation),
        );
        let plane = (out.0 * out.1) as f64;
        cost.macs += plane * co as f64 * ci_g as f64 * (k * k) as f64;
        if let Normalization::BatchNorm(_) = self.norm {
            cost.macs += 4.0 * plane * co as f64;
        }
        out
    }
}
