//! Models (YOLOv5 and YOLOv7): the YAML config and its rows, the block registry and the
//! blocks, the Detect head, the builder, input sizes, weights in and out, and the summary.

pub mod block;
pub mod blocks;
pub mod build;
pub mod config;
pub mod head;
pub mod input;
pub mod latency;
pub mod layer;
pub mod pt;
pub mod summary;
pub mod weights;
pub mod yaml_args;
