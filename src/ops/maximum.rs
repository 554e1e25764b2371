//! `maximum(a, b)` elementwise (FReLU's `max(x, funnel)`), as one custom op with torch's
//! gradient: the larger input gets the gradient, ties split it in half, and a NaN
//! comparison gives both the whole. candle's own backward builds it from six
//! full-size comparisons, casts and divisions.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::portable;
use super::simd::{widest_simd, CHUNK};
use super::storage::{contiguous_f32, with_f32_data};
use crate::util::profile::{self, Stage};

#[derive(Debug, Clone, Copy)]
struct MaximumOp;

impl CustomOp2 for MaximumOp {
    fn name(&self) -> &'static str {
        "maximum"
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
                "maximum: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let [a, b] = contiguous_f32("maximum", [(s1, l1), (s2, l2)])?;
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(y, (a, b))| {
                widest_simd(
                    #[inline(always)]
                    || {
                        for (y, (&a, &b)) in y.iter_mut().zip(a.iter().zip(b)) {
                            *y = if a.is_nan() || a > b { a } else { b };
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _t = profile::span(Stage::ActivationBackward);
        let (da, db) = with_f32_data("maximum backward", [a, b, dy], |[a, b, dy]| {
            let (mut da, mut db) = (vec![0f32; a.len()], vec![0f32; a.len()]);
            da.par_chunks_mut(CHUNK)
                .zip(db.par_chunks_mut(CHUNK))
                .zip(
                    a.par_chunks(CHUNK)
                        .zip(b.par_chunks(CHUNK))
                        .zip(dy.par_chunks(CHUNK)),
                )
                .for_each(|((da, db), ((a, b), dy))| {
                    widest_simd(
                        #[inline(always)]
                        || {
                            for ((da, db), ((&a, &b), &g)) in da
                                .iter_mut()
                                .zip(db.iter_mut())
                                .zip(a.iter().zip(b).zip(dy))
                            {
                                let share = if a == b { g * 0.5 } else { g };
                                *da = if a < b { 0.0 } else { share };
                                *db = if a > b { 0.0 } else { share };
                            }
                        },
                    )
                });
            (da, db)
        })?;
        Ok((
            Some(Tensor::from_vec(da, a.shape(), a.device())?),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// `maximum(a, b)` of two f32 tensors of one shape; differentiable in both.
pub fn apply(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if portable::wanted(a.device()) {
        return portable::maximum(a, b);
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, MaximumOp)
}
