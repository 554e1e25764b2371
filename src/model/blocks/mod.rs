//! The modules a model YAML names, one file each (a family where they share a row format),
//! each registered once in [`BLOCKS`]: adding a module is a file here and its line there.
//! Parameter names follow ultralytics' (and yolov7's) state_dict, relative to the
//! `VarBuilder` each block is given.

pub mod bottleneck;
pub mod c2f;
pub mod concat;
pub mod conv;
pub mod detect;
pub mod focus;
pub mod pool;
pub mod psa;
pub mod repconv;
pub mod spp;
pub mod sppcspc;
pub mod upsample;

use super::layer::BlockDef;

/// Every module a YOLOv5, YOLOv7, YOLOv8 or YOLO11 YAML may name.
pub static BLOCKS: &[&BlockDef] = &[
    &conv::CONV,
    &bottleneck::BOTTLENECK,
    &bottleneck::C3,
    &spp::SPPF,
    &spp::SPP,
    &focus::FOCUS,
    &concat::CONCAT,
    &upsample::UPSAMPLE,
    &detect::DETECT,
    &pool::MP,
    &pool::SP,
    &sppcspc::SPPCSPC,
    &repconv::REPCONV,
    &detect::IDETECT,
    &c2f::C2F,
    &c2f::C3K2,
    &psa::C2PSA,
];

/// Whether a row's module makes ultralytics leave its `legacy` mode (C3k2, YOLO11's), which
/// gives the anchor-free head's class branch depthwise convolutions.
pub fn is_yolo11_block(def: &BlockDef) -> bool {
    std::ptr::eq(def, &c2f::C3K2)
}

/// The module registered as `name`.
pub fn lookup(name: &str) -> Option<&'static BlockDef> {
    BLOCKS.iter().copied().find(|d| d.name == name)
}

/// The registered name closest to `name`, for "did you mean" messages.
pub fn closest(name: &str) -> &'static str {
    BLOCKS
        .iter()
        .map(|d| d.name)
        .max_by(|a, b| strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b)))
        .unwrap_or("Conv")
}
