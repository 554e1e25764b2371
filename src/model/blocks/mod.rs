//! The modules a model YAML names, one file each (a family where they share a row format),
//! each registered in [`super::block::BLOCKS`]. Parameter names follow ultralytics' (and
//! yolov7's) state_dict, relative to the `VarBuilder` each block is given.

pub mod bottleneck;
pub mod concat;
pub mod conv;
pub mod focus;
pub mod pool;
pub mod repconv;
pub mod spp;
pub mod sppcspc;
pub mod upsample;
