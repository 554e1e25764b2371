//! Vectorisable f32 `exp`, `exp_m1`, `ln_1p`, `tanh` and `erf` for the activation kernels.
//!
//! libm's are scalar calls with branches, so a loop that calls them stays scalar. These
//! are straight-line code (range reduction, a polynomial, selects instead of jumps), so
//! LLVM vectorises every kernel loop they are inlined into. They use plain multiplies and
//! adds, never FMA, so every build and CPU computes the same bits. Each is within 2 ulp of
//! the exact value (1.5 for `exp`, `ln_1p` and `erf`), checked on dense sweeps of f32 in
//! the tests below.

// The polynomial coefficients are written as published (Cephes), digits beyond f32 included,
// so that they can be checked against the source.
#![allow(clippy::excessive_precision)]

/// ln 2 = `LN2_HI + LN2_LO`, with `LN2_HI` short enough that `n * LN2_HI` is exact.
pub(super) const LN2_HI: f32 = 0.693_359_375;
pub(super) const LN2_LO: f32 = -2.121_944_4e-4;

/// Cephes' expf: e^r = 1 + r + r² p(r) for |r| <= ln 2 / 2; p's coefficients, lowest
/// order first (as every table here).
pub(super) const EXP_P: [f32; 6] = [
    5.000_000_1e-1,
    1.666_666_5e-1,
    4.166_579_6e-2,
    8.333_452e-3,
    1.398_199_9e-3,
    1.987_569_1e-4,
];

/// erf(x) = x + x h(x²) below `ERF_SPLIT`, 1 − e^(−q(|x|)) from there to 4 (beyond, erf
/// rounds to 1): h and q, Chebyshev fits (mpmath `chebyfit`) on [0, ERF_SPLIT²] and
/// [ERF_SPLIT, 4].
pub(super) const ERF_SPLIT: f32 = 0.921_875;
pub(super) const ERF_NEAR_H: [f32; 6] = [
    1.283_791_5e-1,
    -3.761_250_1e-1,
    1.128_188_2e-1,
    -2.676_875_7e-2,
    4.996_020_1e-3,
    -6.004_081e-4,
];
pub(super) const ERF_TAIL_Q: [f32; 9] = [
    -3.205_816_4e-4,
    1.130_238_1,
    6.318_139e-1,
    1.100_949_4e-1,
    -2.643_121_2e-2,
    4.763_623e-3,
    -5.977_498_4e-4,
    4.617_827_6e-5,
    -1.643_571e-6,
];

/// `v + ROUND` rounds `v` to an integer (|v| < 2^22) and leaves it in the low mantissa
/// bits, from which it is read without a float-to-int conversion.
const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23

/// `c[0] + c[1] x + c[2] x^2 + ...` as `even(x^2) + x odd(x^2)`, each half by Horner's
/// rule. The two chains of dependent multiply-adds run side by side, each half as long
/// as one Horner chain: in a vectorised loop of long formulas the latency of that chain,
/// not the arithmetic, is the limit, as the out-of-order window holds few iterations.
#[inline(always)]
fn polynomial<const N: usize>(x: f32, coefficients: [f32; N]) -> f32 {
    let x2 = x * x;
    // Horner over coefficients first, first + 2, ... (the last index < N with that parity).
    let horner = |first: usize| {
        let count = (N - first).div_ceil(2);
        let mut acc = coefficients[first + 2 * (count - 1)];
        for i in (0..count - 1).rev() {
            acc = acc * x2 + coefficients[first + 2 * i];
        }
        acc
    };
    horner(0) + x * horner(1)
}

/// `lo` below it, `hi` above it, `x` otherwise, NaN included (which `f32::clamp` keeps
/// too, but through a branch).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi {
        hi
    } else {
        x
    }
}

/// `2^n` for `n` in [-126, 127], built from its exponent bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// Splits `x = n ln 2 + r` with |r| <= ln 2 / 2 and returns `(n, e^r - 1)`.
#[inline(always)]
fn exp_reduced(x: f32) -> (i32, f32) {
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let n_float = shifted - ROUND;
    let r = (x - n_float * LN2_HI) - n_float * LN2_LO;
    // Cephes' expf: e^r = 1 + r + r^2 p(r).
    let p = polynomial(r, EXP_P);
    (n, r * r * p + r)
}

/// `e^x`, within 1.5 ulp.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Beyond these the result is inf or rounds to 0 (and n stays in [-150, 128]).
    let (n, em1) = exp_reduced(clamp(x, -104.0, 89.0));
    // 2^n in two factors, so that subnormal results and 2^128 * (1 + em1) < f32::MAX come
    // out right; the first product is always a normal number.
    let half = n >> 1;
    (1.0 + em1) * pow2(half) * pow2(n - half)
}

