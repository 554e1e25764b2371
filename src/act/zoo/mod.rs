//! Every activation's declaration, by family. [`ACTIVATIONS`] lists them in the order the
//! catalogue shows them; adding an activation is a declaration in one of these files and
//! its line here.

mod channel;
mod exponential;
mod gated;
mod learnable;
mod piecewise;
mod shrink;
mod sigmoid;

use super::registry::ActDef;

pub use gated::SILU;
pub use piecewise::IDENTITY;
pub use sigmoid::{LogSigmoid, Sigmoid};

/// The registry: every activation actyolo knows.
pub static ACTIVATIONS: &[&ActDef] = &[
    &piecewise::RELU,
    &piecewise::RRELU,
    &piecewise::HARDTANH,
    &piecewise::RELU6,
    &sigmoid::SIGMOID,
    &sigmoid::HARDSIGMOID,
    &sigmoid::TANH,
    &gated::SILU,
    &gated::MISH,
    &gated::HARDSWISH,
    &exponential::ELU,
    &exponential::CELU,
    &exponential::SELU,
    &channel::GLU,
    &gated::GELU,
    &shrink::HARDSHRINK,
    &piecewise::LEAKY_RELU,
    &sigmoid::LOG_SIGMOID,
    &exponential::SOFTPLUS,
    &shrink::SOFTSHRINK,
    &piecewise::PRELU,
    &sigmoid::SOFTSIGN,
    &shrink::TANHSHRINK,
    &channel::SOFTMIN,
    &channel::SOFTMAX,
    &channel::SOFTMAX2D,
    &channel::LOG_SOFTMAX,
    &piecewise::IDENTITY,
    &learnable::FRELU,
    &learnable::ACON_C,
    &learnable::META_ACON_C,
    &gated::SWISH_BETA,
];

/// Lower-case, underscores removed: `leaky_relu`, `LeakyReLU` and `leakyrelu` are one name.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Finds an activation by any of its names, case-insensitively.
pub fn lookup(name: &str) -> Option<&'static ActDef> {
    let wanted = normalize(name);
    ACTIVATIONS
        .iter()
        .copied()
        .find(|d| normalize(d.name) == wanted || d.aliases.contains(&wanted.as_str()))
}

/// The `n` known names closest to `name`, for "did you mean" messages.
pub fn closest(name: &str, n: usize) -> Vec<String> {
    let wanted = normalize(name);
    let mut scored: Vec<(f64, &str)> = ACTIVATIONS
        .iter()
        .map(|d| (strsim::jaro_winkler(&wanted, &normalize(d.name)), d.name))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(n)
        .map(|(_, s)| s.to_string())
        .collect()
}
