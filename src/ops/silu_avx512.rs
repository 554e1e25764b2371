//! SiLU, x · σ(x), on AVX-512 registers for inference outputs, where the portable
//! kernel's division (one per 16 values, on one port) was the convolution epilogue's limit.
//!
//! With t = e^−|x| in (0, 1]: σ(|x|) = 1 / (1 + t) and σ(−|x|) = t / (1 + t), so the
//! reciprocal's argument stays in (1, 2] whatever x; it is the 14-bit estimate plus one
//! Newton step. e^z uses fused multiply-adds (Cephes' polynomial, as [`super::fastmath`]).
//! The result is within 4 ulp of x · σ(x) computed in f64 for x ≥ −87 (checked on a dense
//! sweep in the tests below); below −87 t is held at e^−87, so |result| ≤ |x| · 1.7 · 10⁻³⁸
//! there, where the exact value is smaller still. NaN stays NaN. Training never runs this: its
//! results are the portable kernels', the same bits on every CPU.

#![allow(clippy::excessive_precision)]

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_castps_si512, _mm512_castsi512_ps, _mm512_cmp_ps_mask,
    _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_loadu_ps, _mm512_mask_blend_ps,
    _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_or_si512,
    _mm512_rcp14_ps, _mm512_roundscale_ps, _mm512_scalef_ps, _mm512_set1_epi32, _mm512_set1_ps,
    _mm512_storeu_ps, _CMP_LT_OQ, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT,
};

/// Applies SiLU to `ys` in place and returns true, or returns false (leaving `ys` as it
/// is) on a CPU without AVX-512.
pub fn silu_in_place(ys: &mut [f32]) -> bool {
    if !is_x86_feature_detected!("avx512f") {
        return false;
    }
    // SAFETY: the CPU has AVX-512F.
    unsafe { silu_avx512(ys) };
    true
}

#[target_feature(enable = "avx512f")]
fn silu_avx512(ys: &mut [f32]) {
    let mut chunks = ys.chunks_exact_mut(16);
    for chunk in chunks.by_ref() {
        // SAFETY: `chunk` holds 16 floats.
        unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), silu16(_mm512_loadu_ps(chunk.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let lanes = ((1u32 << rest.len()) - 1) as u16;
        // SAFETY: the masked load and store touch only the `rest.len()` floats of `rest`.
        unsafe {
            let y = silu16(_mm512_maskz_loadu_ps(lanes, rest.as_ptr()));
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), lanes, y);
        }
    }
}

/// x · σ(x) of 16 floats.
#[inline]
#[target_feature(enable = "avx512f")]
fn silu16(x: __m512) -> __m512 {
    // z = −|x| (the sign bit set), held at −87 (e^z stays a normal float); NaN becomes −87
    // here and NaN again in the final product with x.
    let minus_abs = _mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let z = _mm512_max_ps(_mm512_castsi512_ps(minus_abs), _mm512_set1_ps(-87.0));
    // z = n ln 2 + r, |r| <= ln 2 / 2; ln 2 in two parts so that n · LN2_HI is exact.
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(z, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_375), z);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    // e^r = 1 + r + r² p(r).
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.000_000_1e-1,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let one = _mm512_set1_ps(1.0);
    let em1 = _mm512_fmadd_ps(_mm512_mul_ps(r, r), p, r);
    let t = _mm512_scalef_ps(_mm512_add_ps(em1, one), n);
    // 1 / (1 + t) for 1 + t in (1, 2]: the estimate's error squared by one Newton step.
    let d = _mm512_add_ps(one, t);
    let e = _mm512_rcp14_ps(d);
    let e = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, e, one), e, e);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(0.0));
    let sigma = _mm512_mask_blend_ps(negative, e, _mm512_mul_ps(t, e));
    _mm512_mul_ps(x, sigma)
}

#[cfg(test)]
mod tests {
    use super::silu_in_place;

    /// Distance from `y` to the f64 value `exact`, in units of the f32 spacing at `exact`.
    fn ulps(y: f32, exact: f64) -> f64 {
        let rounded = exact as f32;
        let spacing = (f32::from_bits(rounded.abs().to_bits() + 1) - rounded.abs()) as f64;
        (y as f64 - exact).abs() / spacing
    }

    #[test]
    fn within_4_ulp_of_the_exact_silu_on_a_dense_sweep() {
        // Every 37th f32 from −87 to +2^64, both signs, plus the ends and zero.
        let mut xs: Vec<f32> = (0..0x5f80_0000u32)
            .step_by(37)
            .flat_map(|bits| [f32::from_bits(bits), -f32::from_bits(bits)])
            .filter(|x| *x >= -87.0)
            .collect();
        xs.extend([0.0, -0.0, -87.0, 88.0, 1e-45, -1e-45]);
        let mut ys = xs.clone();
        if !silu_in_place(&mut ys) {
            eprintln!("no AVX-512 on this CPU: nothing to check");
            return;
        }
        let mut worst = (0.0, 0.0f32);
        for (&x, &y) in xs.iter().zip(&ys) {
            let exact = x as f64 / (1.0 + (-(x as f64)).exp());
            let error = ulps(y, exact);
            if error > worst.0 {
                worst = (error, x);
            }
        }
        eprintln!("largest error: {} ulp at x = {}", worst.0, worst.1);
        assert!(worst.0 <= 4.0, "{} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn edges_and_lengths() {
        let mut ys = [f32::NAN, f32::INFINITY, -1000.0, 1000.0, 0.0];
        if !silu_in_place(&mut ys) {
            return;
        }
        assert!(ys[0].is_nan());
        assert_eq!(ys[1], f32::INFINITY);
        assert!(ys[2] <= 0.0 && ys[2] >= -1000.0 * 1.7e-38, "{}", ys[2]);
        assert_eq!(&ys[3..], &[1000.0, 0.0]);
        // Every length up to three vectors: the masked remainder writes only its lanes.
        for len in 0..48 {
            let mut ys: Vec<f32> = (0..len + 1).map(|i| i as f32 - 20.0).collect();
            silu_in_place(&mut ys[..len]);
            for (i, &y) in ys[..len].iter().enumerate() {
                let x = i as f64 - 20.0;
                assert!(ulps(y, x / (1.0 + (-x).exp())) <= 4.0, "len {len}, x {x}");
            }
            assert_eq!(ys[len], len as f32 - 20.0, "len {len}: past the slice");
        }
    }
}
