//! An elementwise function behind a pointer: the entry points of every kernel loop that
//! applies one, each compiled for the concrete [`ScalarFn`] (so the loop inlines the
//! formula and vectorises) and reached through one virtual call per slice. Activations
//! hand kernels an `Arc<dyn Elementwise>`; no kernel lists the functions it can apply.

use std::fmt::Debug;

use candle_core::Tensor;
use std::mem::MaybeUninit;

use super::scalar::{Real, ScalarFn};
use super::simd::{lane_sums, widest_simd};

/// A function applied element by element, with the loops the kernels run it in.
pub trait Elementwise: Debug + Send + Sync {
    /// f(x) in f64 (plots, property checks, `acts eval`).
    fn value(&self, x: f64) -> f64;
    /// f'(x) in f64.
    fn derivative(&self, x: f64) -> f64;
    /// f of a tensor on any device, as candle ops (see [`ScalarFn::tensor`]).
    fn tensor(&self, x: &Tensor) -> candle_core::Result<Tensor>;
    /// `ys = f(xs)`, writing every element of `ys` (as long as `xs`).
    fn map_f32(&self, xs: &[f32], ys: &mut [MaybeUninit<f32>]);
    fn map_f64(&self, xs: &[f64], ys: &mut [MaybeUninit<f64>]);
    /// `dxs = dys · f'(xs)`, writing every element of `dxs`.
    fn map_grad_f32(&self, xs: &[f32], dys: &[f32], dxs: &mut [MaybeUninit<f32>]);
    fn map_grad_f64(&self, xs: &[f64], dys: &[f64], dxs: &mut [MaybeUninit<f64>]);
    /// `ys = f(xs · scale + shift)`: a normalised plane, activated; writes every element of
    /// `ys` (as long as `xs`).
    fn affine_into(&self, xs: &[f32], scale: f32, shift: f32, ys: &mut [MaybeUninit<f32>]);
    /// `ys = f(ys + bias)` in place: the epilogue of a convolution tile.
    fn bias_in_place(&self, bias: f32, ys: &mut [f32]);
    /// `ys = f(ys)` in place for inference outputs: by the function's faster kernel where
    /// it has one (see [`ScalarFn::avx512_kernel`]).
    fn inference_in_place(&self, ys: &mut [f32]);
    /// `ys = f(xs)` for inference outputs, writing every element of `ys` (as long as `xs`):
    /// [`Self::inference_in_place`]'s function, without a copy first.
    fn inference_into(&self, xs: &[f32], ys: &mut [MaybeUninit<f32>]);
    /// [`ScalarFn::avx512_kernel`]: what a convolution may apply in registers instead of
    /// [`Self::inference_in_place`].
    #[cfg(target_arch = "x86_64")]
    fn avx512_kernel(&self) -> Option<super::act_avx512::Kernel>;
    /// BatchNorm's backward sums over a plane: Σg and Σg·(x − mean)·invstd, where
    /// g = dy · f'(x · scale + shift).
    fn affine_grad_sums(&self, xs: &[f32], dys: &[f32], affine: Affine) -> [f64; 2];
    /// BatchNorm's input gradient over a plane, writing every element of `dxs`:
    /// `dx = k · (dy · f'(x · scale + shift) − mean_g − (x − mean) · invstd · mean_gx)`.
    fn batchnorm_input_grad(
        &self,
        xs: &[f32],
        dys: &[f32],
        affine: Affine,
        k_mean_g_mean_gx: (f32, f32, f32),
        dxs: &mut [MaybeUninit<f32>],
    );
}

/// A channel's normalisation: `x · scale + shift` = `(x − mean) · invstd · weight + bias`.
#[derive(Debug, Clone, Copy)]
pub struct Affine {
    pub scale: f32,
    pub shift: f32,
    pub mean: f32,
    pub invstd: f32,
}

fn map<R: Real, F: ScalarFn>(f: F, xs: &[R], ys: &mut [MaybeUninit<R>]) {
    assert_eq!(xs.len(), ys.len(), "elementwise map: lengths");
    widest_simd(
        #[inline(always)]
        move || {
            for (y, &x) in ys.iter_mut().zip(xs) {
                y.write(f.f(x));
            }
        },
    )
}

