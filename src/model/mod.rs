//! Models: parameter storage and the building blocks shared by activations and networks.

pub mod norm;
pub mod vars;
