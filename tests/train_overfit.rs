//! Overfitting a handful of synthetic images: YOLOv5n from scratch must reach mAP50 > 0.9
//! on the 8 images it trains on. Too long for CI (from scratch YOLOv5 needs over a
//! thousand iterations; about 12 minutes on 2 cores), so it is ignored by default:
//!     cargo test --release --test train_overfit -- --ignored
//! Status (2026-11-29): NOT yet passing. The run reached mAP50 0.865 / mAP50-95 0.804
//! after 1500 iterations: rectangles and triangles at 0.995, but only 5 of the 10 circles
//! are ever found (recall 0.52). Open in the training issue.

use std::path::Path;
use std::process::{Command, Stdio};

fn actyolo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_actyolo"))
}

/// The best mAP50 in a run's results.csv.
fn best_map50(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("results.csv")).unwrap();
    text.lines().skip(1).filter_map(|l| l.split(',').nth(6)?.trim().parse::<f64>().ok()).fold(0.0, f64::max)
}

#[test]
#[ignore]
fn yolov5n_overfits_eight_images() {
    let dir = std::env::temp_dir().join(format!("actyolo-overfit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let status = actyolo().args(["data", "synth", "--n-train", "8", "--n-val", "1", "--imgsz", "128", "--seed", "3", "--out"]).arg(&data).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    // Validate on the training images themselves, and train without augmentation.
    let yaml = std::fs::read_to_string(data.join("data.yaml")).unwrap().replace("val: images/val", "val: images/train");
    std::fs::write(data.join("data.yaml"), yaml).unwrap();
    let mut hyp = include_str!("../configs/hyps/hyp.scratch-low.yaml").to_string();
    for key in ["mosaic", "hsv_h", "hsv_s", "hsv_v", "fliplr", "translate", "scale", "warmup_epochs"] {
        hyp = hyp.lines().map(|l| if l.starts_with(&format!("{key}:")) { format!("{key}: 0.0") } else { l.to_string() }).collect::<Vec<_>>().join("\n");
    }
    std::fs::write(dir.join("hyp.yaml"), hyp).unwrap();
    let out = actyolo()
        .args(["train", "--imgsz", "128", "--batch", "8", "--epochs", "1500", "--patience", "0", "--name", "overfit", "--data"])
        .arg(data.join("data.yaml"))
        .arg("--hyp")
        .arg(dir.join("hyp.yaml"))
        .arg("--project")
        .arg(dir.join("runs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let map50 = best_map50(&dir.join("runs/overfit"));
    assert!(map50 > 0.9, "best mAP50 {map50}");
    std::fs::remove_dir_all(&dir).ok();
}
