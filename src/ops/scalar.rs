//! Elementwise functions as the kernels see them: a value f(x) and a derivative f'(x),
//! generic over f32 (the kernels) and f64 (plots, property checks), so that each kernel is
//! compiled per function and its inner loop inlines the formula.

use candle_core::{Result, Tensor};
use num_traits::{Float, FloatConst};

use super::fastmath;

/// The float types the kernels run on, with the transcendental functions the formulas
/// use. In f32 these are the branch-free ones of [`fastmath`], which let the kernel loops
/// vectorise (libm's are scalar calls); in f64 they are std's. Formulas call these, not
/// `Float::exp` and friends.
pub trait Real: Float + FloatConst + Send + Sync + 'static {
    fn erf(self) -> Self;
    fn fast_exp(self) -> Self;
    fn fast_exp_m1(self) -> Self;
    fn fast_ln_1p(self) -> Self;
    fn fast_tanh(self) -> Self;
    fn c(v: f64) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn erf(self) -> f32 {
        fastmath::erf(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> f32 {
        fastmath::exp(self)
    }
    #[inline(always)]
    fn fast_exp_m1(self) -> f32 {
        fastmath::exp_m1(self)
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> f32 {
        fastmath::ln_1p(self)
    }
    #[inline(always)]
    fn fast_tanh(self) -> f32 {
        fastmath::tanh(self)
    }
    #[inline(always)]
    fn c(v: f64) -> f32 {
        v as f32
    }
}

impl Real for f64 {
    #[inline(always)]
    fn erf(self) -> f64 {
        libm::erf(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn fast_exp_m1(self) -> f64 {
        self.exp_m1()
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> f64 {
        self.ln_1p()
    }
    #[inline(always)]
    fn fast_tanh(self) -> f64 {
        self.tanh()
    }
    #[inline(always)]
    fn c(v: f64) -> f64 {
        v
    }
}

/// A pointwise activation: its value and its derivative with respect to the input.
pub trait ScalarFn: Copy + Send + Sync + 'static {
    fn f<R: Real>(&self, x: R) -> R;
    fn df<R: Real>(&self, x: R) -> R;
    /// f of a whole tensor as a candle composition, differentiable by candle: how the
    /// function runs off the CPU (see [`super::portable`]).
    fn tensor(&self, x: &Tensor) -> Result<Tensor>;
    /// The faster kernel, with its own stated error bound, that applies f to inference
    /// outputs (nothing takes their gradient) on CPUs with AVX-512; None where the
    /// function has none.
    #[cfg(target_arch = "x86_64")]
    fn avx512_kernel(&self) -> Option<super::act_avx512::Kernel> {
        None
    }
}

/// f(x) = x: what a kernel applies when there is no activation.
#[derive(Debug, Clone, Copy)]
pub struct Identity;
impl ScalarFn for Identity {
    fn f<R: Real>(&self, x: R) -> R {
        x
    }
    fn df<R: Real>(&self, _x: R) -> R {
        R::one()
    }
    fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
}

/// The logistic function `1 / (1 + exp(-x))`, as torch computes it.
#[inline(always)]
pub fn sigmoid<R: Real>(x: R) -> R {
    R::one() / (R::one() + (-x).fast_exp())
}
