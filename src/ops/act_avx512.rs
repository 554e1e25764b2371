//! SiLU and exact GELU on AVX-512 registers for inference outputs, where the portable
//! kernels (the same bits on every CPU, no fused multiply-adds) were the convolution
//! epilogue's limit: SiLU's division runs on one port, GELU's erf is two polynomials and an
//! exponential. The sigmoid of the Detect head's decode shares SiLU's. Training never runs
//! these.
//!
//! Both use fused multiply-adds, `scalef` for 2^n, and the portable kernels' polynomials
//! ([`super::fastmath`]'s tables). Their error bounds, checked on dense sweeps in the tests
//! below against the functions computed in f64:
//! - SiLU is within 4 ulp for x ≥ −87; below, |result| ≤ |x| · 1.7 · 10⁻³⁸, where the exact
//!   value is smaller still.
//! - The sigmoid is within 3 ulp for x ≥ −87; below, the result is at most 1.7 · 10⁻³⁸.
//! - GELU is within 2 ulp plus |x| · 2⁻²⁵: for negative x, where the result is small, the
//!   second term dominates (the portable kernel, which follows torch's x · (1 + erf(u)) / 2,
//!   loses more than that to cancellation there: 1.17 times this bound on the same sweep,
//!   and up to 10⁵ ulp near −5 against this kernel's 45). Below −4√2 the result is 0, as
//!   the portable kernel's, where the exact value is smaller than |x| · 10⁻⁸.
//!
//! NaN stays NaN in both.

use std::arch::x86_64::{
    __m512, _mm512_abs_ps, _mm512_add_ps, _mm512_castps_si512, _mm512_castsi512_ps,
    _mm512_cmp_ps_mask, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_loadu_ps, _mm512_mask_blend_ps,
    _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps,
    _mm512_or_si512, _mm512_rcp14_ps, _mm512_roundscale_ps, _mm512_scalef_ps, _mm512_set1_epi32,
    _mm512_set1_ps, _mm512_storeu_ps, _mm512_sub_ps, _CMP_GT_OQ, _CMP_LT_OQ, _MM_FROUND_NO_EXC,
    _MM_FROUND_TO_NEAREST_INT,
};

use std::mem::MaybeUninit;

use super::fastmath::{ERF_NEAR_H, ERF_SPLIT, ERF_TAIL_Q, EXP_P, LN2_HI, LN2_LO};

/// The functions with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Silu,
    Gelu,
    Sigmoid,
}

impl Kernel {
    /// Applies the function to `ys` in place and returns true, or returns false (leaving
    /// `ys` as it is) on a CPU without AVX-512.
    pub fn apply_in_place(self, ys: &mut [f32]) -> bool {
        let (len, at) = (ys.len(), ys.as_mut_ptr());
        // SAFETY: `at` holds `len` floats, read and written in place.
        unsafe { self.apply_raw(at, at, len) }
    }

    /// `ys = f(xs)` (as long as `xs`), writing every element, and returns true; or returns
    /// false, writing nothing, on a CPU without AVX-512. One pass where a copy and then
    /// [`Self::apply_in_place`] would be two over memory.
    pub fn apply_into(self, xs: &[f32], ys: &mut [MaybeUninit<f32>]) -> bool {
        assert_eq!(xs.len(), ys.len(), "apply_into: lengths");
        // SAFETY: `xs` and `ys` hold `xs.len()` floats each, and do not overlap (a shared
        // and a unique borrow).
        unsafe { self.apply_raw(xs.as_ptr(), ys.as_mut_ptr().cast(), xs.len()) }
    }

    /// # Safety
    /// `xs` must be readable and `ys` writable for `len` floats; they may be the same.
    unsafe fn apply_raw(self, xs: *const f32, ys: *mut f32, len: usize) -> bool {
        #[target_feature(enable = "avx512f")]
        unsafe fn on_avx512(xs: *const f32, ys: *mut f32, len: usize, kernel: Kernel) {
            // SAFETY: the caller's condition.
            unsafe { map(xs, ys, len, |x| kernel.apply16(x)) };
        }
        if !is_x86_feature_detected!("avx512f") {
            return false;
        }
        // SAFETY: the CPU has AVX-512F; the caller's condition on the pointers.
        unsafe { on_avx512(xs, ys, len, self) };
        true
    }

