//! Piecewise-linear activations: Identity, ReLU, ReLU6, Hardtanh, LeakyReLU, RReLU (random
//! slopes in training) and PReLU (learned slopes). Formulas and the gradient at each kink
//! follow PyTorch's CPU kernels.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor};
use candle_nn::Init;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::act::probe::{self, LearnedSummary};
use crate::act::registry::ActModule;
use crate::act::registry::Args;
use crate::act::registry::{
    param, props, ActDef, ArgError, ParamDefault::F, ParamDefault::I, ParamType::Float,
    ParamType::Int, ELEMENTWISE, INPLACE,
};
use crate::ops::elementwise::Elementwise;
use crate::ops::graph::{Graph, GraphError};
use crate::ops::scalar::{Identity, Real, ScalarFn};
use crate::ops::{pointwise, prelu};

pub static IDENTITY: ActDef = ActDef {
    name: "Identity",
    aliases: &["none", "linear"],
    formula: "x",
    properties: props(true, false, false, true, true),
    elementwise: Some(|_| Arc::new(Identity)),
    export: Some(|_, _, x| Ok(x.to_string())),
    ..ELEMENTWISE
};

pub static RELU: ActDef = ActDef {
    name: "ReLU",
    params: &[INPLACE],
    formula: "max(0, x)",
    properties: props(true, true, false, false, true),
    elementwise: Some(|_| Arc::new(Relu)),
    export: Some(|_, g, x| Ok(g.unary("Relu", x))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
pub struct Relu;
impl ScalarFn for Relu {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        // NaN passes through, as in torch (a NaN turned into 0 would hide a diverged layer).
        if x < R::zero() {
            R::zero()
        } else {
            x
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        // threshold_backward: zero at x <= 0.
        if x > R::zero() {
            R::one()
        } else {
            R::zero()
        }
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // A mask, not candle's relu: torch's gradient at 0 is 0.
        x.gt(0f64)?.where_cond(x, &x.zeros_like()?)
    }
}

pub static HARDTANH: ActDef = ActDef {
    name: "Hardtanh",
    params: &[
        param("min_val", Float, F(-1.0)),
        param("max_val", Float, F(1.0)),
        INPLACE,
    ],
    formula: "clamp(x, min_val, max_val)",
    properties: props(true, true, true, false, true),
    check: |a| {
        let (min_val, max_val) = (a.f(0), a.f(1));
        if max_val <= min_val {
            return Err(ArgError::new(
                "max_val",
                format!("max_val ({max_val}) must be greater than min_val ({min_val})"),
            ));
        }
        Ok(())
    },
    elementwise: Some(|a| {
        Arc::new(Hardtanh {
            min: a.f(0),
            max: a.f(1),
        })
    }),
    export: Some(|a, g, x| Ok(g.clip(x, a.f(0), a.f(1)))),
    ..ELEMENTWISE
};

pub static RELU6: ActDef = ActDef {
    name: "ReLU6",
    params: &[INPLACE],
    formula: "min(max(0, x), 6)",
    properties: props(true, true, true, false, true),
    // ReLU6 is Hardtanh(0, 6) in torch too.
    elementwise: Some(|_| Arc::new(Hardtanh { min: 0.0, max: 6.0 })),
    export: Some(|_, g, x| Ok(g.clip(x, 0.0, 6.0))),
    ..ELEMENTWISE
};

/// `clamp(x, min, max)`.
#[derive(Debug, Clone, Copy)]
pub struct Hardtanh {
    pub min: f64,
    pub max: f64,
}
impl ScalarFn for Hardtanh {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let (lo, hi) = (R::c(self.min), R::c(self.max));
        if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        // hardtanh_backward: zero at and beyond both bounds.
        if x <= R::c(self.min) || x >= R::c(self.max) {
            R::zero()
        } else {
            R::one()
        }
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // The bounds themselves take the flat (zero-gradient) side, as in torch.
        let inside = x.gt(self.min)?.mul(&x.lt(self.max)?)?;
        inside.where_cond(x, &x.clamp(self.min, self.max)?.detach())
    }
}

pub static LEAKY_RELU: ActDef = ActDef {
    name: "LeakyReLU",
    params: &[param("negative_slope", Float, F(0.01)), INPLACE],
    formula: "x if x > 0 else negative_slope * x",
    properties: props(true, false, false, false, true),
    elementwise: Some(|a| Arc::new(LeakyRelu { slope: a.f(0) })),
    export: Some(|a, g, x| Ok(g.unary_with("LeakyRelu", x, &[("alpha", a.f(0))]))),
    ..ELEMENTWISE
};

/// LeakyReLU; also RReLU in eval mode.
#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu {
    pub slope: f64,
}
impl ScalarFn for LeakyRelu {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        if x > R::zero() {
            x
        } else {
            x * R::c(self.slope)
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        if x > R::zero() {
            R::one()
        } else {
            R::c(self.slope)
        }
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.gt(0f64)?.where_cond(x, &(x * self.slope)?)
    }
}

