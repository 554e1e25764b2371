//! One pass over memory for any elementwise function: forward `y = f(x)` and backward
//! `dx = dy * f'(x)`, in parallel chunks, each compiled for the function.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use std::sync::Arc;

use super::elementwise::Elementwise;
use super::portable;
use super::scalar::Real;
use super::simd::CHUNK;
use super::storage::contiguous;
use crate::util::profile::{self, Stage};

/// `y = f(x)` for every element, in parallel chunks.
fn map_into<R: Real>(
    map: impl Fn(&[R], &mut [MaybeUninit<R>]) + Sync,
    xs: &[R],
    ys: &mut [MaybeUninit<R>],
) {
    ys.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(ys, xs)| map(xs, ys));
}

/// `dx = dy · f'(x)` for every element, in parallel chunks.
fn map_grad_into<R: Real>(
    map_grad: impl Fn(&[R], &[R], &mut [MaybeUninit<R>]) + Sync,
    xs: &[R],
    dys: &[R],
    dxs: &mut [MaybeUninit<R>],
) {
    dxs.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK).zip(dys.par_chunks(CHUNK)))
        .for_each(|(dxs, (xs, dys))| map_grad(xs, dys, dxs));
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
#[derive(Debug, Clone)]
pub struct PointwiseOp(pub Arc<dyn Elementwise>);

/// Backward op on `(x, dy)`.
#[derive(Debug, Clone)]
pub struct PointwiseGrad(pub Arc<dyn Elementwise>);

fn forward_f32(f: &dyn Elementwise, xs: &[f32]) -> Vec<f32> {
    // SAFETY: map_f32 writes every element of an output as long as its input.
    unsafe { filled_vec(xs.len(), |ys| map_into(|x, y| f.map_f32(x, y), xs, ys)) }
}

fn forward_f64(f: &dyn Elementwise, xs: &[f64]) -> Vec<f64> {
    // SAFETY: as above.
    unsafe { filled_vec(xs.len(), |ys| map_into(|x, y| f.map_f64(x, y), xs, ys)) }
}

/// `dys · f'(xs)`, elementwise, in the kernels' SIMD.
pub fn backward_f32(f: &dyn Elementwise, xs: &[f32], dys: &[f32]) -> Vec<f32> {
    // SAFETY: map_grad_f32 writes every element of an output as long as its inputs.
    unsafe {
        filled_vec(xs.len(), |dxs| {
            map_grad_into(|x, dy, dx| f.map_grad_f32(x, dy, dx), xs, dys, dxs)
        })
    }
}

fn backward_f64(f: &dyn Elementwise, xs: &[f64], dys: &[f64]) -> Vec<f64> {
    // SAFETY: as above.
    unsafe {
        filled_vec(xs.len(), |dxs| {
            map_grad_into(|x, dy, dx| f.map_grad_f64(x, dy, dx), xs, dys, dxs)
        })
    }
}

fn forward_storage(p: &dyn Elementwise, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    const OP: &str = "pointwise activation";
    Ok(match s {
        CpuStorage::F32(_) => CpuStorage::F32(forward_f32(p, contiguous(OP, s, l)?)),
        CpuStorage::F64(_) => CpuStorage::F64(forward_f64(p, contiguous(OP, s, l)?)),
        other => candle_core::bail!("{OP}: unsupported dtype {:?}", other.dtype()),
    })
}

fn backward_storage(
    p: &dyn Elementwise,
    x: (&CpuStorage, &Layout),
    dy: (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    const OP: &str = "pointwise activation backward";
    Ok(match (x.0, dy.0) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward_f32(
            p,
            contiguous(OP, x.0, x.1)?,
            contiguous(OP, dy.0, dy.1)?,
        )),
        (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward_f64(
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
        Ok((forward_storage(&*self.0, s, l)?, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let _t = profile::span(Stage::ActivationBackward);
        let dx = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &PointwiseGrad(self.0.clone()))?;
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
            backward_storage(&*self.0, (s1, l1), (s2, l2))?,
            l1.shape().clone(),
        ))
    }
}

/// Applies an elementwise function with the fused kernel; differentiable.
pub fn apply(f: &Arc<dyn Elementwise>, x: &Tensor) -> Result<Tensor> {
    if portable::wanted(x.device()) {
        return f.tensor(x);
    }
    x.contiguous()?.apply_op1(PointwiseOp(f.clone()))
}
