//! Simulated INT8 post-training quantization at every convolution, the scheme of
//! onnxruntime's `quantize_static` in QDQ format with per-channel weights:
//!
//! - the input: asymmetric uint8 per tensor, its range calibrated over sample images and
//!   widened to include 0, scale `(max − min) / 255`, zero point `round(−min / scale)`;
//! - the weights: symmetric int8 per output channel, scale `max |w| / 127`;
//! - the bias: int32 with scale `input scale · weight scale`;
//!
//! each rounded half to even and dequantized again, so the convolution itself runs in f32
//! on the values an integer engine would see. The convolution kernels call
//! [`conv_operands`]: the mode is per thread (calibrating or quantizing, or neither, which
//! costs one flag check), and convolutions are told apart by their order in the forward
//! pass, which a model repeats exactly from batch to batch.

use std::cell::RefCell;

use candle_core::{DType, Result, Tensor};

use super::storage::with_f32_data;

/// How an input's range is read from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen (onnxruntime's default, `MinMax`).
    MinMax,
    /// The `p`th and `(100 − p)`th percentiles of the values seen (outliers clipped).
    Percentile(f64),
}

/// Values kept per convolution and calibration batch for percentiles.
const SAMPLE_PER_BATCH: usize = 32_768;

/// What calibration saw at one convolution's input.
#[derive(Debug, Clone)]
pub struct Observed {
    pub min: f32,
    pub max: f32,
    /// An evenly strided sample of the values (for percentiles).
    sample: Vec<f32>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sample: Vec::new(),
        }
    }
}

impl Observed {
    fn add(&mut self, values: &[f32], keep_sample: bool) {
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        if keep_sample {
            let step = values.len().div_ceil(SAMPLE_PER_BATCH).max(1);
            self.sample.extend(values.iter().step_by(step));
        }
    }

    /// The calibrated range.
    pub fn range(&self, calibration: Calibration) -> (f32, f32) {
        match calibration {
            Calibration::MinMax => (self.min, self.max),
            Calibration::Percentile(p) => {
                let mut sorted = self.sample.clone();
                sorted.sort_by(f32::total_cmp);
                let at = |q: f64| {
                    let last = sorted.len().saturating_sub(1);
                    sorted
                        .get((q / 100.0 * last as f64).round() as usize)
                        .copied()
                };
                match (at(100.0 - p), at(p)) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => (self.min, self.max),
                }
            }
        }
    }
}

/// An input's uint8 quantization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uint8 {
    pub scale: f32,
    pub zero_point: u8,
}

