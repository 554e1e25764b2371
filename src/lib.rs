//! actyolo: YOLOv5, YOLOv7, YOLOv8 and YOLO11 object detection whose Conv blocks can use any of 32
//! activations with PyTorch-exact semantics.

pub mod act;
pub mod data;
pub mod detect;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod model;
pub mod ops;
pub mod plot;
pub mod train;
pub mod util;
