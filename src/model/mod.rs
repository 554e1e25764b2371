//! Models (YOLOv5, YOLOv7, YOLOv8 and YOLO11): the YAML config and its rows, the block
//! registry and the blocks, the detection heads, the builder, input sizes, weights in and
//! out, and the summary.

pub mod anchor_free;
pub mod block;
pub mod blocks;
pub mod build;
pub mod config;
pub mod conv;
pub mod head;
pub mod input;
pub mod latency;
pub mod layer;
pub mod pt;
pub mod summary;
pub mod weights;
pub mod yaml_args;
