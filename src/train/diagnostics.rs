//! A run's activation diagnostics, one block of rows per epoch in `diagnostics.csv`: for
//! every Conv, its dead channels, saturated outputs and pre-activation moments on a fixed
//! probe batch of validation images (the EMA model in inference, so epochs and activations
//! compare), the mean norm of its weights' gradient over the epoch's steps, and what a
//! learnable activation has learned.
//!
//! The file is tidy: `epoch,layer,module,quantity,value,activation`, the activation last
//! because its spec may hold commas. Each epoch also records what the diagnostics cost.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

use crate::act::probe::{self, ConvProbe};
use crate::model::build::Model;
use crate::ops::portable;
use crate::ops::simd::lane_sums;
use crate::ops::storage::with_f32_data;
use crate::util::format::format_general;
use crate::util::fs::{write_atomic, FileError};

pub const DIAGNOSTICS_FILE: &str = "diagnostics.csv";
pub const HEADER: &str = "epoch,layer,module,quantity,value,activation";
/// Validation images in the probe batch.
pub const PROBE_IMAGES: usize = 8;
/// The module name of the rows about the run itself (the diagnostics' cost).
pub const RUN_ROW: &str = "run";

/// Sums of each Conv weight's gradient norm over an epoch's steps.
pub struct GradNorms {
    /// (module, weight) of every Conv: parameters named `<module>.conv.weight`, outside
    /// activations (FReLU's funnel has its own).
    weights: Vec<(String, Var)>,
    sums: Vec<f64>,
    steps: usize,
    /// Time spent computing the norms, part of the diagnostics' cost.
    spent: Duration,
}

impl GradNorms {
    pub fn new<'a>(params: impl Iterator<Item = &'a (String, Var)>) -> GradNorms {
        let weights: Vec<(String, Var)> = params
            .filter(|(name, _)| !name.contains(".act."))
            .filter_map(|(name, var)| {
                let module = name.strip_suffix(".conv.weight")?;
                Some((module.to_string(), var.clone()))
            })
            .collect();
        GradNorms {
            sums: vec![0.0; weights.len()],
            weights,
            steps: 0,
            spent: Duration::ZERO,
        }
    }

    /// Adds one backward pass's norms (a frozen weight has no gradient and adds nothing).
    pub fn add(&mut self, grads: &GradStore) -> Result<()> {
        let started = Instant::now();
        let on_gpu = self
            .weights
            .first()
            .is_some_and(|(_, v)| portable::wanted(v.device()));
        if !on_gpu {
            for ((_, var), sum) in self.weights.iter().zip(&mut self.sums) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    let [squares] = with_f32_data("gradient norm", [g], |[data]| {
                        lane_sums(data, data, |v, _| [v * v])
                    })?;
                    *sum += squares.sqrt();
                }
            }
        } else {
            // On a GPU: the sums of squares there, read back in one copy.
            let mut parts = Vec::new();
            let mut slots = Vec::new();
            for (i, (_, var)) in self.weights.iter().enumerate() {
                if let Some(g) = grads.get(var.as_tensor()) {
                    parts.push(g.to_dtype(DType::F64)?.sqr()?.sum_all()?);
                    slots.push(i);
                }
            }
            if !parts.is_empty() {
                let squares = Tensor::stack(&parts, 0)?.to_vec1::<f64>()?;
                for (i, squares) in slots.into_iter().zip(squares) {
                    self.sums[i] += squares.sqrt();
                }
            }
        }
        self.steps += 1;
        self.spent += started.elapsed();
        Ok(())
    }

    /// The mean norm per module since the last call, and the time their sums took; starts
    /// the next epoch's sums.
    pub fn take(&mut self) -> (BTreeMap<String, f64>, Duration) {
        let steps = self.steps.max(1) as f64;
        let means = self
            .weights
            .iter()
            .zip(&self.sums)
            .map(|((module, _), sum)| (module.clone(), sum / steps))
            .collect();
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.steps = 0;
        (means, std::mem::take(&mut self.spent))
    }
}

/// The probe batch: the first validation batch's first [`PROBE_IMAGES`] images.
pub fn probe_images(first_val_batch: &Tensor) -> Result<Tensor> {
    let n = first_val_batch.dim(0)?.min(PROBE_IMAGES);
    first_val_batch.narrow(0, 0, n)
}

/// Every Conv's activation on the probe batch, the model in inference.
pub fn probe(model: &Model, images: &Tensor) -> Result<Vec<ConvProbe>> {
    let (output, probes) = probe::capture(|| model.forward(images, false));
    output?;
    Ok(probes)
}

/// One epoch's diagnostics, with what they cost beside the epoch's time.
pub struct EpochDiagnostics<'a> {
    pub epoch: usize,
    pub probes: &'a [ConvProbe],
    pub grad_norms: &'a BTreeMap<String, f64>,
    pub cost: Duration,
    pub epoch_time: Duration,
}

/// Adds an epoch's rows to `path`, rewriting the file atomically.
pub fn append(path: &Path, d: &EpochDiagnostics) -> std::result::Result<(), FileError> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{HEADER}\n"),
        Err(e) => return Err(FileError::new(path, "cannot read")(e)),
    };
    let mut row = |layer: &str, module: &str, quantity: &str, value: f64, act: &str| {
        text += &format!(
            "{},{layer},{module},{quantity},{},{act}\n",
            d.epoch,
            format_general(value, 6)
        );
    };
    for p in d.probes {
        let layer = layer_index(&p.module).map_or(String::new(), |i| i.to_string());
        let mut quantity = |name: &str, value: f64| row(&layer, &p.module, name, value, &p.act);
        quantity("dead_fraction", p.dead_fraction);
        quantity("saturated_fraction", p.saturated_fraction);
        quantity("preact_mean", p.preact_mean);
        quantity("preact_std", p.preact_std);
        if let Some(&norm) = d.grad_norms.get(&p.module) {
            quantity("weight_grad_norm", norm);
        }
        for l in &p.learned {
            quantity(&format!("{}_mean", l.name), l.mean);
            quantity(&format!("{}_min", l.name), l.min);
            quantity(&format!("{}_max", l.name), l.max);
        }
    }
    row("", RUN_ROW, "seconds", d.cost.as_secs_f64(), "");
    row("", RUN_ROW, "epoch_seconds", d.epoch_time.as_secs_f64(), "");
    write_atomic(path, text.as_bytes())
}

/// The layer index in a module path (`model.8.cv1` → 8).
pub fn layer_index(module: &str) -> Option<usize> {
    module.split('.').nth(1)?.parse().ok()
}

/// One row of `diagnostics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticRow {
    pub epoch: usize,
    pub layer: Option<usize>,
    pub module: String,
    pub quantity: String,
    pub value: f64,
    pub activation: String,
}

/// The rows of a run's `diagnostics.csv`; empty when the file is missing, and rows that do
/// not parse are skipped (a run killed mid-write leaves none: the file is replaced whole).
pub fn read(path: &Path) -> Vec<DiagnosticRow> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(6, ',').collect();
            let [epoch, layer, module, quantity, value, activation] = f[..] else {
                return None;
            };
            Some(DiagnosticRow {
                epoch: epoch.parse().ok()?,
                layer: layer.parse().ok(),
                module: module.to_string(),
                quantity: quantity.to_string(),
                value: value.parse().ok()?,
                activation: activation.to_string(),
            })
        })
        .collect()
}
