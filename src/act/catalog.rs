//! The catalogue of activations for `acts list`: each declaration's spec at its defaults,
//! formula, parameters and properties.

use serde::Serialize;

use super::registry::Properties;
use super::spec::ActSpec;
use super::zoo::ACTIVATIONS;

/// One row of `acts list`: an activation at its defaults, with everything a user may ask.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub name: &'static str,
    /// The full spec with every default, e.g. `nn.LeakyReLU(negative_slope=0.01)`.
    pub spec: String,
    pub formula: &'static str,
    pub params: Vec<ParamEntry>,
    pub learnable: bool,
    pub pointwise: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamEntry {
    pub name: &'static str,
    pub default: String,
}

/// Every activation, in catalogue order.
pub fn catalogue() -> Vec<CatalogEntry> {
    ACTIVATIONS
        .iter()
        .map(|&k| CatalogEntry {
            name: k.name,
            spec: ActSpec::of(k).to_string(),
            formula: k.formula,
            params: k
                .params
                .iter()
                .filter(|p| p.name != "inplace")
                .map(|p| ParamEntry {
                    name: p.name,
                    default: p.default.to_value().to_string(),
                })
                .collect(),
            learnable: k.learnable,
            pointwise: k.pointwise,
            properties: k.properties,
        })
        .collect()
}

/// `acts list` as an aligned text table.
pub fn render_table(entries: &[CatalogEntry]) -> String {
    let mark = |p: Option<bool>| match p {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let spec_width = entries.iter().map(|e| e.spec.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<spec_width$}  {:<9} {:<9} {:<5} {:<5} {:<6} {:<6}  formula\n",
        "spec", "learnable", "monotonic", "lower", "upper", "smooth", "f(0)=0"
    );
    for e in entries {
        let p = e.properties;
        out += &format!(
            "{:<spec_width$}  {:<9} {:<9} {:<5} {:<5} {:<6} {:<6}  {}\n",
            e.spec,
            if e.learnable { "yes" } else { "no" },
            mark(p.monotonic),
            mark(p.bounded_below),
            mark(p.bounded_above),
            mark(p.smooth),
            mark(p.zero_at_zero),
            e.formula
        );
    }
    out += &format!(
        "{} activations; lower/upper: bounded below/above at the default parameters\n",
        entries.len()
    );
    out
}
