//! Pointwise activations as scalar functions f(x) and f'(x), generic over f32 (the
//! kernels) and f64 (plots, property checks). Each formula, including its value at the
//! kinks, follows PyTorch's CPU kernels (aten/src/ATen/native/cpu/Activation.cpp and
//! derivatives.yaml), so forward and gradient agree with torch elementwise.

use super::spec::{ActSpec, GeluApprox};
use std::sync::Arc;

use crate::ops::elementwise::Elementwise;
use crate::ops::scalar::{sigmoid, Identity, Real, ScalarFn};

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
}

/// `clamp(x, min, max)`; ReLU6 is Hardtanh(0, 6) in torch too.
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
}

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
}

#[derive(Debug, Clone, Copy)]
pub struct Hardsigmoid;
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
}

#[derive(Debug, Clone, Copy)]
pub struct Tanh;
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
}

#[derive(Debug, Clone, Copy)]
pub struct Silu;
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
}

/// `x tanh(softplus(x))`, with `tanh(ln(1 + e)) = e (e + 2) / (e (e + 2) + 2)` for
/// `e = exp(x)`: torch's function with one exp instead of exp, log1p and tanh.
#[derive(Debug, Clone, Copy)]
pub struct Mish;
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
}

#[derive(Debug, Clone, Copy)]
pub struct Hardswish;
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
}

/// ELU, CELU and SELU are torch's one `elu(x, alpha, scale, input_scale)`.
#[derive(Debug, Clone, Copy)]
pub struct Elu {
    pub alpha: f64,
    pub scale: f64,
    pub input_scale: f64,
}
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_284_817_042_991_671_7;
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_493_419_334_985_294_6;
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

#[derive(Debug, Clone, Copy)]
pub struct Gelu;
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
}

#[derive(Debug, Clone, Copy)]
pub struct GeluTanh;
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
}

#[derive(Debug, Clone, Copy)]
pub struct Hardshrink {
    pub lambd: f64,
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
}

#[derive(Debug, Clone, Copy)]
pub struct Softshrink {
    pub lambd: f64,
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
}

/// LeakyReLU; also RReLU in eval mode and PReLU with a single slope.
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
}

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
}

#[derive(Debug, Clone, Copy)]
pub struct Softplus {
    pub beta: f64,
    pub threshold: f64,
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

#[derive(Debug, Clone, Copy)]
pub struct Softsign;
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
}

#[derive(Debug, Clone, Copy)]
pub struct Tanhshrink;
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
}

/// The elementwise function a spec computes in eval mode (RReLU uses its mean slope), or
/// `None` for channel-wise and learnable activations.
pub fn elementwise(spec: &ActSpec) -> Option<Arc<dyn Elementwise>> {
    use ActSpec as S;
    let elu = |alpha: f64, scale: f64, input_scale: f64| -> Arc<dyn Elementwise> {
        Arc::new(Elu {
            alpha,
            scale,
            input_scale,
        })
    };
    Some(match *spec {
        S::Identity => Arc::new(Identity),
        S::Relu => Arc::new(Relu),
        S::Rrelu { lower, upper } => Arc::new(LeakyRelu {
            slope: (lower + upper) / 2.0,
        }),
        S::Hardtanh { min_val, max_val } => Arc::new(Hardtanh {
            min: min_val,
            max: max_val,
        }),
        S::Relu6 => Arc::new(Hardtanh { min: 0.0, max: 6.0 }),
        S::Sigmoid => Arc::new(Sigmoid),
        S::Hardsigmoid => Arc::new(Hardsigmoid),
        S::Tanh => Arc::new(Tanh),
        S::Silu => Arc::new(Silu),
        S::Mish => Arc::new(Mish),
        S::Hardswish => Arc::new(Hardswish),
        S::Elu { alpha } => elu(alpha, 1.0, 1.0),
        S::Celu { alpha } => elu(alpha, 1.0, 1.0 / alpha),
        S::Selu => elu(SELU_ALPHA, SELU_SCALE, 1.0),
        S::Gelu {
            approximate: GeluApprox::None,
        } => Arc::new(Gelu),
        S::Gelu {
            approximate: GeluApprox::Tanh,
        } => Arc::new(GeluTanh),
        S::Hardshrink { lambd } => Arc::new(Hardshrink { lambd }),
        S::Softshrink { lambd } => Arc::new(Softshrink { lambd }),
        S::LeakyRelu { negative_slope } => Arc::new(LeakyRelu {
            slope: negative_slope,
        }),
        S::LogSigmoid => Arc::new(LogSigmoid),
        S::Softplus { beta, threshold } => Arc::new(Softplus { beta, threshold }),
        S::Softsign => Arc::new(Softsign),
        S::Tanhshrink => Arc::new(Tanhshrink),
        _ => return None,
    })
}