impl Uint8 {
    /// onnxruntime's `compute_scale_zp` for uint8: the range widened to include 0; a range
    /// of one value gets scale 1 and zero point 0.
    pub fn from_range(min: f32, max: f32) -> Uint8 {
        let (min, max) = (min.min(0.0), max.max(0.0));
        if min == max || !min.is_finite() || !max.is_finite() {
            return Uint8 {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = ((max as f64 - min as f64) / 255.0) as f32;
        let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0) as u8;
        Uint8 { scale, zero_point }
    }

    fn fake(&self, v: f32) -> f32 {
        let zp = self.zero_point as f32;
        let q = ((v / self.scale).round_ties_even() + zp).clamp(0.0, 255.0);
        (q - zp) * self.scale
    }
}

enum Mode {
    Observe {
        seen: Vec<Observed>,
        next: usize,
        keep_sample: bool,
    },
    Quantize {
        inputs: Vec<Uint8>,
        weights: WeightCache,
        next: usize,
    },
}

thread_local! {
    static MODE: RefCell<Option<Mode>> = const { RefCell::new(None) };
}

/// Runs `forward` while every convolution adds its input to `seen` (one entry per
/// convolution, in forward order; grown on the first batch). With `keep_sample`, a sample of
/// the values is kept for percentiles.
pub fn observe<T>(seen: &mut Vec<Observed>, keep_sample: bool, forward: impl FnOnce() -> T) -> T {
    let mode = Mode::Observe {
        seen: std::mem::take(seen),
        next: 0,
        keep_sample,
    };
    let outer = MODE.with(|m| m.replace(Some(mode)));
    let value = forward();
    if let Some(Mode::Observe { seen: back, .. }) = MODE.with(|m| m.replace(outer)) {
        *seen = back;
    }
    value
}

/// Each convolution's quantized weights and their per-channel scales, made on first use:
/// a model's weights stay the same from batch to batch.
pub type WeightCache = Vec<Option<(Tensor, Vec<f32>)>>;

/// Runs `forward` with every convolution's operands quantized, the inputs with `inputs`
/// (one per convolution, in forward order), the weights through `weights`.
pub fn quantized<T>(inputs: &[Uint8], weights: &mut WeightCache, forward: impl FnOnce() -> T) -> T {
    let mode = Mode::Quantize {
        inputs: inputs.to_vec(),
        weights: std::mem::take(weights),
        next: 0,
    };
    let outer = MODE.with(|m| m.replace(Some(mode)));
    let value = forward();
    if let Some(Mode::Quantize { weights: back, .. }) = MODE.with(|m| m.replace(outer)) {
        *weights = back;
    }
    value
}

/// Whether convolutions on this thread see simulated INT8 (or record its calibration):
/// then each sees its whole input at once, as the scale is the whole input's.
pub fn active() -> bool {
    MODE.with(|m| m.borrow().is_some())
}

/// The input and weight a convolution without bias computes with: as given, observed, or
/// quantized, by this thread's mode.
pub fn conv_operands(x: &Tensor, weight: &Tensor) -> Result<(Tensor, Tensor)> {
    let (x, weight, _) = operands(x, weight)?;
    Ok((x, weight))
}

/// As [`conv_operands`], with the bias (quantized to int32 when the others are).
pub fn conv_operands_with_bias(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (x, weight, scales) = operands(x, weight)?;
    let bias = match scales {
        Some((input_scale, weight_scales)) => fake_int32_bias(bias, input_scale, &weight_scales)?,
        None => bias.clone(),
    };
    Ok((x, weight, bias))
}

/// The operands, and when quantized, the input's scale and the weights' per channel.
#[allow(clippy::type_complexity)]
fn operands(x: &Tensor, weight: &Tensor) -> Result<(Tensor, Tensor, Option<(f32, Vec<f32>)>)> {
    let unchanged = || Ok((x.clone(), weight.clone(), None));
    MODE.with(|m| {
        let mut mode = m.borrow_mut();
        match mode.as_mut() {
            None => unchanged(),
            Some(Mode::Observe {
                seen,
                next,
                keep_sample,
            }) => {
                if seen.len() <= *next {
                    seen.resize_with(*next + 1, Observed::default);
                }
                with_f32_data("INT8 calibration", [x], |[xs]| {
                    seen[*next].add(xs, *keep_sample)
                })?;
                *next += 1;
                unchanged()
            }
            Some(Mode::Quantize {
                inputs,
                weights,
                next,
            }) => {
                let Some(&input) = inputs.get(*next) else {
                    candle_core::bail!(
                        "INT8 simulation: convolution {} was not seen in calibration ({} were)",
                        *next + 1,
                        inputs.len()
                    );
                };
                if weights.len() <= *next {
                    weights.resize(*next + 1, None);
                }
                let (weight, scales) = match &weights[*next] {
                    Some(cached) => cached.clone(),
                    None => weights[*next]
                        .insert(fake_int8_per_channel(weight)?)
                        .clone(),
                };
                *next += 1;
                let xs = with_f32_data("INT8 simulation", [x], |[xs]| {
                    xs.iter().map(|&v| input.fake(v)).collect::<Vec<f32>>()
                })?;
                let x = Tensor::from_vec(xs, x.shape(), x.device())?;
                Ok((x, weight, Some((input.scale, scales))))
            }
        }
    })
}

fn f32_values(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Weights (out, …) quantized symmetric int8 per output channel (range ±127, as
/// onnxruntime's symmetric int8), and the scales.
pub fn fake_int8_per_channel(weight: &Tensor) -> Result<(Tensor, Vec<f32>)> {
    let channels = weight.dim(0)?;
    let mut values = f32_values(weight)?;
    let per = values.len() / channels.max(1);
    let mut scales = Vec::with_capacity(channels);
    for row in values.chunks_mut(per.max(1)) {
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if absmax > 0.0 {
            ((2.0 * absmax as f64) / 254.0) as f32
        } else {
            1.0
        };
        for v in row.iter_mut() {
            *v = (*v / scale).round_ties_even().clamp(-127.0, 127.0) * scale;
        }
        scales.push(scale);
    }
    Ok((
        Tensor::from_vec(values, weight.shape(), weight.device())?,
        scales,
    ))
}

/// The bias as int32 at scale `input scale · weight scale`, per channel.
fn fake_int32_bias(bias: &Tensor, input_scale: f32, weight_scales: &[f32]) -> Result<Tensor> {
    let values: Vec<f32> = f32_values(bias)?
        .iter()
        .zip(weight_scales)
        .map(|(&b, &w)| {
            let scale = input_scale * w;
            (b / scale).round_ties_even() * scale
        })
        .collect();
    Tensor::from_vec(values, bias.shape(), bias.device())
}
