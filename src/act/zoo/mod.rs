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
