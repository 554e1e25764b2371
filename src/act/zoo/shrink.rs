//! Shrinking activations, zero (or small) near the origin: Hardshrink, Softshrink and
//! Tanhshrink.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::act::registry::{
    param, props, ActDef, ArgError, ParamDefault::F, ParamType::Float, ELEMENTWISE,
};
use crate::ops::scalar::{Real, ScalarFn};

pub static HARDSHRINK: ActDef = ActDef {
    name: "Hardshrink",
    params: &[param("lambd", Float, F(0.5))],
    formula: "x if |x| > lambd else 0",
    properties: props(true, false, false, false, true),
    elementwise: Some(|a| Arc::new(Hardshrink { lambd: a.f(0) })),
    export: Some(|a, g, x| Ok(g.unary_with("Shrink", x, &[("lambd", a.f(0)), ("bias", 0.0)]))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Hardshrink {
    lambd: f64,
}
impl ScalarFn for Hardshrink {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let l = R::c(self.lambd);
        if x >= -l && x <= l {
            R::zero()
        } else {
            x
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let l = R::c(self.lambd);
        if x >= -l && x <= l {
            R::zero()
        } else {
            R::one()
        }
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x.abs()?.gt(self.lambd)?.where_cond(x, &x.zeros_like()?)
    }
}

pub static SOFTSHRINK: ActDef = ActDef {
    name: "Softshrink",
    params: &[param("lambd", Float, F(0.5))],
    formula: "x - lambd if x > lambd, x + lambd if x < -lambd, else 0",
    properties: props(true, false, false, false, true),
    check: |a| match a.f(0) {
        lambd if lambd < 0.0 => Err(ArgError::new("lambd", format!("{lambd}: must be >= 0"))),
        _ => Ok(()),
    },
    elementwise: Some(|a| Arc::new(Softshrink { lambd: a.f(0) })),
    export: Some(|a, g, x| Ok(g.unary_with("Shrink", x, &[("lambd", a.f(0)), ("bias", a.f(0))]))),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Softshrink {
    lambd: f64,
}
impl ScalarFn for Softshrink {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let l = R::c(self.lambd);
        if x > l {
            x - l
        } else if x < -l {
            x + l
        } else {
            R::zero()
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        Hardshrink { lambd: self.lambd }.df(x)
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        let shrunk = (x - x.clamp(-self.lambd, self.lambd)?.detach())?;
        x.abs()?
            .gt(self.lambd)?
            .where_cond(&shrunk, &x.zeros_like()?)
    }
}

pub static TANHSHRINK: ActDef = ActDef {
    name: "Tanhshrink",
    formula: "x - tanh(x)",
    properties: props(true, false, false, true, true),
    elementwise: Some(|_| Arc::new(Tanhshrink)),
    export: Some(|_, g, x| {
        let tanh = g.unary("Tanh", x);
        Ok(g.binary("Sub", x, &tanh))
    }),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Tanhshrink;
impl ScalarFn for Tanhshrink {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        x - x.fast_tanh()
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let t = x.fast_tanh();
        t * t
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        x - x.tanh()?
    }
}
