//! Statistics for comparing activations: the mean and spread over seeds, and Welch's
//! t-test for the difference of two activations' means.

use statrs::distribution::{ContinuousCDF, StudentsT};

pub use crate::util::stats::{summarize, Summary};

/// Welch's unequal-variance t-test of mean(a) − mean(b), as
/// `scipy.stats.ttest_ind(a, b, equal_var=False)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// mean(a) − mean(b).
    pub diff: f64,
    /// The 95% confidence interval of `diff`: diff ± t(0.975, df) · SE.
    pub ci95: (f64, f64),
    pub t: f64,
    /// The Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided.
    pub p: f64,
}

/// `None` when either sample has fewer than two values (no variance to test against) or
/// a value is not finite.
///
/// When both samples are constant the standard error is 0 and the test degenerates (scipy
/// returns NaN): then the interval is `(diff, diff)`, `t` is 0 for equal means and ±∞
/// otherwise, `p` is 1 for equal means and 0 otherwise, and `df` is n_a + n_b − 2.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 || !a.iter().chain(b).all(|x| x.is_finite()) {
        return None;
    }
    let (sa, sb) = (summarize(a), summarize(b));
    let diff = sa.mean - sb.mean;
    // Each mean's squared standard error.
    let va = sa.std?.powi(2) / sa.n as f64;
    let vb = sb.std?.powi(2) / sb.n as f64;
    let se = (va + vb).sqrt();
    if se == 0.0 {
        return Some(constant_samples(diff, sa.n + sb.n - 2));
    }
    let df = (va + vb).powi(2) / (va.powi(2) / (sa.n - 1) as f64 + vb.powi(2) / (sb.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let t = diff / se;
    let half_width = dist.inverse_cdf(0.975) * se;
    Some(Welch {
        diff,
        ci95: (diff - half_width, diff + half_width),
        t,
        df,
        p: 2.0 * dist.sf(t.abs()),
    })
}

/// The degenerate test of two constant samples (see [`welch`]).
fn constant_samples(diff: f64, df: usize) -> Welch {
    let (t, p) = if diff == 0.0 {
        (0.0, 1.0)
    } else {
        (diff.signum() * f64::INFINITY, 0.0)
    };
    Welch {
        diff,
        ci95: (diff, diff),
        t,
        df: df as f64,
        p,
    }
}
