//! Exponential-linear activations: ELU, CELU and SELU (torch's one `elu` with an alpha,
//! a scale and an input scale), and Softplus.

use std::sync::Arc;

use candle_core::{Result, Tensor};

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
    export: Some(|a, g, x| Ok(g.unary_with("Elu", x, &[("alpha", a.f(0))]))),
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
    export: Some(|a, g, x| {
        let alpha = a.f(0);
        if alpha == 1.0 {
            return Ok(g.unary_with("Celu", x, &[("alpha", alpha)]));
        }
        // The formula itself: tract 0.23's Celu leaves out the factor alpha, and this file
        // must run there (val/detect --weights model.onnx) as in onnxruntime.
        // max(0, x) + min(0, alpha (exp(x / alpha) - 1))
        let (zero, one, alpha) = (g.scalar(0.0), g.scalar(1.0), g.scalar(alpha));
        let scaled = g.binary("Div", x, &alpha);
        let exp = g.unary("Exp", &scaled);
        let exp_m1 = g.binary("Sub", &exp, &one);
        let negative = g.binary("Mul", &exp_m1, &alpha);
        let negative = g.binary("Min", &negative, &zero);
        let positive = g.binary("Max", x, &zero);
        Ok(g.binary("Add", &positive, &negative))
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
    export: Some(|_, g, x| {
        Ok(g.unary_with("Selu", x, &[("alpha", SELU_ALPHA), ("gamma", SELU_SCALE)]))
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
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // exp of x where x ≤ 0, else of 0: the branch not taken must not overflow to inf
        // (its gradient would be inf · 0). Branches by mask, so that 0 takes torch's side.
        let positive = x.gt(0f64)?;
        let below = positive.where_cond(&x.zeros_like()?, x)?;
        let negative = ((below * self.input_scale)?.exp()? - 1.0)?;
        positive.where_cond(&(x * self.scale)?, &(negative * (self.alpha * self.scale))?)
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
    export: Some(|a, g, x| {
        // log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as torch).
        let (beta, threshold) = (a.f(0), a.f(1));
        let b = g.scalar(beta);
        let scaled = g.binary("Mul", x, &b);
        let softplus = g.unary("Softplus", &scaled);
        let smooth = g.binary("Div", &softplus, &b);
        let t = g.scalar(threshold);
        let linear = g.binary("Greater", &scaled, &t);
        Ok(g.op("Where", &[&linear, x, &smooth], vec![]))
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
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        // torch's: x where beta·x > threshold, else log(1 + exp(beta·x)) / beta, with the
        // exponent kept below the threshold in the branch not taken.
        let bx = (x * self.beta)?;
        let linear = bx.gt(self.threshold)?;
        let capped = linear.where_cond(&bx.ones_like()?.affine(0.0, self.threshold)?, &bx)?;
        let soft = ((capped.exp()? + 1.0)?.log()? / self.beta)?;
        linear.where_cond(x, &soft)
    }
}
