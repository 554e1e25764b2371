//! What an experiment knows about its runs, kept as JSON in the experiment folder so a
//! re-run of `compare` continues where it stopped and the report can be rebuilt.

use serde::{Deserialize, Serialize};

/// Where one (activation, seed) run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    Finished,
    /// The loss became NaN or Inf; `message` is the trainer's, naming epoch and iteration.
    Diverged {
        message: String,
    },
    /// Any other error (a broken image mid-run, a full disk); the experiment goes on.
    Failed {
        message: String,
    },
    /// Stopped by `--screen` after `epochs` epochs: its activation's mean fitness over the
    /// seeds was not in the best third at that rung. Not a result of any test.
    Screened {
        epochs: usize,
    },
}

/// Validation metrics of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    pub epoch: usize,
    pub map50: f64,
    /// mAP@0.5:0.95.
    pub map: f64,
}

impl EpochPoint {
    /// ultralytics' fitness, by which best.pt is chosen: 0.1·mAP50 + 0.9·mAP50-95.
    pub fn fitness(&self) -> f64 {
        0.1 * self.map50 + 0.9 * self.map
    }
}

/// The run's folder name: the activation as written, made safe for a path, and the seed.
pub fn run_name(act: &str, seed: u64) -> String {
    let safe: String = act
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let safe = safe
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    format!("{safe}-seed{seed}")
}

/// One (activation, seed) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The activation as the user wrote it in `--acts` (e.g. `silu`, `nn.LeakyReLU(0.2)`).
    pub act: String,
    pub seed: u64,
    pub status: RunStatus,
    /// Wall seconds of each finished epoch (training and its validation).
    pub epoch_seconds: Vec<f64>,
    /// Every finished epoch's metrics, from the run's results.csv.
    pub curve: Vec<EpochPoint>,
    /// The epoch of best fitness (0.1·mAP50 + 0.9·mAP50-95) and its metrics: the numbers
    /// the report compares, as ultralytics reports best.pt.
    pub best: Option<EpochPoint>,
    /// The best weights under simulated INT8 post-training quantization (`val --int8`'s
    /// defaults); `epoch` is the best epoch.
    #[serde(default)]
    pub int8: Option<EpochPoint>,
}

impl RunRecord {
    pub fn new(act: &str, seed: u64) -> RunRecord {
        RunRecord {
            act: act.to_string(),
            seed,
            status: RunStatus::Pending,
            epoch_seconds: Vec::new(),
            curve: Vec::new(),
            best: None,
            int8: None,
        }
    }

    pub fn seconds_per_epoch(&self) -> Option<f64> {
        (!self.epoch_seconds.is_empty())
            .then(|| self.epoch_seconds.iter().sum::<f64>() / self.epoch_seconds.len() as f64)
    }
}

/// What depends on the activation but not on the seed: size and inference cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActCost {
    /// The activation as written in `--acts`.
    pub act: String,
    /// Its canonical form, `nn.SiLU()`, for tables.
    pub label: String,
    pub params: usize,
    pub gflops: f64,
    /// CPU inference, batch 1 at the training imgsz, fused model: median and the run count.
    pub latency_ms: f64,
    pub latency_runs: usize,
}

/// Everything the report is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub cfg: String,
    pub data: String,
    pub imgsz: usize,
    pub epochs: usize,
    pub batch: usize,
    /// The compared activations, the baseline first, as written in `--acts`.
    pub acts: Vec<String>,
    pub seeds: Vec<u64>,
    /// One entry per activation once measured (the same order as `acts`).
    pub costs: Vec<ActCost>,
    /// One per (activation, seed), activation-major.
    pub runs: Vec<RunRecord>,
}
