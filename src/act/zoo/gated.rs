//! Self-gated activations, x times a gate of x: SiLU, Swish-β, Hardswish, Mish and GELU
//! (exact, or its tanh approximation).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::act::registry::{
    param, props, ActDef, ArgError, ParamDefault::F, ParamDefault::S, ParamType::Choice,
    ParamType::Float, ELEMENTWISE, INPLACE,
};
use crate::ops::graph::{Attr, Graph};
use crate::ops::scalar::{sigmoid, Real, ScalarFn};

pub static SILU: ActDef = ActDef {
    name: "SiLU",
    aliases: &["swish"],
    params: &[INPLACE],
    formula: "x * sigmoid(x)",
    properties: props(false, true, false, true, true),
    elementwise: Some(|_| Arc::new(Silu)),
    export: Some(|_, g, x| Ok(g.swish(x, None))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Silu;
impl ScalarFn for Silu {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x / (R::one() + (-x).fast_exp())
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let s = sigmoid(x);
        s * (R::one() + x * (R::one() - s))
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.silu()
    }
    #[cfg(target_arch = "x86_64")]
    fn avx512_kernel(&self) -> Option<crate::ops::act_avx512::Kernel> {
        Some(crate::ops::act_avx512::Kernel::Silu)
    }
}

/// Swish with a fixed β (Ramachandran et al., 2017), which torch lacks: β = 1 is SiLU,
/// large β approaches ReLU.
pub static SWISH_BETA: ActDef = ActDef {
    name: "SwishBeta",
    torch: false,
    params: &[param("beta", Float, F(1.0))],
    formula: "x * sigmoid(beta * x)",
    properties: props(false, true, false, true, true),
    check: |a| match a.f(0) {
        beta if beta > 0.0 => Ok(()),
        beta => Err(ArgError::new("beta", format!("{beta}: must be > 0"))),
    },
    elementwise: Some(|a| Arc::new(SwishBeta { beta: a.f(0) })),
    export: Some(|a, g, x| Ok(g.swish(x, Some(a.f(0))))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct SwishBeta {
    beta: f64,
}
impl ScalarFn for SwishBeta {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x * sigmoid(R::c(self.beta) * x)
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let bx = R::c(self.beta) * x;
        let s = sigmoid(bx);
        s * (R::one() + bx * (R::one() - s))
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.mul(&candle_nn::ops::sigmoid(&(x * self.beta)?)?)
    }
}

pub static HARDSWISH: ActDef = ActDef {
    name: "Hardswish",
    params: &[INPLACE],
    formula: "x * min(max(x + 3, 0), 6) / 6",
    properties: props(false, true, false, false, true),
    elementwise: Some(|_| Arc::new(Hardswish)),
    export: Some(|_, g, x| Ok(g.unary("HardSwish", x))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Hardswish;
impl ScalarFn for Hardswish {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let six = R::c(6.0);
        x * (x + R::c(3.0)).max(R::zero()).min(six) / six
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let three = R::c(3.0);
        // torch 2.x takes the outer branch at both kinks: 0 at x = -3, 1 at x = 3.
        if x <= -three {
            R::zero()
        } else if x < three {
            x / three + R::c(0.5)
        } else {
            R::one()
        }
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // Branches by mask, so that ±3 take torch's outer gradients (0 and 1).
        let inner = x.gt(-3f64)?.mul(&x.lt(3f64)?)?;
        let outer = x.ge(3f64)?.where_cond(x, &x.zeros_like()?)?;
        inner.where_cond(&(x.mul(&(x + 3.0)?)? / 6.0)?, &outer)
    }
}

pub static MISH: ActDef = ActDef {
    name: "Mish",
    params: &[INPLACE],
    formula: "x * tanh(softplus(x))",
    properties: props(false, true, false, true, true),
    elementwise: Some(|_| Arc::new(Mish)),
    export: Some(|_, g, x| {
        if g.opset() >= 18 {
            return Ok(g.unary("Mish", x));
        }
        let softplus = g.unary("Softplus", x);
        let tanh = g.unary("Tanh", &softplus);
        Ok(g.binary("Mul", x, &tanh))
    }),
    ..ELEMENTWISE
};

/// `x tanh(softplus(x))`, with `tanh(ln(1 + e)) = e (e + 2) / (e (e + 2) + 2)` for
/// `e = exp(x)`: torch's function with one exp instead of exp, log1p and tanh.
#[derive(Debug, Clone, Copy)]
struct Mish;
impl Mish {
    /// `(tanh(softplus(x)), exp(x))`. Beyond x = 20 the tanh rounds to 1 even in f64, so
    /// clamping there keeps `e (e + 2)` finite.
    #[inline(always)]
    fn tanh_softplus<R: Real>(x: R) -> (R, R) {
        let e = x.min(R::c(20.0)).fast_exp();
        let n = e * (e + R::c(2.0));
        (n / (n + R::c(2.0)), e)
    }
}
impl ScalarFn for Mish {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x * Mish::tanh_softplus(x).0
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let (t, e) = Mish::tanh_softplus(x);
        let sigmoid = e / (R::one() + e);
        t + x * sigmoid * (R::one() - t * t)
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // tanh(softplus(x)) as the kernel writes it: n / (n + 2), n = e·(e + 2), e = exp(x).
        let e = x
            .gt(20f64)?
            .where_cond(&x.ones_like()?.affine(0.0, 20.0)?, x)?
            .exp()?;
        let n = e.mul(&(&e + 2.0)?)?;
        x.mul(&n.div(&(&n + 2.0)?)?)
    }
}

pub static GELU: ActDef = ActDef {
    name: "GELU",
    params: &[param("approximate", Choice(&["none", "tanh"]), S("none"))],
    formula: "x * Phi(x); tanh: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))",
    properties: props(false, true, false, true, true),
    elementwise: Some(|a| match a.s(0) {
        "tanh" => Arc::new(GeluTanh),
        _ => Arc::new(Gelu),
    }),
    export: Some(|a, g, x| Ok(gelu_export(a.s(0) == "tanh", g, x))),
    ..ELEMENTWISE
};

/// GELU: the opset's `Gelu` from 20; before, x·Φ(x) through Erf, or the tanh formula.
fn gelu_export(tanh: bool, g: &mut Graph, x: &str) -> String {
    if g.opset() >= 20 {
        let approximate = if tanh { "tanh" } else { "none" };
        return g.op("Gelu", &[x], vec![("approximate", Attr::Str(approximate))]);
    }
    let inner = if tanh {
        // sqrt(2/pi) (x + 0.044715 x^3)
        let x2 = g.binary("Mul", x, x);
        let x3 = g.binary("Mul", &x2, x);
        let c = g.scalar(0.044715);
        let cx3 = g.binary("Mul", &x3, &c);
        let sum = g.binary("Add", x, &cx3);
        let k = g.scalar((2.0 / std::f64::consts::PI).sqrt());
        let arg = g.binary("Mul", &sum, &k);
        g.unary("Tanh", &arg)
    } else {
        let k = g.scalar(std::f64::consts::FRAC_1_SQRT_2);
        let arg = g.binary("Mul", x, &k);
        g.unary("Erf", &arg)
    };
    let one = g.scalar(1.0);
    let sum = g.binary("Add", &inner, &one);
    let half = g.scalar(0.5);
    let half_x = g.binary("Mul", x, &half);
    g.binary("Mul", &half_x, &sum)
}

#[derive(Debug, Clone, Copy)]
struct Gelu;
impl ScalarFn for Gelu {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x * R::c(0.5) * (R::one() + (x * R::FRAC_1_SQRT_2()).erf())
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let cdf = R::c(0.5) * (R::one() + (x * R::FRAC_1_SQRT_2()).erf());
        let pdf = (R::c(-0.5) * x * x).fast_exp()
            * R::c(std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2 * 0.5);
        cdf + x * pdf
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.gelu_erf()
    }
    #[cfg(target_arch = "x86_64")]
    fn avx512_kernel(&self) -> Option<crate::ops::act_avx512::Kernel> {
        Some(crate::ops::act_avx512::Kernel::Gelu)
    }
}

#[derive(Debug, Clone, Copy)]
struct GeluTanh;
const GELU_BETA: f64 = std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5;
const GELU_KAPPA: f64 = 0.044715;
impl ScalarFn for GeluTanh {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let inner = R::c(GELU_BETA) * (x + R::c(GELU_KAPPA) * x * x * x);
        R::c(0.5) * x * (R::one() + inner.fast_tanh())
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let x_sq = x * x;
        let inner = R::c(GELU_BETA) * (x + R::c(GELU_KAPPA) * x_sq * x);
        let t = inner.fast_tanh();
        let left = R::c(0.5) * x;
        let right = R::one() + t;
        let left_derivative = R::c(0.5) * right;
        let inner_derivative = R::c(GELU_BETA) * (R::one() + R::c(3.0 * GELU_KAPPA) * x_sq);
        let right_derivative = left * (R::one() - t * t) * inner_derivative;
        left_derivative + right_derivative
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.gelu()
    }
}
