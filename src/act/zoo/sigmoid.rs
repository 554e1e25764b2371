//! S-shaped activations: Sigmoid, Hardsigmoid, LogSigmoid, Tanh and Softsign.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::act::registry::{props, ActDef, ELEMENTWISE, INPLACE};
use crate::ops::scalar::{sigmoid, Real, ScalarFn};

pub static SIGMOID: ActDef = ActDef {
    name: "Sigmoid",
    formula: "1 / (1 + exp(-x))",
    properties: props(true, true, true, true, false),
    elementwise: Some(|_| Arc::new(Sigmoid)),
    export: Some(|_, g, x| Ok(g.unary("Sigmoid", x))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
pub struct Sigmoid;
impl ScalarFn for Sigmoid {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        sigmoid(x)
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let y = sigmoid(x);
        (R::one() - y) * y
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(x)
    }
    #[cfg(target_arch = "x86_64")]
    fn avx512_kernel(&self) -> Option<crate::ops::act_avx512::Kernel> {
        Some(crate::ops::act_avx512::Kernel::Sigmoid)
    }
}

pub static HARDSIGMOID: ActDef = ActDef {
    name: "Hardsigmoid",
    params: &[INPLACE],
    formula: "min(max(x + 3, 0), 6) / 6",
    properties: props(true, true, true, false, false),
    elementwise: Some(|_| Arc::new(Hardsigmoid)),
    export: Some(|_, g, x| {
        Ok(g.unary_with("HardSigmoid", x, &[("alpha", 1.0 / 6.0), ("beta", 0.5)]))
    }),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Hardsigmoid;
impl ScalarFn for Hardsigmoid {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let six = R::c(6.0);
        (x + R::c(3.0)).max(R::zero()).min(six) / six
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        if x > R::c(-3.0) && x < R::c(3.0) {
            R::one() / R::c(6.0)
        } else {
            R::zero()
        }
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        let inner = x.gt(-3f64)?.mul(&x.lt(3f64)?)?;
        let y = ((x + 3.0)? / 6.0)?;
        inner.where_cond(&y, &y.clamp(0f64, 1f64)?.detach())
    }
}

pub static LOG_SIGMOID: ActDef = ActDef {
    name: "LogSigmoid",
    formula: "log(1 / (1 + exp(-x)))",
    properties: props(true, false, true, true, false),
    elementwise: Some(|_| Arc::new(LogSigmoid)),
    export: Some(|_, g, x| {
        // torch's form: min(x, 0) - log1p(exp(-|x|)), which no exp overflows.
        let zero = g.scalar(0.0);
        let lower = g.binary("Min", x, &zero);
        let abs = g.unary("Abs", x);
        let neg = g.unary("Neg", &abs);
        let exp = g.unary("Exp", &neg);
        let one = g.scalar(1.0);
        let sum = g.binary("Add", &exp, &one);
        let log = g.unary("Log", &sum);
        Ok(g.binary("Sub", &lower, &log))
    }),
    ..ELEMENTWISE
};

/// `min(0, x) - log1p(exp(-|x|))`: never overflows.
#[derive(Debug, Clone, Copy)]
pub struct LogSigmoid;
impl ScalarFn for LogSigmoid {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x.min(R::zero()) - (-x.abs()).fast_exp().fast_ln_1p()
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let z = (-x.abs()).fast_exp();
        let (max_deriv, sign) = if x < R::zero() {
            (R::one(), R::one())
        } else {
            (R::zero(), -R::one())
        };
        max_deriv - sign * (z / (R::one() + z))
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // min(x, 0) − log(1 + exp(−|x|)), with |x| and min as a branch on x < 0 so that
        // x = 0 takes torch's gradient (½).
        let negative = x.lt(0f64)?;
        let abs = negative.where_cond(&x.neg()?, x)?;
        let min = negative.where_cond(x, &x.zeros_like()?)?;
        min - (abs.neg()?.exp()? + 1.0)?.log()?
    }
}

pub static TANH: ActDef = ActDef {
    name: "Tanh",
    formula: "tanh(x)",
    properties: props(true, true, true, true, true),
    elementwise: Some(|_| Arc::new(Tanh)),
    export: Some(|_, g, x| Ok(g.unary("Tanh", x))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Tanh;
impl ScalarFn for Tanh {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x.fast_tanh()
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let y = x.fast_tanh();
        R::one() - y * y
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.tanh()
    }
}

pub static SOFTSIGN: ActDef = ActDef {
    name: "Softsign",
    formula: "x / (1 + |x|)",
    properties: props(true, true, true, true, true),
    elementwise: Some(|_| Arc::new(Softsign)),
    export: Some(|_, g, x| Ok(g.unary("Softsign", x))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Softsign;
impl ScalarFn for Softsign {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x / (R::one() + x.abs())
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let d = R::one() + x.abs();
        R::one() / (d * d)
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.div(&(x.abs()? + 1.0)?)
    }
}
