//! Evaluation: non-maximum suppression and mapping boxes back to the original image,
//! metrics, and COCO JSON.

pub mod coco;
pub mod metrics;
pub mod nms;

pub use nms::{non_max_suppression, scale_boxes, Detection, NmsOptions};
pub mod val;