fn map_grad<R: Real, F: ScalarFn>(f: F, xs: &[R], dys: &[R], dxs: &mut [MaybeUninit<R>]) {
    assert!(
        xs.len() == dxs.len() && dys.len() == dxs.len(),
        "elementwise gradient: lengths"
    );
    widest_simd(
        #[inline(always)]
        move || {
            for ((dx, &x), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                dx.write(dy * f.df(x));
            }
        },
    )
}

impl<F: ScalarFn + Debug> Elementwise for F {
    fn value(&self, x: f64) -> f64 {
        self.f(x)
    }

    fn derivative(&self, x: f64) -> f64 {
        self.df(x)
    }

    fn tensor(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ScalarFn::tensor(self, x)
    }

    fn map_f32(&self, xs: &[f32], ys: &mut [MaybeUninit<f32>]) {
        map(*self, xs, ys)
    }

    fn map_f64(&self, xs: &[f64], ys: &mut [MaybeUninit<f64>]) {
        map(*self, xs, ys)
    }

    fn map_grad_f32(&self, xs: &[f32], dys: &[f32], dxs: &mut [MaybeUninit<f32>]) {
        map_grad(*self, xs, dys, dxs)
    }

    fn map_grad_f64(&self, xs: &[f64], dys: &[f64], dxs: &mut [MaybeUninit<f64>]) {
        map_grad(*self, xs, dys, dxs)
    }

    fn affine_into(&self, xs: &[f32], scale: f32, shift: f32, ys: &mut [MaybeUninit<f32>]) {
        assert_eq!(xs.len(), ys.len(), "affine map: lengths");
        let f = *self;
        widest_simd(
            #[inline(always)]
            || {
                for (y, &x) in ys.iter_mut().zip(xs) {
                    y.write(f.f(x * scale + shift));
                }
            },
        )
    }

    fn bias_in_place(&self, bias: f32, ys: &mut [f32]) {
        let f = *self;
        widest_simd(
            #[inline(always)]
            move || {
                for y in ys.iter_mut() {
                    *y = f.f(*y + bias);
                }
            },
        )
    }

    fn inference_in_place(&self, ys: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if ScalarFn::avx512_kernel(self).is_some_and(|kernel| kernel.apply_in_place(ys)) {
            return;
        }
        self.bias_in_place(0.0, ys);
    }

    fn inference_into(&self, xs: &[f32], ys: &mut [MaybeUninit<f32>]) {
        #[cfg(target_arch = "x86_64")]
        if ScalarFn::avx512_kernel(self).is_some_and(|kernel| kernel.apply_into(xs, ys)) {
            return;
        }
        map(*self, xs, ys);
    }

    #[cfg(target_arch = "x86_64")]
    fn avx512_kernel(&self) -> Option<super::act_avx512::Kernel> {
        ScalarFn::avx512_kernel(self)
    }

    fn affine_grad_sums(&self, xs: &[f32], dys: &[f32], a: Affine) -> [f64; 2] {
        let f = *self;
        widest_simd(
            #[inline(always)]
            || {
                lane_sums(
                    xs,
                    dys,
                    #[inline(always)]
                    |x, dy| {
                        let g = dy * f.df(x * a.scale + a.shift);
                        [g, g * (x - a.mean) * a.invstd]
                    },
                )
            },
        )
    }

    fn batchnorm_input_grad(
        &self,
        xs: &[f32],
        dys: &[f32],
        a: Affine,
        (k, sg, sgx): (f32, f32, f32),
        dxs: &mut [MaybeUninit<f32>],
    ) {
        assert!(
            xs.len() == dxs.len() && dys.len() == dxs.len(),
            "BatchNorm input gradient: lengths"
        );
        let f = *self;
        widest_simd(
            #[inline(always)]
            || {
                for ((dx, &x), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                    dx.write(
                        k * (dy * f.df(x * a.scale + a.shift) - sg - (x - a.mean) * a.invstd * sgx),
                    );
                }
            },
        )
    }
}
