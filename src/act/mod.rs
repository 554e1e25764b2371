//! The activation zoo: every `torch.nn` activation plus FReLU, ACON-C and Meta-ACON-C,
//! with PyTorch's forward and gradient. A Conv block builds its own [`Activation`] from
//! an [`ActSpec`] and its channel count, so learnable activations are per layer.

pub mod catalog;
pub mod eval;
pub mod pointwise;
pub mod spec;

use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, ModuleT, VarBuilder};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub use catalog::{ActKind, KindInfo, Properties, KINDS};
pub use spec::{ActArg, ActSpec, GeluApprox, SpecError};

use crate::ops::conv_bn_layer::{ConvBn, ConvShape, Cost};
use crate::ops::elementwise::Elementwise;
use crate::ops::{acon, maximum, pointwise as pointwise_op, prelu};
use crate::util::profile::{self, Stage};

/// An activation module, built for one layer.
#[derive(Debug)]
pub struct Activation {
    spec: ActSpec,
    inner: Inner,
}

#[derive(Debug, Clone, Copy)]
enum SoftmaxKind {
    Softmax,
    Softmin,
    LogSoftmax,
}

#[derive(Debug)]
enum Inner {
    Pointwise(Arc<dyn Elementwise>),
    /// Random slopes in training; the mean slope in eval.
    Rrelu {
        lower: f64,
        upper: f64,
        rng: Mutex<ChaCha8Rng>,
        eval: Arc<dyn Elementwise>,
    },
    Glu {
        dim: i64,
    },
    Softmax {
        dim: i64,
        kind: SoftmaxKind,
    },
    Prelu {
        weight: Tensor,
    },
    /// `max(x, funnel(x))`, the funnel a depthwise k×k conv and BatchNorm (folded into
    /// one conv with bias by [`Activation::fuse`]).
    Frelu {
        funnel: ConvBn,
    },
    Acon {
        p1: Tensor,
        p2: Tensor,
        beta: AconBeta,
    },
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

/// PyTorch's default Conv2d initialisation (kaiming_uniform with a=√5): U(±1/√fan_in).
fn torch_conv_init(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

impl Activation {
    /// Builds the activation for a layer whose activation input has `channels` channels
    /// (for GLU that is twice the output). Parameters are created or loaded through `vb`
    /// under the ultralytics names (`weight` for PReLU, `conv.weight`/`bn.*` for FReLU,
    /// `p1`/`p2`/`beta` and `fc1.*`/`fc2.*` for ACON). `rng` seeds RReLU's noise.
    pub fn new(spec: &ActSpec, channels: usize, vb: VarBuilder, rng: ChaCha8Rng) -> Result<Self> {
        use ActSpec as S;
        let per_channel = (1, channels, 1, 1);
        let inner = match *spec {
            S::Rrelu { lower, upper } => Inner::Rrelu {
                lower,
                upper,
                rng: Mutex::new(rng),
                eval: pointwise::elementwise(spec)
                    .ok_or_else(|| candle_core::Error::Msg("rrelu: no eval form".into()))?,
            },
            S::Glu { dim } => {
                if channels % 2 != 0 {
                    candle_core::bail!(
                        "GLU needs an even number of input channels, got {channels}"
                    );
                }
                Inner::Glu { dim }
            }
            S::Softmax { dim } => Inner::Softmax {
                dim,
                kind: SoftmaxKind::Softmax,
            },
            S::Softmin { dim } => Inner::Softmax {
                dim,
                kind: SoftmaxKind::Softmin,
            },
            S::LogSoftmax { dim } => Inner::Softmax {
                dim,
                kind: SoftmaxKind::LogSoftmax,
            },
            S::Softmax2d => Inner::Softmax {
                dim: -3,
                kind: SoftmaxKind::Softmax,
            },
            S::Prelu {
                num_parameters,
                init,
            } => {
                let n = match num_parameters {
                    -1 => channels,
                    n if n == 1 || n as usize == channels => n as usize,
                    n => candle_core::bail!(
                        "nn.PReLU(num_parameters={n}) in a layer with {channels} channels: use 1, {channels}, or -1 (one slope per channel of each layer)"
                    ),
                };
                Inner::Prelu {
                    weight: vb.get_with_hints(n, "weight", Init::Const(init))?,
                }
            }
            S::Frelu { k } => {
                let k = k as usize;
                let shape = ConvShape {
                    p: Some(k / 2),
                    g: channels,
                    ..ConvShape::new(channels, channels, k, 1)
                };
                Inner::Frelu {
                    funnel: ConvBn::new(shape, vb.pp("conv"), vb.pp("bn"))?,
                }
            }
            S::AconC => Inner::Acon {
                p1: vb.get_with_hints(
                    per_channel,
                    "p1",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )?,
                p2: vb.get_with_hints(
                    per_channel,
                    "p2",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )?,
                beta: AconBeta::Learned(vb.get_with_hints(
                    per_channel,
                    "beta",
                    Init::Const(1.0),
                )?),
            },
            S::MetaAconC { r } => {
                let r = r as usize;
                let hidden = r.max(channels / r);
                let (fc1, fc2) = (vb.pp("fc1"), vb.pp("fc2"));
                Inner::Acon {
                    p1: vb.get_with_hints(
                        per_channel,
                        "p1",
                        Init::Randn {
                            mean: 0.0,
                            stdev: 1.0,
                        },
                    )?,
                    p2: vb.get_with_hints(
                        per_channel,
                        "p2",
                        Init::Randn {
                            mean: 0.0,
                            stdev: 1.0,
                        },
                    )?,
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
                }
            }
            _ => Inner::Pointwise(pointwise::elementwise(spec).ok_or_else(|| {
                candle_core::Error::Msg(format!("{spec}: not a pointwise activation"))
            })?),
        };
        Ok(Activation {
            spec: spec.clone(),
            inner,
        })
    }

    pub fn spec(&self) -> &ActSpec {
        &self.spec
    }

    /// The learnable parameters (exempt from weight decay); BatchNorm running statistics
    /// are buffers and not included.
    pub fn params(&self) -> Vec<Tensor> {
        match &self.inner {
            Inner::Prelu { weight } => vec![weight.clone()],
            Inner::Frelu { funnel } => funnel.params(),
            Inner::Acon { p1, p2, beta } => {
                let mut params = vec![p1.clone(), p2.clone()];
                match beta {
                    AconBeta::Learned(b) => params.push(b.clone()),
                    AconBeta::Meta {
                        fc1_weight,
                        fc1_bias,
                        fc2_weight,
                        fc2_bias,
                    } => params
                        .extend([fc1_weight, fc1_bias, fc2_weight, fc2_bias].map(Tensor::clone)),
                }
                params
            }
            _ => vec![],
        }
    }

    /// Multiply-accumulates of the activation's own layers (FReLU's depthwise conv and
    /// BatchNorm, Meta-ACON's 1×1 convs) on planes of `hw`, counted as thop counts them.
    pub fn macs(&self, hw: (usize, usize)) -> f64 {
        match &self.inner {
            Inner::Frelu { funnel } => {
                let mut cost = Cost::default();
                funnel.cost(hw, &mut cost);
                cost.macs
            }
            Inner::Acon {
                beta: AconBeta::Meta { fc1_weight, .. },
                ..
            } => 2.0 * fc1_weight.elem_count() as f64,
            _ => 0.0,
        }
    }

    /// The pointwise function this activation computes in this mode, when it has no
    /// parameters and no randomness: kernels such as BatchNorm can then apply it fused.
    /// Folds the BatchNorm of an activation that has one (FReLU's funnel) into its
    /// convolution, for inference.
    pub fn fuse(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Frelu { funnel } => funnel.fuse(),
            _ => Ok(()),
        }
    }

    /// `body` (a Conv's convolution and BatchNorm), then this activation: inside the
    /// BatchNorm's kernel when the activation is elementwise.
    pub fn forward_after(&self, body: &ConvBn, x: &Tensor, train: bool) -> Result<Tensor> {
        match self.fusable(train) {
            Some(f) => body.forward(x, train, Some(&f)),
            None => self.forward(&body.forward(x, train, None)?, train),
        }
    }

    pub fn fusable(&self, train: bool) -> Option<Arc<dyn Elementwise>> {
        match &self.inner {
            Inner::Pointwise(p) => Some(p.clone()),
            Inner::Rrelu { eval, .. } if !train => Some(eval.clone()),
            _ => None,
        }
    }

    /// Applies the activation; `train` selects RReLU's random slopes and FReLU's batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let _t = profile::span(Stage::ActivationForward);
        match &self.inner {
            Inner::Pointwise(p) => pointwise_op::apply(p, x),
            Inner::Rrelu { eval, .. } if !train => pointwise_op::apply(eval, x),
            Inner::Rrelu {
                lower, upper, rng, ..
            } => {
                let xs = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let mut rng = rng
                    .lock()
                    .map_err(|_| candle_core::Error::Msg("rrelu: rng lock poisoned".into()))?;
                // As torch's rrelu_with_noise: a random slope where x <= 0, 1 elsewhere.
                let noise: Vec<f64> = xs
                    .iter()
                    .map(|&v| {
                        if v <= 0.0 {
                            rng.random_range(*lower..=*upper)
                        } else {
                            1.0
                        }
                    })
                    .collect();
                let noise = Tensor::from_vec(noise, x.shape(), x.device())?.to_dtype(x.dtype())?;
                x.mul(&noise)
            }
            Inner::Glu { dim } => {
                let dim = resolve_dim(*dim, x)?;
                let half = x.dim(dim)? / 2;
                let gate = pointwise_op::apply(&sigmoid(), &x.narrow(dim, half, half)?)?;
                x.narrow(dim, 0, half)?.mul(&gate)
            }
            Inner::Softmax { dim, kind } => {
                let dim = resolve_dim(*dim, x)?;
                match kind {
                    SoftmaxKind::Softmax => candle_nn::ops::softmax(x, dim),
                    SoftmaxKind::Softmin => candle_nn::ops::softmax(&x.neg()?, dim),
                    SoftmaxKind::LogSoftmax => candle_nn::ops::log_softmax(x, dim),
                }
            }
            Inner::Prelu { weight } => prelu::apply(x, weight),
            Inner::Frelu { funnel } => {
                let funnel = funnel.forward(x, train, None)?;
                match x.dtype() {
                    DType::F32 => maximum::apply(x, &funnel),
                    _ => x.maximum(&funnel),
                }
            }
            Inner::Acon { p1, p2, beta } => {
                let beta = match beta {
                    AconBeta::Learned(b) => b.clone(),
                    AconBeta::Meta {
                        fc1_weight,
                        fc1_bias,
                        fc2_weight,
                        fc2_bias,
                    } => meta_acon_beta(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias)?,
                };
                if x.dtype() == DType::F32 && x.rank() >= 2 {
                    return acon::apply(x, p1, p2, &beta);
                }
                let dpx = x.broadcast_mul(&(p1 - p2)?)?;
                let sig = pointwise_op::apply(&sigmoid(), &dpx.broadcast_mul(&beta)?)?;
                (dpx * sig)? + x.broadcast_mul(p2)?
            }
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
    pointwise_op::apply(&sigmoid(), &logits)?.reshape((n, c, 1, 1))
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

impl ModuleT for Activation {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward(x, train)
    }
}

fn sigmoid() -> Arc<dyn Elementwise> {
    Arc::new(pointwise::Sigmoid)
}