    /// The function of 16 floats in a register: what a convolution applies to a tile's
    /// sums before it stores them.
    ///
    /// # Safety
    /// The CPU must have AVX-512F (a caller compiled for it, as the convolution's store is).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn apply16(self, x: __m512) -> __m512 {
        match self {
            Kernel::Silu => silu16(x),
            Kernel::Gelu => gelu16(x),
            Kernel::Sigmoid => sigmoid16(x),
        }
    }
}

/// `ys[i] = f(xs[i])` for `len` floats, 16 at a time, the remainder by masked loads and
/// stores. Only inlined into functions compiled for AVX-512F, which `f` is too.
///
/// # Safety
/// `xs` must be readable and `ys` writable for `len` floats; they may be the same (each
/// vector is read before it is written).
#[inline(always)]
unsafe fn map(xs: *const f32, ys: *mut f32, len: usize, f: impl Fn(__m512) -> __m512) {
    let whole = len / 16 * 16;
    for at in (0..whole).step_by(16) {
        // SAFETY: floats `at..at + 16` lie inside both (the caller's condition).
        unsafe { _mm512_storeu_ps(ys.add(at), f(_mm512_loadu_ps(xs.add(at)))) };
    }
    if whole < len {
        let lanes = ((1u32 << (len - whole)) - 1) as u16;
        // SAFETY: the masked load and store touch only the last `len - whole` floats.
        unsafe {
            let y = f(_mm512_maskz_loadu_ps(lanes, xs.add(whole)));
            _mm512_mask_storeu_ps(ys.add(whole), lanes, y);
        }
    }
}

/// `c[0] + c[1] x + c[2] x² + ...` by Horner's rule with fused multiply-adds.
#[inline]
#[target_feature(enable = "avx512f")]
fn polynomial16<const N: usize>(x: __m512, c: [f32; N]) -> __m512 {
    let mut acc = _mm512_set1_ps(c[N - 1]);
    for &ci in c[..N - 1].iter().rev() {
        acc = _mm512_fmadd_ps(acc, x, _mm512_set1_ps(ci));
    }
    acc
}

/// e^z for z in [−87, 88] (a normal result), within 2 ulp.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(z: __m512) -> __m512 {
    // z = n ln 2 + r, |r| <= ln 2 / 2; ln 2 in two parts so that n · LN2_HI is exact.
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(z, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), z);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    // e^r = 1 + r + r² p(r).
    let em1 = _mm512_fmadd_ps(_mm512_mul_ps(r, r), polynomial16(r, EXP_P), r);
    _mm512_scalef_ps(_mm512_add_ps(em1, _mm512_set1_ps(1.0)), n)
}

/// x · σ(x) of 16 floats.
#[inline]
#[target_feature(enable = "avx512f")]
fn silu16(x: __m512) -> __m512 {
    _mm512_mul_ps(x, sigmoid16(x))
}

/// σ(x) of 16 floats. With t = e^−|x| in (0, 1]: σ(|x|) = 1 / (1 + t) and
/// σ(−|x|) = t / (1 + t), so the reciprocal's argument stays in (1, 2] whatever x; it is
/// the 14-bit estimate plus one Newton step.
#[inline]
#[target_feature(enable = "avx512f")]
fn sigmoid16(x: __m512) -> __m512 {
    // z = −|x| (the sign bit set), held at −87 (e^z stays a normal float); NaN stays NaN
    // (max returns its second operand when either is NaN), and so does every step after.
    let minus_abs = _mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let z = _mm512_max_ps(_mm512_set1_ps(-87.0), _mm512_castsi512_ps(minus_abs));
    let t = exp16(z);
    let one = _mm512_set1_ps(1.0);
    // 1 / (1 + t) for 1 + t in (1, 2]: the estimate's error squared by one Newton step.
    let d = _mm512_add_ps(one, t);
    let e = _mm512_rcp14_ps(d);
    let e = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, e, one), e, e);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(0.0));
    _mm512_mask_blend_ps(negative, e, _mm512_mul_ps(t, e))
}

