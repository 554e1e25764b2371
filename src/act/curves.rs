//! Activations as curves: f(x) and f'(x) sampled from the real modules (in f32, as models
//! run them), named for charts and files, and drawn by [`crate::plot::activations`].

use std::path::PathBuf;

use super::evaluate::evaluate;
use super::zoo::ACTIVATIONS;
use super::ActSpec;
use crate::plot::activations::{plot_curves, Curve, PlotError};

/// Points per curve: enough for smooth curves and sharp kinks at chart width.
const SAMPLES: usize = 801;

pub struct PlotOptions {
    pub range: (f64, f64),
    pub out: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    #[error("nothing to plot: no activations given")]
    NoSpecs,
    #[error("x range [{lo}, {hi}]: the minimum must be less than the maximum, both finite in f32")]
    BadRange { lo: f64, hi: f64 },
    #[error(
        "{spec} is not a pointwise activation (each output depends on other inputs), \
         so it cannot be drawn as a curve"
    )]
    NotPointwise { spec: String },
    #[error("evaluating {spec}")]
    Eval {
        spec: String,
        #[source]
        error: candle_core::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Every pointwise activation at its defaults, plus GELU's tanh approximation right after GELU.
pub fn default_plot_specs() -> Vec<ActSpec> {
    ACTIVATIONS
        .iter()
        .filter(|def| def.pointwise)
        .flat_map(|&def| {
            let spec = ActSpec::of(def);
            let tanh_gelu = (def.name == "GELU")
                .then(|| ActSpec::parse("nn.GELU(approximate='tanh')"))
                .and_then(Result::ok);
            std::iter::once(spec).chain(tanh_gelu)
        })
        .collect()
}

/// Writes `<slug>.png` and `<slug>.svg` per activation and `overview.png`/`.svg` into
/// `opts.out`; returns every file written. Everything is checked before anything is drawn;
/// a repeated spec is drawn once.
pub fn plot_activations(specs: &[ActSpec], opts: &PlotOptions) -> Result<Vec<PathBuf>, CurveError> {
    let (lo, hi) = opts.range;
    // Activations run in f32, so the range must survive the conversion.
    let (lo32, hi32) = (lo as f32, hi as f32);
    if !(lo32 < hi32 && lo32.is_finite() && hi32.is_finite()) {
        return Err(CurveError::BadRange { lo, hi });
    }
    if specs.is_empty() {
        return Err(CurveError::NoSpecs);
    }
    let mut unique: Vec<&ActSpec> = Vec::new();
    for spec in specs {
        if !spec.def().pointwise {
            return Err(CurveError::NotPointwise {
                spec: spec.to_string(),
            });
        }
        if !unique.contains(&spec) {
            unique.push(spec);
        }
    }
    let curves = unique
        .into_iter()
        .map(|spec| sample(spec, opts.range))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(plot_curves(&curves, opts.range, &opts.out)?)
}

fn sample(spec: &ActSpec, (lo, hi): (f64, f64)) -> Result<Curve, CurveError> {
    let step = (hi - lo) / (SAMPLES - 1) as f64;
    let xs: Vec<f64> = (0..SAMPLES).map(|i| lo + step * i as f64).collect();
    let e = evaluate(spec, &xs).map_err(|error| CurveError::Eval {
        spec: spec.to_string(),
        error,
    })?;
    let pairs = |ys: &[f64]| e.x.iter().copied().zip(ys.iter().copied()).collect();
    Ok(Curve {
        title: spec.to_string(),
        short_name: short_name(spec),
        stem: slug(spec),
        value: pairs(&e.y),
        derivative: pairs(&e.dydx),
    })
}

/// A short name for `spec`, for panel titles and keys: the class name (`SiLU`), plus the
/// arguments when they are not the defaults (`LeakyReLU(negative_slope=0.2)`).
pub fn short_name(spec: &ActSpec) -> String {
    if *spec == ActSpec::of(spec.def()) {
        return spec.def().name.to_string();
    }
    let full = spec.to_string();
    full.strip_prefix("nn.").unwrap_or(&full).to_string()
}

/// A file stem for `spec`: its canonical string in lower case without the `nn.` prefix,
/// each run of characters other than [a-z0-9.-] turned into one `_`.
fn slug(spec: &ActSpec) -> String {
    let full = spec.to_string().to_lowercase();
    let text = full.strip_prefix("nn.").unwrap_or(&full);
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
            slug.push(c);
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    slug.trim_matches('_').to_string()
}
