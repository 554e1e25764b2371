//! The statistics table: per activation its runs, best epochs, cost, and its difference
//! from the baseline (Welch's t-test).

use crate::act::curves::short_name;
use crate::act::ActSpec;
use crate::experiment::record::{ActCost, EpochPoint, Experiment, RunRecord, RunStatus};
use crate::experiment::stats::{summarize, welch, Summary, Welch};

/// A difference is significant when p is below this.
pub(super) const ALPHA: f64 = 0.05;
/// Latencies within this many percent of the baseline's count as the same speed.
pub(super) const SAME_SPEED_PCT: f64 = 3.0;
/// mAP points per unit of mAP.
pub(super) const POINTS: f64 = 100.0;

/// What the report says about one activation.
pub(super) struct ActRow<'a> {
    /// As written in `--acts`.
    pub(super) act: &'a str,
    /// `None` when `act` does not parse (then it is shown as written).
    pub(super) spec: Option<ActSpec>,
    /// Short, for prose and plots: `SiLU`, `LeakyReLU(negative_slope=0.2)`.
    pub(super) name: String,
    /// Canonical, for the table: `nn.SiLU()`.
    pub(super) label: String,
    pub(super) runs: Vec<&'a RunRecord>,
    /// The best epoch of each finished run.
    pub(super) best: Vec<EpochPoint>,
    pub(super) cost: Option<&'a ActCost>,
    /// `None` for the baseline.
    pub(super) vs_baseline: Option<VsBaseline>,
}

impl<'a> ActRow<'a> {
    pub(super) fn new(exp: &'a Experiment, act: &'a str) -> Self {
        let spec = ActSpec::parse(act).ok();
        let cost = exp.costs.iter().find(|cost| cost.act == act);
        let runs: Vec<&RunRecord> = exp.runs.iter().filter(|run| run.act == act).collect();
        let best: Vec<EpochPoint> = runs
            .iter()
            .filter(|run| run.status == RunStatus::Finished)
            .filter_map(|run| run.best)
            .collect();
        ActRow {
            act,
            name: spec.as_ref().map_or_else(|| act.to_string(), short_name),
            label: cost
                .map(|cost| cost.label.clone())
                .or_else(|| spec.as_ref().map(ActSpec::to_string))
                .unwrap_or_else(|| act.to_string()),
            spec,
            runs,
            best,
            cost,
            vs_baseline: None,
        }
    }

    pub(super) fn map50_values(&self) -> Vec<f64> {
        self.best.iter().map(|point| point.map50).collect()
    }

    pub(super) fn map_values(&self) -> Vec<f64> {
        self.best.iter().map(|point| point.map).collect()
    }

    pub(super) fn map50(&self) -> Summary {
        summarize(&self.map50_values())
    }

    pub(super) fn map(&self) -> Summary {
        summarize(&self.map_values())
    }

    pub(super) fn count(&self, status: fn(&RunStatus) -> bool) -> usize {
        self.runs.iter().filter(|run| status(&run.status)).count()
    }

    pub(super) fn finished(&self) -> usize {
        self.best.len()
    }

    pub(super) fn running(&self) -> usize {
        self.count(|status| *status == RunStatus::Running)
    }

    pub(super) fn stopped(&self) -> usize {
        self.count(|status| {
            matches!(
                status,
                RunStatus::Diverged { .. } | RunStatus::Failed { .. }
            )
        })
    }

    /// The mean over the runs that timed any epoch, whatever became of them.
    pub(super) fn seconds_per_epoch(&self) -> Option<f64> {
        let seconds: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|run| run.seconds_per_epoch())
            .collect();
        (!seconds.is_empty()).then(|| summarize(&seconds).mean)
    }

    pub(super) fn best_epochs(&self, separator: &str) -> String {
        self.best
            .iter()
            .map(|point| point.epoch.to_string())
            .collect::<Vec<_>>()
            .join(separator)
    }

    pub(super) fn latency_ms(&self) -> Option<f64> {
        self.cost
            .map(|cost| cost.latency_ms)
            .filter(|ms| ms.is_finite() && *ms > 0.0)
    }
}

/// One activation against the baseline.
pub(super) struct VsBaseline {
    pub(super) map: Option<Delta>,
    pub(super) map50: Option<Delta>,
    /// Latency relative to the baseline's, in percent (+18 is 18% slower).
    pub(super) latency_pct: Option<f64>,
}

/// The difference of a metric's means in mAP points, and its test when both sides have at
/// least two finished runs.
pub(super) struct Delta {
    pub(super) points: f64,
    pub(super) test: Option<Welch>,
}

impl Delta {
    /// `None` unless both sides have a finished run.
    pub(super) fn new(values: &[f64], baseline: &[f64]) -> Option<Self> {
        if values.is_empty() || baseline.is_empty() {
            return None;
        }
        let in_points = |values: &[f64]| {
            values
                .iter()
                .map(|value| value * POINTS)
                .collect::<Vec<_>>()
        };
        let (values, baseline) = (in_points(values), in_points(baseline));
        let points = summarize(&values).mean - summarize(&baseline).mean;
        Some(Delta {
            points,
            test: welch(&values, &baseline),
        })
    }

    pub(super) fn significant(&self) -> bool {
        self.test.is_some_and(|test| test.p < ALPHA)
    }
}

/// Every activation's row, the baseline first.
pub(super) struct Table<'a> {
    pub(super) rows: Vec<ActRow<'a>>,
}

impl<'a> Table<'a> {
    /// `exp.acts` must not be empty.
    pub(super) fn new(exp: &'a Experiment) -> Self {
        let mut rows: Vec<ActRow> = exp.acts.iter().map(|act| ActRow::new(exp, act)).collect();
        let (baseline, others) = rows.split_at_mut(1);
        for row in others {
            row.vs_baseline = Some(VsBaseline {
                map: Delta::new(&row.map_values(), &baseline[0].map_values()),
                map50: Delta::new(&row.map50_values(), &baseline[0].map50_values()),
                latency_pct: row
                    .latency_ms()
                    .zip(baseline[0].latency_ms())
                    .map(|(ms, base)| (ms / base - 1.0) * 100.0),
            });
        }
        Table { rows }
    }

    pub(super) fn baseline(&self) -> &ActRow<'a> {
        &self.rows[0]
    }
}

// ---- verdict ----
