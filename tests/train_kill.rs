//! Killing a training run (SIGKILL, no chance to clean up) at exact points of its saves,
//! including halfway through writing `best.safetensors`: every weights file left behind
//! must load, and `train --resume` must end on the same weights, bit for bit, as a run
//! that was never stopped. Plus `--freeze` with ultralytics' meaning, and resuming from
//! `last.safetensors` alone.
//!
//! The kill points come from `ACTYOLO_KILL_AT=FILE#N`: the process kills itself halfway
//! through the N-th atomic write of FILE. Run with `cargo test --release --test train_kill`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::weights::read_weights;
use candle_core::{Device, Tensor};

mod scratch_support;
use scratch_support::{scratch_dir, Scratch};

fn scratch(name: &str) -> Scratch {
    scratch_dir(&format!("kill-{name}"))
}

/// 16 training and 8 validation images of 64 px, made once for all tests.
fn dataset() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let out = scratch("data").keep_until_exit().join("data");
        let status = Command::new(env!("CARGO_BIN_EXE_actyolo"))
            .args([
                "data",
                "synth",
                "--n-train",
                "16",
                "--n-val",
                "8",
                "--imgsz",
                "64",
            ])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
            .status;
        assert!(status.success());
        out.join("data.yaml")
    })
}

fn train(project: &Path, name: &str, extra: &[&str], kill_at: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_actyolo"));
    command
        .args(["train", "--imgsz", "64", "--batch", "8", "--workers", "1"])
        .arg("--data")
        .arg(dataset())
        .arg("--project")
        .arg(project)
        .args(["--name", name])
        .args(extra);
    match kill_at {
        Some(point) => command.env("ACTYOLO_KILL_AT", point),
        None => command.env_remove("ACTYOLO_KILL_AT"),
    };
    command.output().unwrap()
}

fn resume(run: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .args(["train", "--resume"])
        .arg(run)
        .env_remove("ACTYOLO_KILL_AT")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn values(path: &Path) -> Vec<(String, Vec<f32>)> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The uninterrupted 3-epoch run every killed one is compared with.
fn reference() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let project = scratch("reference").keep_until_exit();
        let out = train(&project, "full", &["--epochs", "3"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        project.join("full")
    })
}

#[test]
fn a_run_killed_mid_write_resumes_to_the_same_weights() {
    let (last, best) = (
        values(&reference().join("weights/last.safetensors")),
        values(&reference().join("weights/best.safetensors")),
    );
    let project = scratch("points");
    // In epoch order: results.csv, diagnostics.csv, then the resume state, then last, then
    // best (when fitness improved) are written at the end of each epoch.
    let points = [
        "last.safetensors#1",
        "best.safetensors#1",
        "results.csv#2",
        "diagnostics.csv#2",
        "last.state.safetensors#2",
        "best.safetensors#2",
        "last.safetensors#3",
    ];
    for (i, point) in points.iter().enumerate() {
        let name = format!("killed{i}");
        let out = train(&project, &name, &["--epochs", "3"], Some(point));
        assert_eq!(out.status.signal(), Some(9), "{point}: {}", stderr(&out));
        let run = project.join(&name);
        // Every weights file left behind loads, complete.
        for entry in std::fs::read_dir(run.join("weights")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "safetensors") {
                read_weights(&path).unwrap_or_else(|e| panic!("{point}: {e}"));
            }
        }
        let out = resume(&run);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert_eq!(
            values(&run.join("weights/last.safetensors")),
            last,
            "{point}: the resumed run ended on other weights"
        );
        assert_eq!(
            values(&run.join("weights/best.safetensors")),
            best,
            "{point}: best differs"
        );
        let rows = std::fs::read_to_string(run.join("results.csv")).unwrap();
        assert_eq!(rows.lines().count(), 4, "{point}: {rows}");
        // Each epoch's diagnostics once: a repeated epoch replaces its rows.
        let diagnostics = std::fs::read_to_string(run.join("diagnostics.csv")).unwrap();
        for epoch in 0..3 {
            let costs = format!("\n{epoch},,run,seconds,");
            assert_eq!(
                diagnostics.matches(&costs).count(),
                1,
                "{point}: epoch {epoch}"
            );
        }
    }
}

