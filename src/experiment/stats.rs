//! Statistics for comparing activations: the mean and spread over seeds; the paired
//! t-test and the exact Wilcoxon signed-rank test of per-seed differences (runs of one seed
//! share initial weights, data order and augmentation); Welch's t-test for unpaired runs;
//! and Holm's adjustment of several activations' p-values against one baseline.

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

/// The paired t-test of per-seed differences a_i − b_i, as `scipy.stats.ttest_rel(a, b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// The mean difference.
    pub diff: f64,
    /// Its 95% confidence interval: diff ± t(0.975, n − 1) · sd / √n.
    pub ci95: (f64, f64),
    pub t: f64,
    pub df: f64,
    /// Two-sided.
    pub p: f64,
    /// Pairs.
    pub n: usize,
}

/// `None` with fewer than two pairs, unequal lengths or a value that is not finite. When
/// every difference is the same the test degenerates as [`welch`]'s does for constant
/// samples.
pub fn paired(a: &[f64], b: &[f64]) -> Option<Paired> {
    if a.len() != b.len() || a.len() < 2 || !a.iter().chain(b).all(|x| x.is_finite()) {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let s = summarize(&d);
    let n = d.len();
    let se = s.std? / (n as f64).sqrt();
    if se == 0.0 {
        let w = constant_samples(s.mean, n - 1);
        return Some(Paired {
            diff: w.diff,
            ci95: w.ci95,
            t: w.t,
            df: w.df,
            p: w.p,
            n,
        });
    }
    let df = (n - 1) as f64;
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let t = s.mean / se;
    let half_width = dist.inverse_cdf(0.975) * se;
    Some(Paired {
        diff: s.mean,
        ci95: (s.mean - half_width, s.mean + half_width),
        t,
        df,
        p: 2.0 * dist.sf(t.abs()),
        n,
    })
}

/// The two-sided p of the exact Wilcoxon signed-rank test of the differences a_i − b_i, as
/// `scipy.stats.wilcoxon(a, b, method='exact')`: the statistic is the smaller of the
/// positive and negative rank sums, and p = min(1, 2·P(T ≤ t)) under the null, counted
/// over all 2^n sign patterns. `None` when a difference is zero or two tie (the exact
/// distribution assumes neither), with no pairs, or with more than 50 (scipy's bound).
pub fn wilcoxon_exact(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() || a.len() > 50 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    if d.iter().any(|x| !x.is_finite() || *x == 0.0) {
        return None;
    }
    let mut order: Vec<usize> = (0..d.len()).collect();
    order.sort_by(|&i, &j| d[i].abs().total_cmp(&d[j].abs()));
    if order.windows(2).any(|w| d[w[0]].abs() == d[w[1]].abs()) {
        return None;
    }
    let n = d.len();
    // Ranks 1..n by |d|; the statistic in whole ranks.
    let positive: usize = order
        .iter()
        .enumerate()
        .filter(|(_, &i)| d[i] > 0.0)
        .map(|(rank, _)| rank + 1)
        .sum();
    let total = n * (n + 1) / 2;
    let statistic = positive.min(total - positive);
    // counts[s]: sign patterns whose positive ranks sum to s.
    let mut counts = vec![0f64; total + 1];
    counts[0] = 1.0;
    for rank in 1..=n {
        for s in (rank..=total).rev() {
            counts[s] += counts[s - rank];
        }
    }
    let at_most: f64 = counts[..=statistic].iter().sum();
    Some((2.0 * at_most / 2f64.powi(n as i32)).min(1.0))
}

/// Holm's step-down adjustment of p-values tested together (family-wise error): sorted
/// ascending, the i-th (from 0) of m is multiplied by m − i, then made non-decreasing and
/// capped at 1. `None`s are not tests and stay `None`; m counts the others.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut tested: Vec<(usize, f64)> = p
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, (*p)?)))
        .collect();
    tested.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = tested.len();
    let mut adjusted = vec![None; p.len()];
    let mut running = 0f64;
    for (rank, (i, p)) in tested.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        adjusted[i] = Some(running);
    }
    adjusted
}
