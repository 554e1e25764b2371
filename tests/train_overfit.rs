//! Overfitting a handful of synthetic images: YOLOv5n from scratch must reach mAP50 > 0.75
//! on the 8 images it trains on, without augmentation.
//!
//! Validation batches as val.py does (rectangular, pad 0.5), so the 128-px images are
//! evaluated at 160 with a grey border that augmentation-free training never shows the
//! model: the same run that reached 0.99 evaluated at 128 reaches about 0.85 here.
//!
//! Adam at lr0 0.002: with a batch of 8, gradients accumulate to the nominal 64, so 600
//! iterations are only 75 optimiser steps. SGD at 0.01 had not fitted the small circles
//! after 187 steps (mAP50 0.865 at 1500 iterations); with Adam the run reached mAP50 0.887
//! at iteration 400 and 0.992 at the end (measured before the backbone-gradient fix that
//! `tests/model_gradients.rs` guards; it passes after it too). Since warmup leaves Adam's β₁
//! at 0.937 throughout, as torch's Adam groups (which have no `momentum`) do in train.py,
//! instead of warming it from 0.8, the best mAP50 here is 0.794; the bar is 0.75.
//! About 1.5–5 minutes on 2 cores.

use std::path::Path;
use std::process::{Command, Stdio};

fn actyolo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_actyolo"))
}

/// The best mAP50 in a run's results.csv.
fn best_map50(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("results.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(6)?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn yolov5n_overfits_eight_images() {
    let dir = std::env::temp_dir().join(format!("actyolo-overfit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let status = actyolo()
        .args([
            "data",
            "synth",
            "--n-train",
            "8",
            "--n-val",
            "1",
            "--imgsz",
            "128",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // Validate on the training images themselves, and train without augmentation.
    let yaml = std::fs::read_to_string(data.join("data.yaml"))
        .unwrap()
        .replace("val: images/val", "val: images/train");
    std::fs::write(data.join("data.yaml"), yaml).unwrap();
    let mut hyp = include_str!("../configs/hyps/hyp.scratch-low.yaml").to_string();
    let settings = [
        "mosaic",
        "hsv_h",
        "hsv_s",
        "hsv_v",
        "fliplr",
        "translate",
        "scale",
        "warmup_epochs",
    ]
    .map(|key| (key, 0.0))
    .into_iter()
    .chain([("lr0", 0.002)]);
    for (key, value) in settings {
        hyp = hyp
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key}:")) {
                    format!("{key}: {value}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    std::fs::write(dir.join("hyp.yaml"), hyp).unwrap();
    let out = actyolo()
        .args([
            "train",
            "--imgsz",
            "128",
            "--batch",
            "8",
            "--epochs",
            "600",
            "--patience",
            "0",
            "--optimizer",
            "Adam",
            "--name",
            "overfit",
            "--data",
        ])
        .arg(data.join("data.yaml"))
        .arg("--hyp")
        .arg(dir.join("hyp.yaml"))
        .arg("--project")
        .arg(dir.join("runs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map50 = best_map50(&dir.join("runs/overfit"));
    assert!(map50 > 0.75, "best mAP50 {map50}");
    std::fs::remove_dir_all(&dir).ok();
}
