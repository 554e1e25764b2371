//! Activation diagnostics: what each Conv's activation does to a probe batch. While
//! [`capture`] runs an inference forward pass, every activation applied after a Conv's
//! convolution and BatchNorm records its dead channels, saturated outputs, pre-activation
//! moments and learned parameters.
//!
//! The recorder is per thread, as PyTorch's forward hooks are per module: the forward
//! pass keeps its signature, and a pass that is not captured pays one flag check per Conv.

use std::cell::RefCell;

use candle_core::{DType, Result, Tensor};

use crate::ops::elementwise::Elementwise;
use crate::ops::pointwise::backward_f32;
use crate::ops::simd::lane_sums;
use crate::ops::storage::with_f32_data;

/// One Conv's activation on the probe batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvProbe {
    /// The Conv's parameter path without `.act` (`model.8.cv1`).
    pub module: String,
    /// The activation spec as written (`nn.ReLU()`).
    pub act: String,
    /// Output channels.
    pub channels: usize,
    /// Channels whose output is ≤ 0 (or at the activation's lower limit) everywhere.
    pub dead_fraction: f64,
    /// Outputs within [`SATURATION_MARGIN`] of a finite limit of the activation, where its
    /// slope is below [`SATURATION_SLOPE`].
    pub saturated_fraction: f64,
    pub preact_mean: f64,
    pub preact_std: f64,
    /// Learnable activations' parameters (PReLU's slope, ACON's p1, p2, β).
    pub learned: Vec<LearnedSummary>,
}

/// Mean, minimum and maximum of one learned quantity over its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedSummary {
    pub name: &'static str,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// An output this close to a limit (relative to the limit, at least absolute) is saturated…
pub const SATURATION_MARGIN: f64 = 0.01;
/// …when the activation's slope there is below this.
pub const SATURATION_SLOPE: f64 = 0.01;
/// Where the limits at ±∞ are read, and how flat the function must be there to have one.
const FAR: f64 = 1e4;
const FLAT: f64 = 1e-6;
/// A limit beyond this is treated as none (a linear tail evaluated far out).
const LIMIT_MAX: f64 = 1e3;

thread_local! {
    static RECORDS: RefCell<Option<Vec<ConvProbe>>> = const { RefCell::new(None) };
}

/// Runs `forward` with the recorder on, and returns its result with what every Conv's
/// activation recorded, in forward order.
pub fn capture<T>(forward: impl FnOnce() -> T) -> (T, Vec<ConvProbe>) {
    let outer = RECORDS.with(|r| r.replace(Some(Vec::new())));
    let value = forward();
    let records = RECORDS.with(|r| r.replace(outer)).unwrap_or_default();
    (value, records)
}

/// True inside [`capture`] on this thread.
pub fn is_capturing() -> bool {
    RECORDS.with(|r| r.borrow().is_some())
}

pub(crate) fn record(probe: ConvProbe) {
    RECORDS.with(|r| {
        if let Some(records) = r.borrow_mut().as_mut() {
            records.push(probe);
        }
    });
}

/// The finite limits of `f` at −∞ and +∞, where it is flat.
pub fn limits(f: &dyn Elementwise) -> (Option<f64>, Option<f64>) {
    let at = |x: f64| {
        let (value, slope) = (f.value(x), f.derivative(x));
        (value.is_finite() && value.abs() < LIMIT_MAX && slope.abs() < FLAT).then_some(value)
    };
    (at(-FAR), at(FAR))
}

/// The statistics of one activation: `z` its input (N, C, H, W), `y` its output (N, C', H,
/// W), `f` its elementwise function when it has one (for its limits and slope).
pub fn measure(
    module: &str,
    act: &str,
    f: Option<&dyn Elementwise>,
    z: &Tensor,
    y: &Tensor,
    learned: Vec<LearnedSummary>,
) -> Result<ConvProbe> {
    let (n, channels) = (y.dim(0)?, y.dim(1)?);
    let (lower, upper) = f.map_or((None, None), limits);
    // Borrowed, not copied: the probe runs every epoch and must stay cheap.
    let counts = with_f32_data("activation probe", [z, y], |[zs, ys]| {
        let plane = ys.len() / (n * channels).max(1);
        let dead_level = lower.map_or(0.0, |l| l.max(0.0)) as f32;
        let dead = (0..channels)
            .filter(|&c| {
                (0..n).all(|i| {
                    let start = (i * channels + c) * plane;
                    ys[start..start + plane].iter().all(|&v| v <= dead_level)
                })
            })
            .count();
        let saturated = match f {
            Some(f) if lower.is_some() || upper.is_some() => {
                // The bands around each limit, in f32 to compare with the outputs.
                let bands: Vec<(f32, f32)> = [lower, upper]
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        let margin = SATURATION_MARGIN * l.abs().max(1.0);
                        ((l - margin) as f32, (l + margin) as f32)
                    })
                    .collect();
                // Same element order: a pointwise activation keeps its input's shape. The
                // slope is taken only where the output is near a limit, in the kernels' SIMD.
                let near: Vec<f32> = zs
                    .iter()
                    .zip(ys)
                    .filter(|&(_, y)| bands.iter().any(|&(lo, hi)| (lo..=hi).contains(y)))
                    .map(|(&z, _)| z)
                    .collect();
                backward_f32(f, &near, &vec![1f32; near.len()])
                    .iter()
                    .filter(|s| (s.abs() as f64) < SATURATION_SLOPE)
                    .count()
            }
            _ => 0,
        };
        let [sum, squares] = lane_sums(zs, zs, |v, _| [v, v * v]);
        (dead, saturated, sum, squares, zs.len(), ys.len())
    })?;
    let (dead, saturated, sum, squares, inputs, outputs) = counts;
    let count = inputs.max(1) as f64;
    let mean = sum / count;
    let var = (squares / count - mean * mean).max(0.0);
    Ok(ConvProbe {
        module: module.to_string(),
        act: act.to_string(),
        channels,
        dead_fraction: dead as f64 / channels.max(1) as f64,
        saturated_fraction: saturated as f64 / outputs.max(1) as f64,
        preact_mean: mean,
        preact_std: var.sqrt(),
        learned,
    })
}

/// A learned tensor's summary.
pub fn summarize(name: &'static str, t: &Tensor) -> Result<LearnedSummary> {
    let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let n = values.len().max(1) as f64;
    Ok(LearnedSummary {
        name,
        mean: values.iter().sum::<f64>() / n,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}
