//! The report's statistics against scipy (tests/fixtures/welch.json, made by
//! tools/gen_welch_fixtures.py) and against a case worked by hand.
//!
//! Tolerances: t and df to 1e-9 relative (both are closed-form arithmetic); p and the
//! confidence interval to 1e-7 absolute (they go through the Student-t CDF and its inverse,
//! iterative in both statrs and scipy); means and standard deviations to 1e-12 relative.

use std::path::Path;

use actyolo::experiment::stats::{summarize, welch};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: std::collections::BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    a: Vec<f64>,
    b: Vec<f64>,
    mean_a: f64,
    std_a: f64,
    mean_b: f64,
    std_b: f64,
    diff: f64,
    t: f64,
    df: f64,
    p: f64,
    ci95: (f64, f64),
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/welch.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_relative(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    let error = (ours - theirs).abs() / theirs.abs().max(f64::MIN_POSITIVE);
    assert!(
        error <= tolerance,
        "{what}: {ours} vs scipy {theirs} (relative error {error:e})"
    );
}

fn assert_absolute(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    let error = (ours - theirs).abs();
    assert!(
        error <= tolerance,
        "{what}: {ours} vs scipy {theirs} (error {error:e})"
    );
}

#[test]
fn summaries_match_numpy() {
    for (name, case) in fixture().cases {
        for (sample, mean, std) in [
            (&case.a, case.mean_a, case.std_a),
            (&case.b, case.mean_b, case.std_b),
        ] {
            let summary = summarize(sample);
            assert_eq!(summary.n, sample.len(), "{name}");
            assert_relative(&format!("{name} mean"), summary.mean, mean, 1e-12);
            assert_relative(
                &format!("{name} std"),
                summary.std.expect("n >= 2"),
                std,
                1e-12,
            );
        }
    }
}

#[test]
fn welch_matches_scipy() {
    let cases = fixture().cases;
    assert!(cases.len() >= 5, "the fixture lost cases");
    for (name, case) in cases {
        let ours = welch(&case.a, &case.b).unwrap_or_else(|| panic!("{name}: no test"));
        assert_relative(&format!("{name} diff"), ours.diff, case.diff, 1e-12);
        assert_relative(&format!("{name} t"), ours.t, case.t, 1e-9);
        assert_relative(&format!("{name} df"), ours.df, case.df, 1e-9);
        assert_absolute(&format!("{name} p"), ours.p, case.p, 1e-7);
        assert_absolute(&format!("{name} ci low"), ours.ci95.0, case.ci95.0, 1e-7);
        assert_absolute(&format!("{name} ci high"), ours.ci95.1, case.ci95.1, 1e-7);
    }
}

/// a = [1, 2, 3], b = [4, 5, 6]: both means' variances are 1/3 (sample variance 1 over
/// n = 3), so diff = 2 − 5 = −3, SE = √(1/3 + 1/3) = √(2/3), t = −3/√(2/3) = −3.674…, and
/// df = (2/3)² / ((1/3)²/2 + (1/3)²/2) = (4/9) / (1/9) = 4.
/// With 4 degrees of freedom the t CDF has a closed form:
/// F(t) = 1/2 + (3/8)·u·(1 − t²/(12·(1 + t²/4))) with u = t/√(1 + t²/4), and p = 2·F(t)
/// for negative t. The 97.5% quantile of t(4) is 2.7764451051977934 (tables; scipy).
#[test]
fn welch_worked_by_hand() {
    let result = welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).expect("three values each");
    let se = (2.0_f64 / 3.0).sqrt();
    let t = -3.0 / se;
    let u = t / (1.0 + t * t / 4.0).sqrt();
    let p = 2.0 * (0.5 + 3.0 / 8.0 * u * (1.0 - t * t / (12.0 * (1.0 + t * t / 4.0))));
    assert_eq!(result.diff, -3.0);
    assert!(
        (result.t - t).abs() < 1e-12 && (t + 3.674_234_614_174_767).abs() < 1e-12,
        "t = {}",
        result.t
    );
    assert!((result.df - 4.0).abs() < 1e-12, "df = {}", result.df);
    assert!(
        (result.p - p).abs() < 1e-9 && (p - 0.021_311_641_128_756_713).abs() < 1e-12,
        "p = {}",
        result.p
    );
    let half_width = 2.776_445_105_197_793_4 * se;
    assert!(
        (result.ci95.0 - (-3.0 - half_width)).abs() < 1e-9,
        "ci {:?}",
        result.ci95
    );
    assert!(
        (result.ci95.1 - (-3.0 + half_width)).abs() < 1e-9,
        "ci {:?}",
        result.ci95
    );
}

#[test]
fn fewer_than_two_values_give_no_test_and_no_std() {
    assert!(welch(&[0.4], &[0.3, 0.35]).is_none());
    assert!(welch(&[0.4, 0.41], &[0.3]).is_none());
    assert!(welch(&[], &[]).is_none());
    let one = summarize(&[0.42]);
    assert_eq!((one.n, one.mean, one.std), (1, 0.42, None));
    let none = summarize(&[]);
    assert_eq!((none.n, none.std), (0, None));
    assert!(none.mean.is_nan());
}