/// x · Φ(x) = x · (1 + erf(u)) / 2 with u = x / √2, of 16 floats: erf's two halves as the
/// portable [`super::fastmath::erf`]; above the split, Φ = 1 − e^−q / 2 for x > 0 and
/// e^−q / 2 for x < 0, which keeps the relative error small where Φ is small.
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu16(x: __m512) -> __m512 {
    let half = _mm512_set1_ps(0.5);
    let u = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let a = _mm512_abs_ps(u);
    // Near zero: erf(u) = u + u h(u²); Φ = (1 + erf) / 2.
    let erf_near = _mm512_fmadd_ps(u, polynomial16(_mm512_mul_ps(u, u), ERF_NEAR_H), u);
    let phi_near = _mm512_fmadd_ps(erf_near, half, half);
    // The tail: q(|u|) fitted up to |u| = 4 (NaN becomes 4 here, and NaN again in the
    // product with x); beyond, Φ is 1 or 0 in f32 to within |x| · 10⁻⁸.
    let q = polynomial16(_mm512_min_ps(a, _mm512_set1_ps(4.0)), ERF_TAIL_Q);
    let half_erfc = _mm512_mul_ps(half, exp16(_mm512_sub_ps(_mm512_set1_ps(0.0), q)));
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(0.0));
    let beyond = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, _mm512_set1_ps(4.0));
    let phi_negative = _mm512_mask_blend_ps(beyond, half_erfc, _mm512_set1_ps(0.0));
    let phi_tail = _mm512_mask_blend_ps(
        positive,
        phi_negative,
        _mm512_sub_ps(_mm512_set1_ps(1.0), half_erfc),
    );
    let near = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_set1_ps(ERF_SPLIT));
    _mm512_mul_ps(x, _mm512_mask_blend_ps(near, phi_tail, phi_near))
}

#[cfg(test)]
mod tests {
    use super::Kernel;

    fn silu_in_place(ys: &mut [f32]) -> bool {
        Kernel::Silu.apply_in_place(ys)
    }

    fn gelu_in_place(ys: &mut [f32]) -> bool {
        Kernel::Gelu.apply_in_place(ys)
    }

    fn sigmoid_in_place(ys: &mut [f32]) -> bool {
        Kernel::Sigmoid.apply_in_place(ys)
    }

    /// The f32 spacing (one ulp) at the f64 value `exact`.
    fn spacing(exact: f64) -> f64 {
        let rounded = (exact as f32).abs();
        (f32::from_bits(rounded.to_bits() + 1) - rounded) as f64
    }

    /// Distance from `y` to the f64 value `exact`, in ulp at `exact`.
    fn ulps(y: f32, exact: f64) -> f64 {
        (y as f64 - exact).abs() / spacing(exact)
    }

    /// Every 37th f32 from 0 to 2^64, both signs, plus `extra`.
    fn sweep(keep: impl Fn(f32) -> bool, extra: &[f32]) -> Vec<f32> {
        let mut xs: Vec<f32> = (0..0x5f80_0000u32)
            .step_by(37)
            .flat_map(|bits| [f32::from_bits(bits), -f32::from_bits(bits)])
            .filter(|&x| keep(x))
            .collect();
        xs.extend(extra);
        xs
    }

    fn exact_silu(x: f64) -> f64 {
        x / (1.0 + (-x).exp())
    }

