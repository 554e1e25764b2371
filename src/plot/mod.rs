//! Plots, all drawn with plotters in one style.

pub mod activations;
pub mod compare;
pub mod results;
pub mod style;
