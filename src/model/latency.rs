//! Inference latency of a model: what `compare` reports per activation and the
//! benchmarks print beside PyTorch's.

use std::time::Instant;

use candle_core::{Result, Tensor};

use super::build::Model;

/// Times of single inferences, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

/// Runs `f` once to warm up (allocations, caches), then `runs` timed times.
pub fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Latency> {
    f()?;
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(Latency {
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        runs: times.len(),
    })
}

/// Eval-mode inference (decode included, NMS not) of a batch of `batch` square images of
/// `imgsz`, on whatever the model is and wherever it is: fuse it first to measure a deployed
/// model. Each time ends when the device has finished.
pub fn inference_latency(
    model: &Model,
    batch: usize,
    imgsz: usize,
    runs: usize,
) -> Result<Latency> {
    let x = Tensor::rand(0f32, 1f32, (batch, 3, imgsz, imgsz), model.device())?;
    time_runs(runs, || {
        model.predict(&x)?;
        model.device().synchronize()
    })
}
