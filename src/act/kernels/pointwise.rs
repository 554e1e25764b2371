//! One pass over memory for any pointwise activation: forward `y = f(x)` and backward
//! `dx = dy * f'(x)`, in parallel chunks, monomorphised per activation.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous, CHUNK};
use crate::act::pointwise::{Pointwise, Real, ScalarFn};
use crate::with_scalar_fn;

/// `y = f(x)` for every element.
pub fn map<R: Real, F: ScalarFn>(f: F, xs: &[R], ys: &mut [R]) {
    ys.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(ys, xs)| {
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = f.f(x);
            }
        });
}

/// `dx = dy * f'(x)` for every element.
pub fn map_grad<R: Real, F: ScalarFn>(f: F, xs: &[R], dys: &[R], dxs: &mut [R]) {
    dxs.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK).zip(dys.par_chunks(CHUNK)))
        .for_each(|(dxs, (xs, dys))| {
            for ((dx, &x), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                *dx = dy * f.df(x);
            }
        });
}

/// Forward op; its backward is [`PointwiseGrad`].
#[derive(Debug, Clone, Copy)]
pub struct PointwiseOp(pub Pointwise);

/// Backward op on `(x, dy)`.
#[derive(Debug, Clone, Copy)]
pub struct PointwiseGrad(pub Pointwise);

fn forward_storage(p: Pointwise, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F32(_) => {
            let xs = contiguous::<f32>("pointwise activation", s, l)?;
            let mut ys = vec![0f32; xs.len()];
            with_scalar_fn!(p, f => map(f, xs, &mut ys));
            CpuStorage::F32(ys)
        }
        CpuStorage::F64(_) => {
            let xs = contiguous::<f64>("pointwise activation", s, l)?;
            let mut ys = vec![0f64; xs.len()];
            with_scalar_fn!(p, f => map(f, xs, &mut ys));
            CpuStorage::F64(ys)
        }
        other => candle_core::bail!("pointwise activation: unsupported dtype {:?}", other.dtype()),
    })
}

fn backward_storage(
    p: Pointwise,
    x: (&CpuStorage, &Layout),
    dy: (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    const OP: &str = "pointwise activation backward";
    Ok(match (x.0, dy.0) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => {
            let xs = contiguous::<f32>(OP, x.0, x.1)?;
            let dys = contiguous::<f32>(OP, dy.0, dy.1)?;
            let mut dxs = vec![0f32; xs.len()];
            with_scalar_fn!(p, f => map_grad(f, xs, dys, &mut dxs));
            CpuStorage::F32(dxs)
        }
        (CpuStorage::F64(_), CpuStorage::F64(_)) => {
            let xs = contiguous::<f64>(OP, x.0, x.1)?;
            let dys = contiguous::<f64>(OP, dy.0, dy.1)?;
            let mut dxs = vec![0f64; xs.len()];
            with_scalar_fn!(p, f => map_grad(f, xs, dys, &mut dxs));
            CpuStorage::F64(dxs)
        }
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
            candle_core::bail!("pointwise activation backward: shape {:?} vs {:?}", l1.shape(), l2.shape());
        }
        Ok((backward_storage(self.0, (s1, l1), (s2, l2))?, l1.shape().clone()))
    }
}

/// Applies a pointwise activation with the fused kernel; differentiable.
pub fn apply(p: Pointwise, x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(PointwiseOp(p))
}