#[test]
fn non_finite_values_give_no_test() {
    assert!(welch(&[0.4, f64::NAN], &[0.3, 0.35]).is_none());
    assert!(welch(&[0.4, 0.41], &[0.3, f64::INFINITY]).is_none());
}

/// Both samples constant: SE = 0, so the documented degenerate result instead of scipy's NaN.
#[test]
fn zero_variance_samples() {
    let different = welch(&[0.5, 0.5, 0.5], &[0.4, 0.4]).expect("n >= 2");
    assert!((different.diff - 0.1).abs() < 1e-15);
    assert_eq!(different.ci95, (different.diff, different.diff));
    assert_eq!(
        (different.t, different.p, different.df),
        (f64::INFINITY, 0.0, 3.0)
    );
    let lower = welch(&[0.4, 0.4], &[0.5, 0.5]).expect("n >= 2");
    assert_eq!((lower.t, lower.p), (f64::NEG_INFINITY, 0.0));
    let equal = welch(&[0.5, 0.5], &[0.5, 0.5]).expect("n >= 2");
    assert_eq!(
        (equal.diff, equal.ci95, equal.t, equal.p, equal.df),
        (0.0, (0.0, 0.0), 0.0, 1.0, 2.0)
    );
}

/// One constant sample against a varying one is an ordinary test: df = n_b − 1.
#[test]
fn one_constant_sample() {
    let result = welch(&[0.5, 0.5, 0.5], &[0.4, 0.45, 0.5]).expect("n >= 2");
    assert!((result.df - 2.0).abs() < 1e-12, "df = {}", result.df);
    assert!(result.p > 0.0 && result.p < 1.0);
}

/// tests/fixtures/paired.json, made by tools/gen_paired_fixtures.py (scipy's ttest_rel and
/// exact wilcoxon, statsmodels' Holm). Tolerances: t and df 1e-9 relative, p and the CI
/// 1e-7 absolute (as for Welch); the exact Wilcoxon p and Holm's adjusted p 1e-12 (counts
/// and products).
#[derive(Deserialize)]
struct PairedFixture {
    paired: std::collections::BTreeMap<String, PairedCase>,
    holm: std::collections::BTreeMap<String, HolmCase>,
}

#[derive(Deserialize)]
struct PairedCase {
    a: Vec<f64>,
    b: Vec<f64>,
    diff: f64,
    ci95: (f64, f64),
    t: f64,
    df: f64,
    p: f64,
    wilcoxon_p: f64,
}

#[derive(Deserialize)]
struct HolmCase {
    p: Vec<f64>,
    adjusted: Vec<f64>,
}

fn paired_fixture() -> PairedFixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paired.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn paired_t_test_and_exact_wilcoxon_equal_scipy() {
    use actyolo::experiment::stats::{paired, wilcoxon_exact};
    for (name, case) in paired_fixture().paired {
        let ours = paired(&case.a, &case.b).unwrap();
        assert_relative(&format!("{name} t"), ours.t, case.t, 1e-9);
        assert_relative(&format!("{name} df"), ours.df, case.df, 1e-9);
        assert_relative(&format!("{name} diff"), ours.diff, case.diff, 1e-12);
        assert!(
            (ours.p - case.p).abs() <= 1e-7,
            "{name} p: {} vs {}",
            ours.p,
            case.p
        );
        assert!((ours.ci95.0 - case.ci95.0).abs() <= 1e-7, "{name} ci low");
        assert!((ours.ci95.1 - case.ci95.1).abs() <= 1e-7, "{name} ci high");
        let w = wilcoxon_exact(&case.a, &case.b).unwrap();
        assert!(
            (w - case.wilcoxon_p).abs() <= 1e-12,
            "{name} wilcoxon: {w} vs {}",
            case.wilcoxon_p
        );
    }
    // Zero and tied differences have no exact null distribution; unequal lengths no pairs.
    assert!(wilcoxon_exact(&[1.0, 2.0], &[1.0, 1.0]).is_none());
    assert!(wilcoxon_exact(&[2.0, 3.0], &[1.0, 2.0]).is_none());
    assert!(paired(&[1.0, 2.0], &[1.0]).is_none());
}

#[test]
fn holm_adjustment_equals_statsmodels() {
    use actyolo::experiment::stats::holm;
    for (name, case) in paired_fixture().holm {
        let ours = holm(&case.p.iter().map(|&p| Some(p)).collect::<Vec<_>>());
        for (o, t) in ours.iter().zip(&case.adjusted) {
            assert!(
                (o.unwrap() - t).abs() <= 1e-12,
                "{name}: {ours:?} vs {:?}",
                case.adjusted
            );
        }
    }
    // An activation without a test is left out of the family.
    assert_eq!(
        holm(&[Some(0.01), None, Some(0.04)]),
        [Some(0.02), None, Some(0.04)]
    );
}