/// `e^x - 1`, within 2 ulp (so accurate near 0 too).
#[inline(always)]
pub fn exp_m1(x: f32) -> f32 {
    // Below -30 the result rounds to -1.
    let (n, em1) = exp_reduced(clamp(x, -30.0, 89.0));
    // e^x - 1 = 2 (2^(n-1) em1 + (2^(n-1) - 1/2)): the bracket's second term is exact,
    // and 2^(n-1) stays finite where e^x does.
    let half_scale = pow2(n - 1);
    2.0 * (half_scale * em1 + (half_scale - 0.5))
}

/// `ln(1 + x)`, within 1.5 ulp (so accurate near 0 too). The polynomial is Cephes' `logf`.
#[inline(always)]
pub fn ln_1p(x: f32) -> f32 {
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    let u = 1.0 + x;
    // u = m 2^k with m in [sqrt(1/2), sqrt(2)): shifting the bits by 1 - sqrt(1/2) moves
    // the lower bound of m to an exponent step.
    let shifted = u.to_bits().wrapping_add(1.0f32.to_bits() - SQRT_HALF_BITS);
    let k = (shifted >> 23) as i32 - 127;
    let m = f32::from_bits((shifted & 0x007f_ffff) + SQRT_HALF_BITS);
    // What rounding 1 + x lost, to first order in ln.
    let correction = (x - (u - 1.0)) / u;
    let f = m - 1.0;
    let f2 = f * f;
    // ln(1 + f) = f - f^2 / 2 + f^3 p(f).
    let p = polynomial(
        f,
        [
            3.333_333_1e-1,
            -2.499_999_4e-1,
            2.000_071_5e-1,
            -1.666_805_8e-1,
            1.424_932_3e-1,
            -1.242_014_1e-1,
            1.167_699_9e-1,
            -1.151_461e-1,
            7.037_683_6e-2,
        ],
    );
    let k = k as f32;
    let tail = f * f2 * p + k * LN2_LO - 0.5 * f2 + correction;
    let y = (f + tail) + k * LN2_HI;
    if x == f32::INFINITY || x == 0.0 {
        x // inf, and a zero of the right sign
    } else if x == -1.0 {
        f32::NEG_INFINITY
    } else if x < -1.0 {
        f32::NAN
    } else {
        y
    }
}

/// `tanh(x)` within 2 ulp: Cephes' odd polynomial below 0.625, `e / (e + 2)` with
/// `e = e^(2|x|) - 1` above.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let s = x * x;
    let p = polynomial(
        s,
        [
            -3.333_328_2e-1,
            1.333_144_2e-1,
            -5.373_971_6e-2,
            2.063_908_9e-2,
            -5.704_988_7e-3,
        ],
    );
    let near_zero = x + x * s * p;
    // tanh rounds to 1 beyond 9.1, and e would overflow beyond 44.
    let e = exp_m1(2.0 * clamp(x.abs(), 0.0, 10.0));
    let tail = (e / (e + 2.0)).copysign(x);
    if x.abs() < 0.625 {
        near_zero
    } else {
        tail
    }
}

