//! Images in: letterboxing and conversion to the model's input tensor.

pub mod letterbox;

pub use letterbox::{image_to_tensor, letterbox, Letterbox, LetterboxError};
pub mod augment;
pub mod dataset;
pub mod labels;
pub mod loader;
pub mod synth;
