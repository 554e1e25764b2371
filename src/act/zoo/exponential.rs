//! Exponential-linear activations: ELU, CELU and SELU (torch's one `elu` with an alpha,
//! a scale and an input scale), and Softplus.

use std::sync::Arc;

use crate::act::registry::{
    param, props, ActDef, ArgError, ParamDefault::F, ParamType::Float, ELEMENTWISE, INPLACE,
};
use crate::ops::scalar::{Real, ScalarFn};

pub static ELU: ActDef = ActDef {
    name: "ELU",
    params: &[param("alpha", Float, F(1.0)), INPLACE],
    formula: "x if x > 0 else alpha * (exp(x) - 1)",
    properties: props(true, true, false, true, true),
    elementwise: Some(|a| {
        Arc::new(Elu {
            alpha: a.f(0),
            scale: 1.0,
            input_scale: 1.0,
        })
    }),
    ..ELEMENTWISE
};

pub static CELU: ActDef = ActDef {
    name: "CELU",
    params: &[param("alpha", Float, F(1.0)), INPLACE],
    formula: "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))",
    properties: props(true, true, false, true, true),
    check: |a| match a.f(0) {
        0.0 => Err(ArgError::new(
            "alpha",
            "must not be 0 (CELU divides by alpha)",
        )),
        _ => Ok(()),
    },
    elementwise: Some(|a| {
        Arc::new(Elu {
            alpha: a.f(0),
            scale: 1.0,
            input_scale: 1.0 / a.f(0),
        })
    }),
    ..ELEMENTWISE
};

pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_284_817_042_991_671_7;
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_493_419_334_985_294_6;

pub static SELU: ActDef = ActDef {
    name: "SELU",
    params: &[INPLACE],
    formula: "scale * (max(0, x) + min(0, alpha * (exp(x) - 1))), alpha=1.6733, scale=1.0507",
    properties: props(true, true, false, false, true),
    elementwise: Some(|_| {
        Arc::new(Elu {
            alpha: SELU_ALPHA,
            scale: SELU_SCALE,
            input_scale: 1.0,
        })
    }),
    ..ELEMENTWISE
};

/// torch's `elu(x, alpha, scale, input_scale)`.
#[derive(Debug, Clone, Copy)]
struct Elu {
    alpha: f64,
    scale: f64,
    input_scale: f64,
}
impl ScalarFn for Elu {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        if x <= R::zero() {
            (x * R::c(self.input_scale)).fast_exp_m1() * R::c(self.alpha * self.scale)
        } else {
            x * R::c(self.scale)
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        if x <= R::zero() {
            R::c(self.input_scale)
                * R::c(self.alpha * self.scale)
                * (x * R::c(self.input_scale)).fast_exp()
        } else {
            R::c(self.scale)
        }
    }
}

pub static SOFTPLUS: ActDef = ActDef {
    name: "Softplus",
    params: &[
        param("beta", Float, F(1.0)),
        param("threshold", Float, F(20.0)),
    ],
    formula: "log(1 + exp(beta * x)) / beta, or x where beta * x > threshold",
    properties: props(true, true, false, true, false),
    check: |a| match a.f(0) {
        0.0 => Err(ArgError::new(
            "beta",
            "must not be 0 (Softplus divides by beta)",
        )),
        _ => Ok(()),
    },
    elementwise: Some(|a| {
        Arc::new(Softplus {
            beta: a.f(0),
            threshold: a.f(1),
        })
    }),
    ..ELEMENTWISE
};

#[derive(Debug, Clone, Copy)]
struct Softplus {
    beta: f64,
    threshold: f64,
}
impl ScalarFn for Softplus {
    #[inline(always)]
    fn f<R: Real>(&self, x: R) -> R {
        let bx = x * R::c(self.beta);
        if bx > R::c(self.threshold) {
            x
        } else {
            bx.fast_exp().fast_ln_1p() / R::c(self.beta)
        }
    }
    #[inline(always)]
    fn df<R: Real>(&self, x: R) -> R {
        let bx = x * R::c(self.beta);
        if bx > R::c(self.threshold) {
            R::one()
        } else {
            let z = bx.fast_exp();
            z / (z + R::one())
        }
    }
}
