//! Plots, all drawn with plotters (or the `image` crate) in one style, from plain numbers,
//! series and tensors: callers turn their records into what is drawn.

pub mod activations;
pub mod batch;
pub mod comparison;
pub mod diagnostics;
pub mod palette;
pub mod results;
pub mod style;