/// `erf(x)` within 1.5 ulp: `x + x h(x^2)` below `ERF_SPLIT`, `1 - e^(-q(|x|))` above,
/// where `q` approximates `-ln(erfc)` (see [`ERF_TAIL_Q`]).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let s = x * x;
    let h = polynomial(s, ERF_NEAR_H);
    let near_zero = x + x * h;
    // erf rounds to 1 beyond 3.9.
    let t = clamp(x.abs(), 0.0, 4.0);
    let q = polynomial(t, ERF_TAIL_Q);
    let tail = (1.0 - exp(-q)).copysign(x);
    if x.abs() < ERF_SPLIT {
        near_zero
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |approx - exact| in units of the last place of `exact` as an f32.
    fn ulp_error(approx: f32, exact: f64) -> f64 {
        if exact.is_nan() || approx.is_nan() {
            return if exact.is_nan() && approx.is_nan() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        if (exact as f32).is_infinite() || approx.is_infinite() {
            return if approx == exact as f32 {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let exponent = exact.abs().log2().floor().max(-126.0);
        (approx as f64 - exact).abs() / 2f64.powf(exponent - 23.0)
    }

    /// Where results overflow, underflow or round to ±1, where the reductions and the
    /// branch-free halves switch over, and the extremes of f32.
    const EDGES: [f32; 22] = [
        88.722_83,
        88.722_84,
        88.0,
        89.0,
        -87.336_55,
        -103.972_08,
        -104.0,
        30.0,
        -30.0,
        17.4,
        9.1,
        3.92,
        0.921_875,
        0.625,
        0.346_573_6,
        -1.0,
        1e-38,
        1e-45,
        1e-30,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::EPSILON,
    ];

    /// 10^6 evenly spaced points over `[lo, hi]`, 10^6 more spaced evenly in magnitude
    /// from the smallest subnormal up to `max(|lo|, |hi|)` with both signs, the edges with
    /// both signs, the zeros, the infinities and NaN; all but NaN within `[lo, hi]`.
    fn sweep(lo: f32, hi: f32) -> Vec<f32> {
        const N: usize = 1_000_000;
        let linear = (0..=N).map(|i| lo + (hi - lo) * (i as f64 / N as f64) as f32);
        let top = (lo.abs().max(hi.abs()) as f64).log2();
        let bottom = (f32::from_bits(1) as f64).log2();
        let magnitudes =
            (0..=N).map(move |i| 2f64.powf(bottom + (top - bottom) * i as f64 / N as f64) as f32);
        let special = [0.0, f32::INFINITY];
        let signed = magnitudes.chain(EDGES).chain(special).flat_map(|m| [m, -m]);
        linear
            .chain(signed.filter(|v| (lo..=hi).contains(v)))
            .chain([f32::NAN])
            .collect()
    }

    /// The largest error of `fast` against `exact` over `inputs`, and where it occurs.
    fn max_ulp_error(inputs: &[f32], fast: fn(f32) -> f32, exact: fn(f64) -> f64) -> (f64, f32) {
        inputs.iter().fold((0.0, f32::NAN), |worst, &x| {
            let error = ulp_error(fast(x), exact(x as f64));
            if error > worst.0 {
                (error, x)
            } else {
                worst
            }
        })
    }

    fn check(
        name: &str,
        fast: fn(f32) -> f32,
        exact: fn(f64) -> f64,
        inputs: &[f32],
        max_ulp: f64,
    ) {
        let (error, at) = max_ulp_error(inputs, fast, exact);
        println!("{name}: max {error:.3} ulp at {at:e}");
        assert!(
            error <= max_ulp,
            "{name}: {error} ulp at x = {at:e} exceeds {max_ulp}"
        );
    }

    #[test]
    fn exp_is_within_its_bound() {
        check("exp", exp, f64::exp, &sweep(-110.0, 90.0), 1.5);
    }

    #[test]
    fn exp_m1_is_within_its_bound() {
        check("exp_m1", exp_m1, f64::exp_m1, &sweep(-40.0, 90.0), 2.0);
    }

    #[test]
    fn ln_1p_is_within_its_bound() {
        check("ln_1p", ln_1p, f64::ln_1p, &sweep(-1.5, 1e30), 1.5);
        check("ln_1p", ln_1p, f64::ln_1p, &sweep(-1.0, 10.0), 1.5);
    }

    #[test]
    fn tanh_is_within_its_bound() {
        check("tanh", tanh, f64::tanh, &sweep(-30.0, 30.0), 2.0);
    }

    #[test]
    fn erf_is_within_its_bound() {
        check("erf", erf, libm::erf, &sweep(-6.0, 6.0), 1.5);
    }

    /// `f` over `inputs` in a loop that [`widest_simd`](crate::act::kernels::widest_simd)
    /// vectorises, as in the kernels, must give the bits of one scalar call at a time.
    fn assert_vectorised_is_scalar(name: &str, inputs: &[f32], f: impl Fn(f32) -> f32 + Copy) {
        let mut vectorised = vec![0.0; inputs.len()];
        crate::ops::simd::widest_simd(
            #[inline(always)]
            || {
                for (y, &x) in vectorised.iter_mut().zip(inputs) {
                    *y = f(x);
                }
            },
        );
        let scalar: &dyn Fn(f32) -> f32 = std::hint::black_box(&f);
        for (&x, v) in inputs.iter().zip(vectorised) {
            let s = scalar(x);
            assert!(
                v.to_bits() == s.to_bits() || v.is_nan() && s.is_nan(),
                "{name}({x:e}): {v:e} vectorised, {s:e} scalar"
            );
        }
    }

    /// No FMA and no branches, so the vectorised kernels give the same bits on any CPU.
    #[test]
    fn vectorised_loops_give_the_bits_of_scalar_calls() {
        let inputs = sweep(-120.0, 120.0);
        assert_vectorised_is_scalar("exp", &inputs, exp);
        assert_vectorised_is_scalar("exp_m1", &inputs, exp_m1);
        assert_vectorised_is_scalar("ln_1p", &inputs, ln_1p);
        assert_vectorised_is_scalar("tanh", &inputs, tanh);
        assert_vectorised_is_scalar("erf", &inputs, erf);
    }
}
