//! The activation zoo: every `torch.nn` activation plus FReLU, ACON-C, Meta-ACON-C and
//! Swish-β, with PyTorch's forward and gradient. Each is declared once ([`registry`],
//! [`zoo`]); a Conv block builds its own [`Activation`] from an [`ActSpec`] and its channel
//! count, so learnable activations are per layer.

pub mod catalog;
pub mod curves;
pub mod evaluate;
pub mod module;
pub mod probe;
pub mod registry;
pub mod spec;
pub mod zoo;

pub use module::Activation;
pub use registry::{ActDef, ActModule, Args, Properties};
pub use spec::{ActArg, ActSpec, SpecError};