#[test]
fn a_run_killed_before_its_first_checkpoint_says_so() {
    let project = scratch("first");
    let out = train(
        &project,
        "early",
        &["--epochs", "3"],
        Some("last.state.safetensors#1"),
    );
    assert_eq!(out.status.signal(), Some(9));
    let out = resume(&project.join("early"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing to resume: no checkpoint"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_run_whose_resume_state_is_lost_goes_on_from_last() {
    let project = scratch("lost");
    let out = train(&project, "run", &["--epochs", "3"], Some("results.csv#3"));
    assert_eq!(out.status.signal(), Some(9));
    let run = project.join("run");
    std::fs::remove_file(run.join("weights/last.state.safetensors")).unwrap();
    let out = resume(&run);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is missing: resuming from the EMA weights"),
        "{}",
        stderr(&out)
    );
    let rows = std::fs::read_to_string(run.join("results.csv")).unwrap();
    assert_eq!(rows.lines().count(), 4, "{rows}");
}

#[test]
fn a_run_started_with_relative_paths_resumes_from_another_folder() {
    let project = scratch("relative");
    let data = dataset().parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .current_dir(data)
        .args([
            "train",
            "--imgsz",
            "64",
            "--batch",
            "8",
            "--workers",
            "1",
            "--epochs",
            "2",
        ])
        .args(["--data", "data.yaml", "--name", "run"])
        .arg("--project")
        .arg(&project)
        .env("ACTYOLO_KILL_AT", "results.csv#2")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .current_dir("/")
        .args(["train", "--resume"])
        .arg(project.join("run"))
        .env_remove("ACTYOLO_KILL_AT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn resume_extends_a_finished_run_with_more_epochs() {
    let project = scratch("extend");
    let out = train(&project, "run", &["--epochs", "1"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = project.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--epochs", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("--epochs 2: the run now trains to 2 epochs"));
    let rows = std::fs::read_to_string(run.join("results.csv")).unwrap();
    assert_eq!(rows.lines().count(), 3, "{rows}");
    // Written with the mode any file of the user's gets (0666 less the umask).
    let umask = umask();
    for file in [
        "last.safetensors",
        "best.safetensors",
        "last.state.safetensors",
    ] {
        let mode = std::fs::metadata(run.join("weights").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o666 & !umask, "{file}");
    }
}

/// The process's umask, as /proc reports it.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// The parameters (not BatchNorm's running statistics) of layers `layers`.
fn parameters(tensors: &HashMap<String, Tensor>, layers: &[usize]) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .iter()
        .filter(|(k, _)| layers.iter().any(|i| k.starts_with(&format!("model.{i}."))))
        .filter(|(k, _)| !k.contains("running_") && !k.ends_with("num_batches_tracked"))
        .map(|(k, v)| {
            let v = v.to_dtype(candle_core::DType::F32).unwrap();
            (
                k.clone(),
                v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn freeze_3_keeps_layers_0_to_2_and_trains_layer_3() {
    let project = scratch("freeze");
    let out = train(&project, "run", &["--epochs", "2", "--freeze", "3"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Freezing layers 0 1 2"),
        "{}",
        stderr(&out)
    );
    // The initial weights: the same config, nc and seed (0) draw the same values.
    let config = ModelConfig::load("yolov5n.yaml")
        .unwrap()
        .with_nc(3)
        .unwrap();
    let model = Model::new(&config, None, 0, None).unwrap();
    let initial: HashMap<String, Tensor> = model
        .vars()
        .var_map()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let run = project.join("run/weights");
    let raw: HashMap<String, Tensor> =
        candle_core::safetensors::load(run.join("last.state.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("raw/").map(|n| (n.to_string(), v)))
            .collect();
    let ema = read_weights(&run.join("last.safetensors")).unwrap().tensors;
    let frozen = parameters(&initial, &[0, 1, 2]);
    assert!(!frozen.is_empty());
    assert_eq!(parameters(&raw, &[0, 1, 2]), frozen, "trained weights");
    assert_eq!(parameters(&ema, &[0, 1, 2]), frozen, "EMA weights");
    assert_ne!(parameters(&raw, &[3]), parameters(&initial, &[3]));
}
