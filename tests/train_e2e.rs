//! Training end to end on tiny synthetic data: the run's files, resuming after a kill
//! mid-run, and a diverging run. Run with `cargo test --release --test train_e2e`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn actyolo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_actyolo"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("actyolo-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 16 training and 8 validation images of 64 px.
fn tiny_dataset(dir: &Path) -> PathBuf {
    let out = dir.join("data");
    let status = actyolo()
        .args([
            "data",
            "synth",
            "--n-train",
            "16",
            "--n-val",
            "8",
            "--imgsz",
            "64",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    out.join("data.yaml")
}

fn train_args(data: &Path, project: &Path, name: &str, epochs: usize) -> Vec<String> {
    [
        "train",
        "--data",
        &data.display().to_string(),
        "--imgsz",
        "64",
        "--batch",
        "8",
        "--epochs",
        &epochs.to_string(),
        "--project",
        &project.display().to_string(),
        "--name",
        name,
        "--workers",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// diagnostics.csv without the rows of its own cost (timings differ between runs).
fn diagnostics(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("diagnostics.csv"))
        .unwrap()
        .lines()
        .filter(|line| !line.contains(",run,"))
        .map(String::from)
        .collect()
}

fn results_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("results.csv"))
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn a_run_writes_its_files_and_resumes_after_a_kill_to_the_same_weights() {
    let dir = scratch("resume");
    let data = tiny_dataset(&dir);
    let project = dir.join("runs");
    // Uninterrupted: 3 epochs.
    let out = actyolo()
        .args(train_args(&data, &project, "full", 3))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = project.join("full");
    for file in [
        "results.csv",
        "results.png",
        "hyp.yaml",
        "opt.yaml",
        "train_batch0.jpg",
        "weights/last.safetensors",
        "weights/best.safetensors",
        "weights/last.state.safetensors",
        "diagnostics.csv",
    ] {
        assert!(full.join(file).is_file(), "{file} missing");
    }
    // Every epoch has every Conv's diagnostics (yolov5n has 57 Convs, each with 5
    // quantities), and each epoch states its cost.
    let rows = diagnostics(&full);
    assert_eq!(rows[0], "epoch,layer,module,quantity,value,activation");
    for epoch in 0..3 {
        let of_epoch: Vec<&String> = rows[1..]
            .iter()
            .filter(|r| r.starts_with(&format!("{epoch},")))
            .collect();
        assert_eq!(of_epoch.len(), 57 * 5, "epoch {epoch}");
        for quantity in [
            "dead_fraction",
            "saturated_fraction",
            "preact_mean",
            "preact_std",
            "weight_grad_norm",
        ] {
            assert!(of_epoch
                .iter()
                .any(|r| r.contains(&format!(",model.0,{quantity},"))));
        }
    }
    let text = std::fs::read_to_string(full.join("diagnostics.csv")).unwrap();
    assert_eq!(text.matches(",run,seconds,").count(), 3);
    assert_eq!(results_rows(&full), 3);
    let header = std::fs::read_to_string(full.join("results.csv")).unwrap();
    assert!(header
        .lines()
        .next()
        .unwrap()
        .contains("metrics/mAP_0.5:0.95"));
    // Killed once two epochs are saved (possibly mid-way through the third), then resumed.
    let mut child = actyolo()
        .args(train_args(&data, &project, "killed", 3))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = project.join("killed");
    let start = Instant::now();
    while results_rows(&killed) < 2 && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(results_rows(&killed) >= 2);
    let out = actyolo()
        .args(["train", "--resume"])
        .arg(&killed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(results_rows(&killed), 3);
    // The resumed run's diagnostics: each epoch once, the same numbers.
    assert_eq!(diagnostics(&killed), diagnostics(&full));
    // Data order and augmentation are seeded per (seed, epoch, image), the kernels sum
    // in a fixed order, and the checkpoint holds the optimiser, EMA and pending gradients:
    // the resumed run ends on the same weights, bit for bit.
    assert_eq!(
        weights(&killed.join("weights/last.safetensors")),
        weights(&full.join("weights/last.safetensors"))
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_run_stops_naming_epoch_and_iteration() {
    let dir = scratch("nan");
    let data = tiny_dataset(&dir);
    let hyp = dir.join("hyp.yaml");
    let default_hyp = include_str!("../configs/hyps/hyp.scratch-low.yaml");
    std::fs::write(
        &hyp,
        default_hyp.replace("warmup_bias_lr: 0.1", "warmup_bias_lr: .nan"),
    )
    .unwrap();
    let mut args = train_args(&data, &dir.join("runs"), "nan", 2);
    args.extend(["--hyp".to_string(), hyp.display().to_string()]);
    let out = actyolo().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the loss became") && stderr.contains("epoch 0, iteration"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let dir = scratch("bad");
    let out = actyolo()
        .args(["train", "--data"])
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("missing.yaml"),
        "{stderr}"
    );
    let out = actyolo().args(["train"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data is required"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A run trained with `--act` says so in its weights, so that val, detect and export build
/// the model it trained (its YAML alone names SiLU): val's mAP of best.safetensors is the
/// training's.
#[test]
fn weights_trained_with_act_are_validated_with_that_activation() {
    let dir = scratch("act");
    let data = tiny_dataset(&dir);
    let project = dir.join("runs");
    let mut args = train_args(&data, &project, "hardswish", 2);
    args.extend(["--act".into(), "hardswish".into()]);
    let out = actyolo().args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let best = project.join("hardswish/weights/best.safetensors");
    let weights = actyolo::model::weights::read_weights(&best).unwrap();
    assert_eq!(
        weights.act.map(|a| a.to_string()).as_deref(),
        Some("nn.Hardswish()")
    );
    let rows = std::fs::read_to_string(project.join("hardswish/results.csv")).unwrap();
    let header: Vec<&str> = rows
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    let column = header
        .iter()
        .position(|c| *c == "metrics/mAP_0.5:0.95")
        .unwrap();
    let trained: Vec<f64> = rows
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(column).unwrap().trim().parse().unwrap())
        .collect();
    let best_map = trained.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let val = actyolo()
        .args(["val", "--weights"])
        .arg(&best)
        .args(["--data"])
        .arg(&data)
        .args(["--imgsz", "64", "--batch", "16", "--project"])
        .arg(dir.join("val"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&val.stdout);
    assert!(
        val.status.success(),
        "{}",
        String::from_utf8_lossy(&val.stderr)
    );
    let all: Vec<f64> = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("all"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .map(|v| v.parse().unwrap())
        .collect();
    // results.csv keeps 5 significant digits; the fused model agrees to rounding.
    assert!(
        (all[3] - best_map).abs() < 2e-3,
        "val {} vs training {best_map}",
        all[3]
    );
    std::fs::remove_dir_all(&dir).ok();
}