pub static RRELU: ActDef = ActDef {
    name: "RReLU",
    params: &[
        param("lower", Float, F(0.125)),
        param("upper", Float, F(1.0 / 3.0)),
        INPLACE,
    ],
    formula:
        "x if x >= 0 else a*x; train: a ~ U(lower, upper) per element, eval: a = (lower+upper)/2",
    properties: props(true, false, false, false, true),
    check: |a| {
        let (lower, upper) = (a.f(0), a.f(1));
        if lower > upper {
            return Err(ArgError::new(
                "lower",
                format!("lower ({lower}) must not exceed upper ({upper})"),
            ));
        }
        Ok(())
    },
    elementwise: Some(rrelu_eval),
    module: Some(|m| {
        Ok(Box::new(Rrelu {
            lower: m.args.f(0),
            upper: m.args.f(1),
            rng: Mutex::new(m.rng),
            eval: rrelu_eval(m.args),
        }))
    }),
    export: Some(|a, g, x| Ok(rrelu_export(a.f(0), a.f(1), g, x))),
    ..ELEMENTWISE
};

/// RReLU in inference: LeakyRelu with the mean slope.
fn rrelu_export(lower: f64, upper: f64, g: &mut Graph, x: &str) -> String {
    g.unary_with("LeakyRelu", x, &[("alpha", (lower + upper) / 2.0)])
}

/// RReLU in eval mode: LeakyReLU with the mean slope.
fn rrelu_eval(a: &Args) -> Arc<dyn Elementwise> {
    Arc::new(LeakyRelu {
        slope: (a.f(0) + a.f(1)) / 2.0,
    })
}

/// Random slopes in training, from the layer's own stream; the mean slope in eval.
#[derive(Debug)]
struct Rrelu {
    lower: f64,
    upper: f64,
    rng: Mutex<ChaCha8Rng>,
    eval: Arc<dyn Elementwise>,
}

impl ActModule for Rrelu {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return pointwise::apply(&self.eval, x);
        }
        let xs = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("rrelu: rng lock poisoned".into()))?;
        // As torch's rrelu_with_noise: a random slope where x <= 0, 1 elsewhere.
        let noise: Vec<f64> = xs
            .iter()
            .map(|&v| {
                if v <= 0.0 {
                    rng.random_range(self.lower..=self.upper)
                } else {
                    1.0
                }
            })
            .collect();
        let noise = Tensor::from_vec(noise, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&noise)
    }

    fn fusable(&self, train: bool) -> Option<Arc<dyn Elementwise>> {
        (!train).then(|| self.eval.clone())
    }

    fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        Ok(rrelu_export(self.lower, self.upper, g, x))
    }
}

pub static PRELU: ActDef = ActDef {
    name: "PReLU",
    params: &[
        param("num_parameters", Int, I(1)),
        param("init", Float, F(0.25)),
    ],
    formula: "x if x > 0 else a * x, with learnable a (one, or one per channel)",
    properties: props(true, false, false, false, true),
    check: |a| {
        let n = a.i(0);
        if n == 0 || n < -1 {
            return Err(ArgError::new("num_parameters", format!("{n}: allowed: 1 (one slope), the layer's channel count, or -1 (one slope per channel of each layer)")));
        }
        Ok(())
    },
    learnable: true,
    module: Some(|m| {
        let channels = m.channels;
        let n = match m.args.i(0) {
            -1 => channels,
            n if n == 1 || n as usize == channels => n as usize,
            n => candle_core::bail!(
                "nn.PReLU(num_parameters={n}) in a layer with {channels} channels: use 1, {channels}, or -1 (one slope per channel of each layer)"
            ),
        };
        Ok(Box::new(Prelu {
            weight: m.vb.get_with_hints(n, "weight", Init::Const(m.args.f(1)))?,
        }))
    }),
    ..ELEMENTWISE
};

/// A learned slope for negative inputs, one per layer or per channel.
#[derive(Debug)]
struct Prelu {
    weight: Tensor,
}

impl ActModule for Prelu {
    fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        prelu::apply(x, &self.weight)
    }

    /// ONNX PRelu broadcasts its slope from the right: one per channel is (C, 1, 1).
    fn export(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let n = self.weight.elem_count();
        let slope = match n {
            1 => self.weight.clone(),
            _ => self.weight.reshape((n, 1, 1))?,
        };
        let slope = g.tensor(&slope)?;
        Ok(g.binary("PRelu", x, &slope))
    }

    fn params(&self) -> Vec<Tensor> {
        vec![self.weight.clone()]
    }

    fn learned(&self, _x: &Tensor) -> Result<Vec<LearnedSummary>> {
        Ok(vec![probe::summarize("slope", &self.weight)?])
    }
}