    /// x Φ(x), with Φ(x) = erfc(−x / √2) / 2 (no cancellation for negative x).
    fn exact_gelu(x: f64) -> f64 {
        x * 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    /// The largest `error(x, y)` of `kernel` over `xs`, and where; None without AVX-512.
    fn worst_error(
        kernel: fn(&mut [f32]) -> bool,
        xs: Vec<f32>,
        error: impl Fn(f32, f32) -> f64,
    ) -> Option<(f64, f32)> {
        let mut ys = xs.clone();
        if !kernel(&mut ys) {
            eprintln!("no AVX-512 on this CPU: nothing to check");
            return None;
        }
        let worst = xs.iter().zip(&ys).fold((0.0, 0.0), |worst, (&x, &y)| {
            let e = error(x, y);
            if e > worst.0 {
                (e, x)
            } else {
                worst
            }
        });
        eprintln!("largest error: {} at x = {}", worst.0, worst.1);
        Some(worst)
    }

    #[test]
    fn sigmoid_is_within_3_ulp_of_the_exact_sigmoid_on_a_dense_sweep() {
        let xs = sweep(|x| x >= -87.0, &[0.0, -0.0, -87.0, 88.0, 1e-45, -1e-45]);
        let ulps_off = |x: f32, y| ulps(y, 1.0 / (1.0 + (-(x as f64)).exp()));
        if let Some((worst, at)) = worst_error(sigmoid_in_place, xs, ulps_off) {
            assert!(worst <= 3.0, "{worst} ulp at x = {at}");
        }
    }

    #[test]
    fn silu_is_within_4_ulp_of_the_exact_silu_on_a_dense_sweep() {
        let xs = sweep(|x| x >= -87.0, &[0.0, -0.0, -87.0, 88.0, 1e-45, -1e-45]);
        let ulps_off = |x: f32, y| ulps(y, exact_silu(x as f64));
        if let Some((worst, at)) = worst_error(silu_in_place, xs, ulps_off) {
            assert!(worst <= 4.0, "{worst} ulp at x = {at}");
        }
    }

    /// The module's bound on GELU's error: 2 ulp of the exact value plus |x| · 2⁻²⁵.
    fn gelu_bound(x: f64) -> f64 {
        2.0 * spacing(exact_gelu(x)) + x.abs() * 2f64.powi(-25)
    }

    #[test]
    fn gelu_is_within_2_ulp_plus_x_times_2_to_the_minus_25_of_the_exact_gelu() {
        let xs = sweep(
            |_| true,
            &[0.0, -0.0, 0.921_875, -5.656_854, -5.656_855, 1e-45],
        );
        let share_of_bound =
            |x: f32, y: f32| (y as f64 - exact_gelu(x as f64)).abs() / gelu_bound(x as f64);
        if let Some((worst, at)) = worst_error(gelu_in_place, xs, share_of_bound) {
            assert!(worst <= 1.0, "{worst} of the bound at x = {at}");
        }
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
        let mut ys = [
            f32::NAN,
            f32::INFINITY,
            -1000.0,
            1000.0,
            0.0,
            f32::NEG_INFINITY,
        ];
        sigmoid_in_place(&mut ys);
        assert!(ys[0].is_nan());
        assert!(ys[2] > 0.0 && ys[2] <= 1.7e-38, "{}", ys[2]);
        assert_eq!(
            [ys[1], ys[3], ys[4], ys[5]],
            [1.0, 1.0, 0.5, ys[2]],
            "σ(inf), σ(1000), σ(0), σ(−inf)"
        );
        let mut ys = [f32::NAN, f32::INFINITY, -1000.0, 1000.0, 0.0];
        gelu_in_place(&mut ys);
        assert!(ys[0].is_nan());
        assert_eq!(&ys[1..], &[f32::INFINITY, 0.0, 1000.0, 0.0]);
        // Every length up to three vectors: the masked remainder writes only its lanes.
        for len in 0..48 {
            type Kernel = fn(&mut [f32]) -> bool;
            type WithinBound = fn(f64, f32) -> bool;
            let kernels: [(Kernel, WithinBound); 3] = [
                (silu_in_place, |x, y| ulps(y, exact_silu(x)) <= 4.0),
                (sigmoid_in_place, |x, y| {
                    ulps(y, 1.0 / (1.0 + (-x).exp())) <= 3.0
                }),
                (gelu_in_place, |x, y| {
                    (y as f64 - exact_gelu(x)).abs() <= gelu_bound(x)
                }),
            ];
            for (kernel, within_bound) in kernels {
                let mut ys: Vec<f32> = (0..len + 1).map(|i| i as f32 / 4.0 - 5.0).collect();
                kernel(&mut ys[..len]);
                for (i, &y) in ys[..len].iter().enumerate() {
                    let x = i as f64 / 4.0 - 5.0;
                    assert!(within_bound(x, y), "len {len}, x {x}, y {y}");
                }
                assert_eq!(ys[len], len as f32 / 4.0 - 5.0, "len {len}: past the slice");
            }
        }
    }

    /// Into another slice: the in-place results bit for bit, every element written and
    /// nothing past the end (every length up to three vectors).
    #[test]
    fn into_another_slice_equals_in_place() {
        use std::mem::MaybeUninit;
        for kernel in [Kernel::Silu, Kernel::Gelu, Kernel::Sigmoid] {
            for len in 0..48 {
                let xs: Vec<f32> = (0..len).map(|i| i as f32 * 0.37 - 7.0).collect();
                let mut ys = vec![MaybeUninit::new(f32::NAN); len + 1];
                if !kernel.apply_into(&xs, &mut ys[..len]) {
                    return;
                }
                let mut expected = xs.clone();
                kernel.apply_in_place(&mut expected);
                // SAFETY: every element was initialised above.
                let ys: Vec<u32> = ys
                    .iter()
                    .map(|y| unsafe { y.assume_init() }.to_bits())
                    .collect();
                let expected: Vec<u32> = expected.iter().map(|y| y.to_bits()).collect();
                assert_eq!(ys[..len], expected, "{kernel:?}, len {len}");
                assert_eq!(
                    ys[len],
                    f32::NAN.to_bits(),
                    "{kernel:?}, len {len}: past the end"
                );
            }
        }
    }
}
