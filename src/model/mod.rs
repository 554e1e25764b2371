//! Models (YOLOv5 and YOLOv7): the YAML config, the blocks, the Detect head, the builder, and
//! parameter storage.

pub mod blocks;
pub mod blocks_v7;
pub mod build;
pub mod config;
pub mod detect;
pub mod input;
pub mod latency;
pub mod pt;
pub mod summary;
pub mod weights;
