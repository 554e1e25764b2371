//! The mean and spread of a handful of numbers (the runs of one activation), for the
//! experiment's statistics and its charts alike.

/// The mean and sample standard deviation of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    /// NaN when there are no values.
    pub mean: f64,
    /// The sample standard deviation (divisor n − 1); `None` with fewer than two values.
    pub std: Option<f64>,
}

pub fn summarize(xs: &[f64]) -> Summary {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = (n >= 2).then(|| (sum_of_squares(xs, mean) / (n - 1) as f64).sqrt());
    Summary { n, mean, std }
}

fn sum_of_squares(xs: &[f64], mean: f64) -> f64 {
    xs.iter().map(|x| (x - mean).powi(2)).sum()
}
