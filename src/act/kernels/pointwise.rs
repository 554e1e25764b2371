//! One pass over memory for any pointwise activation: forward `y = f(x)` and backward
//! `dx = dy * f'(x)`, in parallel chunks, monomorphised per activation.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous, widest_simd, CHUNK};
use crate::act::pointwise::{Pointwise, Real, ScalarFn};
use crate::profile::{self, Stage};
use crate::with_scalar_fn;

/// `y = f(x)` for every element.
pub fn map<R: Real, F: ScalarFn>(f: F, xs: &[R], ys: &mut [R]) {
    map_into(f, xs, as_uninit(ys));
}

/// `dx = dy * f'(x)` for every element.
pub fn map_grad<R: Real, F: ScalarFn>(f: F, xs: &[R], dys: &[R], dxs: &mut [R]) {
    map_grad_into(f, xs, dys, as_uninit(dxs));
}

/// `ys[i] = f(ys[i] + bias)` in place, on the calling thread: the epilogue of a fused
/// convolution, run on one output tile while it is in cache.
pub fn bias_act_in_place(p: Pointwise, bias: f32, ys: &mut [f32]) {
    with_scalar_fn!(p, f => widest_simd(
        #[inline(always)]
        move || ys.iter_mut().for_each(|y| *y = f.f(*y + bias)),
    ))
}

/// Writes every element of `ys`.
fn map_into<R: Real, F: ScalarFn>(f: F, xs: &[R], ys: &mut [MaybeUninit<R>]) {
    assert_eq!(
        xs.len(),
        ys.len(),
        "pointwise activation: input and output lengths"
    );
    ys.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(move |(ys, xs)| {
            widest_simd(
                #[inline(always)]
                move || {
                    for (y, &x) in ys.iter_mut().zip(xs) {
                        y.write(f.f(x));
                    }
                },
            )
        });
}

/// Writes every element of `dxs`.
fn map_grad_into<R: Real, F: ScalarFn>(f: F, xs: &[R], dys: &[R], dxs: &mut [MaybeUninit<R>]) {
    assert!(
        xs.len() == dxs.len() && dys.len() == dxs.len(),
        "pointwise activation backward: lengths"
    );
    dxs.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK).zip(dys.par_chunks(CHUNK)))
        .for_each(move |(dxs, (xs, dys))| {
            widest_simd(
                #[inline(always)]
                move || {
                    for ((dx, &x), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                        dx.write(dy * f.df(x));
                    }
                },
            )
        });
}

fn as_uninit<R>(ys: &mut [R]) -> &mut [MaybeUninit<R>] {
    // SAFETY: MaybeUninit<R> has the layout of R, and the kernels only write initialised values.
    unsafe { &mut *(ys as *mut [R] as *mut [MaybeUninit<R>]) }
}

/// A vector of `len` elements written by `fill`, without zero-filling it first: that
/// would be one more pass over the output than the kernel itself.
///
/// # Safety
/// `fill` must initialise every element of the slice it is given.
unsafe fn filled_vec<R>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<R>])) -> Vec<R> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees that `fill` initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Forward op; its backward is [`PointwiseGrad`].
#[derive(Debug, Clone, Copy)]
pub struct PointwiseOp(pub Pointwise);

/// Backward op on `(x, dy)`.
#[derive(Debug, Clone, Copy)]
pub struct PointwiseGrad(pub Pointwise);

fn forward<R: Real>(p: Pointwise, xs: &[R]) -> Vec<R> {
    // SAFETY: map_into writes every element of an output as long as its input.
    with_scalar_fn!(p, f => unsafe { filled_vec(xs.len(), |ys| map_into(f, xs, ys)) })
}

fn backward<R: Real>(p: Pointwise, xs: &[R], dys: &[R]) -> Vec<R> {
    // SAFETY: map_grad_into writes every element of an output as long as its inputs.
    with_scalar_fn!(p, f => unsafe { filled_vec(xs.len(), |dxs| map_grad_into(f, xs, dys, dxs)) })
}

fn forward_storage(p: Pointwise, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    const OP: &str = "pointwise activation";
    Ok(match s {
        CpuStorage::F32(_) => CpuStorage::F32(forward(p, contiguous(OP, s, l)?)),
        CpuStorage::F64(_) => CpuStorage::F64(forward(p, contiguous(OP, s, l)?)),
        other => candle_core::bail!("{OP}: unsupported dtype {:?}", other.dtype()),
    })
}

fn backward_storage(
    p: Pointwise,
    x: (&CpuStorage, &Layout),
    dy: (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    const OP: &str = "pointwise activation backward";
    Ok(match (x.0, dy.0) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward(
            p,
            contiguous(OP, x.0, x.1)?,
            contiguous(OP, dy.0, dy.1)?,
        )),
        (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward(
            p,
            contiguous(OP, x.0, x.1)?,
            contiguous(OP, dy.0, dy.1)?,
        )),
        (a, b) => candle_core::bail!("{OP}: unsupported dtypes {:?}/{:?}", a.dtype(), b.dtype()),
    })
}

impl CustomOp1 for PointwiseOp {
    fn name(&self) -> &'static str {
        "pointwise-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((forward_storage(self.0, s, l)?, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let _t = profile::span(Stage::ActivationBackward);
        let dx = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &PointwiseGrad(self.0))?;
        Ok(Some(dx))
    }
}

impl CustomOp2 for PointwiseGrad {
    fn name(&self) -> &'static str {
        "pointwise-activation-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "pointwise activation backward: shape {:?} vs {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        Ok((
            backward_storage(self.0, (s1, l1), (s2, l2))?,
            l1.shape().clone(),
        ))
    }
}

/// Applies a pointwise activation with the fused kernel; differentiable.
pub fn apply(p: Pointwise, x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(PointwiseOp(p))
}
