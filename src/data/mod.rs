//! Data in: datasets and their labels, augmentation, batch loading, and letterboxing
//! images into the model's input tensor.

pub mod augment;
pub mod dataset;
pub mod image;
pub mod labels;
pub mod letterbox;
pub mod loader;
pub mod synth;

pub use letterbox::{image_to_tensor, letterbox, Letterbox, LetterboxError};
