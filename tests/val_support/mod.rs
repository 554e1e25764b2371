//! The val_rect fixture (tools/gen_val_rect_fixtures.py): a yolov5n `.pt` trained here,
//! a val split of mixed aspect ratios, and val.py's results on them.

use std::path::Path;

use serde_json::Value;

#[path = "../scratch_support/mod.rs"]
mod scratch_support;
pub use scratch_support::{scratch_dir, Scratch};

pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/val_rect");

pub fn expected() -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURE}/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's dataset copied to a scratch folder, so the label cache is not written
/// into the source tree.
pub fn dataset_copy(name: &str) -> Scratch {
    let dir = scratch_dir(&format!("valrect-{name}"));
    for sub in ["images/val", "labels/val"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(Path::new(FIXTURE).join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "png" || e == "txt") {
                std::fs::copy(&path, dir.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    std::fs::copy(Path::new(FIXTURE).join("data.yaml"), dir.join("data.yaml")).unwrap();
    dir
}
