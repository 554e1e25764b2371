//! Evaluation: non-maximum suppression and mapping boxes back to the original image.

pub mod nms;

pub use nms::{non_max_suppression, scale_boxes, Detection, NmsOptions};
