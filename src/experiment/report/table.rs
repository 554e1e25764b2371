//! The statistics table: per activation its runs, best epochs, cost, and its difference
//! from the baseline: the paired t-test over the seeds both finished (Holm-adjusted across
//! the activations), with the exact Wilcoxon p beside it, and Welch's t-test of all
//! finished runs as the secondary test.

use crate::act::curves::short_name;
use crate::act::ActSpec;
use crate::experiment::record::{ActCost, EpochPoint, Experiment, RunRecord, RunStatus};
use crate::experiment::stats::{
    holm, paired, summarize, welch, wilcoxon_exact, Paired, Summary, Welch,
};

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

    /// (seed, value) of each finished run that has the value.
    pub(super) fn seeded(&self, value: RunValue) -> Vec<(u64, f64)> {
        self.runs
            .iter()
            .filter(|run| run.status == RunStatus::Finished)
            .filter_map(|run| Some((run.seed, value(run)?)))
            .collect()
    }

    /// A value of every finished run that has it.
    pub(super) fn values(&self, value: RunValue) -> Vec<f64> {
        self.seeded(value).into_iter().map(|(_, v)| v).collect()
    }

    /// INT8 mAP50-95 of the finished runs' best weights.
    pub(super) fn int8_map(&self) -> Summary {
        summarize(&self.values(int8_map))
    }

    /// How much mAP50-95 INT8 quantization lost, per finished run.
    pub(super) fn int8_drop(&self) -> Summary {
        summarize(&self.values(int8_drop))
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

/// A number of one run, when it has it.
pub(super) type RunValue = fn(&RunRecord) -> Option<f64>;

pub(super) fn best_map(run: &RunRecord) -> Option<f64> {
    run.best.map(|p| p.map)
}

pub(super) fn best_map50(run: &RunRecord) -> Option<f64> {
    run.best.map(|p| p.map50)
}

/// mAP50-95 of the best weights under simulated INT8 quantization.
pub(super) fn int8_map(run: &RunRecord) -> Option<f64> {
    run.int8.map(|p| p.map)
}

/// Float mAP50-95 minus INT8 mAP50-95 of the best weights.
pub(super) fn int8_drop(run: &RunRecord) -> Option<f64> {
    Some(run.best?.map - run.int8?.map)
}

/// One activation against the baseline.
pub(super) struct VsBaseline {
    pub(super) map: Option<Delta>,
    pub(super) map50: Option<Delta>,
    /// INT8 mAP50-95, and its drop from float.
    pub(super) int8_map: Option<Delta>,
    pub(super) int8_drop: Option<Delta>,
    /// Latency relative to the baseline's, in percent (+18 is 18% slower).
    pub(super) latency_pct: Option<f64>,
}

/// The difference of a metric's means in mAP points, and its tests.
pub(super) struct Delta {
    pub(super) points: f64,
    /// The test the verdict uses: paired when at least two seeds finished on both sides,
    /// else Welch's.
    pub(super) test: Option<Test>,
    /// Welch's t-test of all finished runs (the secondary column).
    pub(super) welch: Option<Welch>,
    /// The exact Wilcoxon signed-rank p of the paired differences (none with ties).
    pub(super) wilcoxon_p: Option<f64>,
}

/// The test behind a verdict.
#[derive(Debug, Clone, Copy)]
pub(super) struct Test {
    pub(super) kind: TestKind,
    /// The difference's 95% confidence interval, in mAP points.
    pub(super) ci95: (f64, f64),
    pub(super) p: f64,
    /// `p` adjusted by Holm across the activations compared with the baseline.
    pub(super) adjusted_p: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TestKind {
    /// Over this many seeds both sides finished.
    Paired(usize),
    Welch,
}

impl TestKind {
    pub(super) fn name(self) -> String {
        match self {
            TestKind::Paired(n) => format!("paired t-test over {n} seeds"),
            TestKind::Welch => "Welch's t-test".into(),
        }
    }

    /// For summary.csv.
    pub(super) fn id(self) -> &'static str {
        match self {
            TestKind::Paired(_) => "paired",
            TestKind::Welch => "welch",
        }
    }
}

impl Delta {
    /// `None` unless both sides have a finished run with the value `metric` reads.
    pub(super) fn new(row: &ActRow, baseline: &ActRow, metric: RunValue) -> Option<Self> {
        let (ours, theirs) = (row.seeded(metric), baseline.seeded(metric));
        if ours.is_empty() || theirs.is_empty() {
            return None;
        }
        let points = |values: &[(u64, f64)]| {
            values
                .iter()
                .map(|(_, value)| value * POINTS)
                .collect::<Vec<_>>()
        };
        let (values, base) = (points(&ours), points(&theirs));
        let (pairs_a, pairs_b): (Vec<f64>, Vec<f64>) = ours
            .iter()
            .filter_map(|(seed, value)| {
                let (_, base) = theirs.iter().find(|(s, _)| s == seed)?;
                Some((value * POINTS, base * POINTS))
            })
            .unzip();
        let welch = welch(&values, &base);
        let test = match paired(&pairs_a, &pairs_b) {
            Some(Paired { ci95, p, n, .. }) => Some(Test {
                kind: TestKind::Paired(n),
                ci95,
                p,
                adjusted_p: p,
            }),
            None => welch.map(|w| Test {
                kind: TestKind::Welch,
                ci95: w.ci95,
                p: w.p,
                adjusted_p: w.p,
            }),
        };
        Some(Delta {
            points: summarize(&values).mean - summarize(&base).mean,
            test,
            welch,
            wilcoxon_p: wilcoxon_exact(&pairs_a, &pairs_b),
        })
    }

    pub(super) fn significant(&self) -> bool {
        self.test.is_some_and(|test| test.adjusted_p < ALPHA)
    }
}

/// Holm's adjustment of the tests of one metric across the activations.
fn adjust(deltas: Vec<Option<&mut Delta>>) {
    let mut tests: Vec<&mut Test> = deltas
        .into_iter()
        .flatten()
        .filter_map(|delta| delta.test.as_mut())
        .collect();
    let adjusted = holm(&tests.iter().map(|t| Some(t.p)).collect::<Vec<_>>());
    for (test, p) in tests.iter_mut().zip(adjusted) {
        test.adjusted_p = p.unwrap_or(test.p);
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
                map: Delta::new(row, &baseline[0], best_map),
                map50: Delta::new(row, &baseline[0], best_map50),
                int8_map: Delta::new(row, &baseline[0], int8_map),
                int8_drop: Delta::new(row, &baseline[0], int8_drop),
                latency_pct: row
                    .latency_ms()
                    .zip(baseline[0].latency_ms())
                    .map(|(ms, base)| (ms / base - 1.0) * 100.0),
            });
        }
        // Each metric's tests are adjusted together, across the activations.
        let metrics: [fn(&mut VsBaseline) -> &mut Option<Delta>; 4] = [
            |v| &mut v.map,
            |v| &mut v.map50,
            |v| &mut v.int8_map,
            |v| &mut v.int8_drop,
        ];
        for metric in metrics {
            adjust(
                rows.iter_mut()
                    .map(|r| r.vs_baseline.as_mut().and_then(|v| metric(v).as_mut()))
                    .collect(),
            );
        }
        Table { rows }
    }

    pub(super) fn baseline(&self) -> &ActRow<'a> {
        &self.rows[0]
    }
}

// ---- verdict ----
