//! `actyolo compare` end to end on tiny synthetic data: 2 activations × 2 seeds, its
//! report files, resuming after a kill, and that the runs differ only in the activation.
//! Run with `cargo test --release --test experiment_compare`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;

fn actyolo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_actyolo"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("actyolo-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 12 training and 4 validation images of 64 px.
fn tiny_dataset(dir: &Path) -> PathBuf {
    let out = dir.join("data");
    let status = actyolo()
        .args([
            "data",
            "synth",
            "--n-train",
            "12",
            "--n-val",
            "4",
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

fn compare_command(data: &Path, out: &Path, epochs: usize) -> Command {
    compare_acts(data, out, epochs, "silu,nn.LeakyReLU(0.2)")
}

/// `compare` of `acts` over seeds 0 and 1 on the tiny dataset.
fn compare_acts(data: &Path, out: &Path, epochs: usize, acts: &str) -> Command {
    let mut command = actyolo();
    command
        .args([
            "compare",
            "--acts",
            acts,
            "--seeds",
            "0,1",
            "--imgsz",
            "64",
            "--batch",
            "4",
            "--workers",
            "1",
            "--latency-runs",
            "3",
            "--epochs",
            &epochs.to_string(),
            "--data",
        ])
        .arg(data)
        .arg("--out")
        .arg(out);
    command
}

fn experiment(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("experiment.json")).unwrap()).unwrap()
}

fn states(out: &Path) -> Vec<String> {
    experiment(out)["experiment"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"]["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_experiment_writes_its_report_and_continues_after_a_kill() {
    let dir = scratch("resume");
    let data = tiny_dataset(&dir);
    let out = dir.join("exp");
    // Killed once the first run has saved its first epoch (it trains 2).
    let mut child = compare_command(&data, &out, 2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first_checkpoint = out.join("runs/silu-seed0/weights/last.state.safetensors");
    let started = Instant::now();
    while !first_checkpoint.is_file() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the experiment ended before it could be interrupted"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(states(&out)[0], "running");

    let rerun = compare_command(&data, &out, 2).output().unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(
        stderr.contains("(resumed)") || stderr.contains("Resuming"),
        "the first run was not resumed:\n{stderr}"
    );
    assert_eq!(states(&out), ["finished"; 4]);
    // The resumed run has each epoch once.
    let rows = std::fs::read_to_string(out.join("runs/silu-seed0/results.csv")).unwrap();
    let epochs: Vec<&str> = rows
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().trim())
        .collect();
    assert_eq!(epochs, ["0", "1"]);

    for file in ["summary.csv", "report.md", "report.html", "experiment.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(
        summary.lines().count(),
        3,
        "a header and one row per activation:\n{summary}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("LeakyReLU"));
    // The diagnostics section: its cost, a heatmap per activation, the gradient plot.
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("## Diagnostics") && markdown.contains("Recording them took"));
    for plot in [
        "dead_silu.png",
        "dead_nn.leakyrelu-0.2.png",
        "gradient_norms.png",
    ] {
        assert!(
            out.join("diagnostics").join(plot).is_file(),
            "{plot} missing"
        );
        assert!(
            markdown.contains(&format!("diagnostics/{plot}")),
            "{plot} not in the report"
        );
    }
    let costs = experiment(&out)["experiment"]["costs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(costs.len(), 2);
    assert!(costs
        .iter()
        .all(|c| c["latency_ms"].as_f64().unwrap() > 0.0
            && c["params"].as_u64().unwrap() > 1_000_000));

    // Once finished, a re-run trains nothing: the weights stay as they were.
    let weights = out.join("runs/nn.leakyrelu-0.2-seed1/weights/last.safetensors");
    let before = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let again = compare_command(&data, &out, 2).output().unwrap();
    assert!(again.status.success());
    assert_eq!(
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
        before
    );

    // Other settings in the same folder are refused, naming the difference.
    let other = compare_command(&data, &out, 3).output().unwrap();
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("epochs"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    // Only the activation differs between the runs of one seed: options, hyperparameters
    // and the first batch (data order and augmentation) are the same.
    let run = |name: &str| out.join("runs").join(name);
    let options = |name: &str| -> HashMap<String, serde_yaml::Value> {
        let mut o: HashMap<String, serde_yaml::Value> =
            serde_yaml::from_str(&std::fs::read_to_string(run(name).join("opt.yaml")).unwrap())
                .unwrap();
        o.remove("act");
        o.remove("name");
        o
    };
    assert_eq!(options("silu-seed0"), options("nn.leakyrelu-0.2-seed0"));
    assert_ne!(options("silu-seed0"), options("silu-seed1"));
    for file in ["hyp.yaml", "train_batch0.jpg"] {
        assert_eq!(
            std::fs::read(run("silu-seed0").join(file)).unwrap(),
            std::fs::read(run("nn.leakyrelu-0.2-seed0").join(file)).unwrap(),
            "{file} differs"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every parameter two models share starts equal when only the activation differs, even
/// when one activation brings parameters of its own (FReLU's depthwise conv, AconC's p1/p2).
#[test]
fn models_that_differ_in_activation_start_from_the_same_weights() {
    let config = ModelConfig::load("yolov5n.yaml")
        .unwrap()
        .with_nc(3)
        .unwrap();
    let values = |act: &str| -> HashMap<String, Vec<f32>> {
        let model = Model::new(&config, Some(&ActSpec::parse(act).unwrap()), 7, None).unwrap();
        let data = model.vars().var_map().data().lock().unwrap();
        data.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                )
            })
            .collect()
    };
    let silu = values("silu");
    for other in ["relu", "frelu", "aconc"] {
        let other_values = values(other);
        let shared: Vec<&String> = silu
            .keys()
            .filter(|k| other_values.contains_key(*k))
            .collect();
        assert_eq!(
            shared.len(),
            silu.len(),
            "{other}: every SiLU model parameter exists"
        );
        for name in shared {
            assert_eq!(
                silu[name], other_values[name],
                "{other}: {name} starts differently"
            );
        }
    }
    // A different seed does change them.
    let seed8 = Model::new(&config, None, 8, None).unwrap();
    let w = seed8.vars().var_map().data().lock().unwrap()["model.0.conv.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_ne!(w, silu["model.0.conv.weight"]);
}

/// A run whose loss becomes NaN is recorded as diverged, and the experiment goes on to the
/// next run and writes its report. ELU with alpha 1e38 overflows float32 in the first steps.
#[test]
fn a_diverging_run_is_recorded_and_the_experiment_goes_on() {
    let dir = scratch("nan");
    let data = tiny_dataset(&dir);
    let out = dir.join("exp");
    let result = actyolo()
        .args([
            "compare",
            "--acts",
            "nn.ELU(alpha=1e38),silu",
            "--seeds",
            "0",
            "--imgsz",
            "64",
            "--batch",
            "4",
            "--workers",
            "1",
            "--latency-runs",
            "2",
            "--epochs",
            "1",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let runs = experiment(&out)["experiment"]["runs"].clone();
    assert_eq!(runs[0]["status"]["state"], "diverged");
    assert!(runs[0]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("epoch 0, iteration"));
    assert_eq!(runs[1]["status"]["state"], "finished");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("diverged"), "{report}");
    std::fs::remove_dir_all(&dir).ok();
}

/// summary.csv without its timing columns (latency, seconds per epoch): what must not
/// depend on which process, shard or thread count trained the runs.
fn summary_metrics(out: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let timing = ["latency_ms", "latency_vs_baseline_pct", "seconds_per_epoch"];
    lines
        .map(|line| {
            line.split(',')
                .zip(&header)
                .filter(|(_, h)| !timing.contains(h))
                .map(|(v, _)| v.to_string())
                .collect()
        })
        .collect()
}

/// Each run's results.csv lists epochs 0 and 1 once.
fn assert_each_epoch_once(out: &Path) {
    for entry in std::fs::read_dir(out.join("runs")).unwrap() {
        let rows = std::fs::read_to_string(entry.unwrap().path().join("results.csv")).unwrap();
        let epochs: Vec<&str> = rows
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().trim())
            .collect();
        assert_eq!(epochs, ["0", "1"], "{rows}");
    }
}

/// The single-process experiment the parallel ones must reproduce.
fn single_process(dir: &Path, data: &Path) -> PathBuf {
    let out = dir.join("single");
    let run = compare_command(data, &out, 2).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

#[test]
fn processes_sharing_an_experiment_train_each_run_once_and_survive_a_kill() {
    let dir = scratch("queue");
    let data = tiny_dataset(&dir);
    let single = single_process(&dir, &data);
    let out = dir.join("shared");
    let start = || {
        compare_command(&data, &out, 2)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<_> = (0..3).map(|_| start()).collect();
    // Kill (SIGKILL) the holder of a run that is mid-way: checkpointed after epoch 0.
    let started = Instant::now();
    let victim = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no run checkpointed"
        );
        let held: Vec<u32> = std::fs::read_dir(out.join("runs"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let run = e.ok()?.path();
                let name = run.file_name()?.to_string_lossy().into_owned();
                // Mid-run: its first epoch saved, its second (of 2) not yet.
                run.join("weights/last.state.safetensors")
                    .is_file()
                    .then_some(())?;
                let rows = std::fs::read_to_string(run.join("results.csv")).ok()?;
                (rows.lines().count() == 2).then_some(())?;
                let lock = std::fs::read_to_string(out.join(format!("locks/{name}.lock"))).ok()?;
                let lock: serde_json::Value = serde_json::from_str(&lock).ok()?;
                Some(lock["pid"].as_u64()? as u32)
            })
            .collect();
        if let Some(child) = children.iter_mut().find(|c| held.contains(&c.id())) {
            child.kill().unwrap();
            child.wait().unwrap();
            break child.id();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    children.retain(|c| c.id() != victim);
    children.push(start());
    let mut stderr = String::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{text}");
        stderr += &text;
    }
    assert_eq!(states(&out), ["finished"; 4]);
    assert!(
        stderr.contains("Resuming"),
        "the killed run was not resumed:\n{stderr}"
    );
    assert_each_epoch_once(&out);
    assert_eq!(summary_metrics(&out), summary_metrics(&single));
    let status = actyolo()
        .args(["compare", "--status"])
        .arg(&out)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        listing.matches("finished (2/2 epochs)").count(),
        4,
        "{listing}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shards_run_concurrently_and_report_only_merges_them() {
    let dir = scratch("shards");
    let data = tiny_dataset(&dir);
    let single = single_process(&dir, &data);
    let out = dir.join("sharded");
    // Shard 1 trains its runs two at a time, on one core each.
    let shards: Vec<_> = [("1/2", "2"), ("2/2", "1")]
        .into_iter()
        .map(|(shard, jobs)| {
            compare_command(&data, &out, 2)
                .args(["--shard", shard, "--jobs", jobs])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        let output = shard.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::remove_file(out.join("summary.csv")).unwrap();
    let report = compare_command(&data, &out, 2)
        .arg("--report-only")
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert_eq!(states(&out), ["finished"; 4]);
    assert_each_epoch_once(&out);
    assert_eq!(summary_metrics(&out), summary_metrics(&single));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn screening_prunes_at_its_rungs_and_the_survivor_trains_as_without_it() {
    let dir = scratch("screen");
    let data = tiny_dataset(&dir);
    let screen = |out: &Path, acts: &str, extra: &[&str]| {
        let output = compare_acts(&data, out, 9, acts)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let out = dir.join("screened");
    let log = screen(&out, "silu,relu,nn.LeakyReLU(0.2),mish", &["--screen"]);
    // Rungs at 1, 3 and 9 epochs. Of 4 activations the best 2 go on (and the baseline,
    // if not among them), so at most 3 pass rung 1 and at most 2 pass rung 3.
    assert!(log.contains("Screening after 1 epochs"), "{log}");
    let exp = experiment(&out);
    let runs = exp["experiment"]["runs"].as_array().unwrap();
    let mut reached: HashMap<String, Vec<usize>> = HashMap::new();
    for run in runs {
        let act = run["act"].as_str().unwrap().to_string();
        let rows = run["curve"].as_array().unwrap().len();
        let epochs = match run["status"]["state"].as_str().unwrap() {
            "finished" => 9,
            "screened" => run["status"]["epochs"].as_u64().unwrap() as usize,
            state => panic!("{act}: {state}"),
        };
        assert_eq!(rows, epochs, "{act} trained past where it stopped");
        assert!(
            [1, 3, 9].contains(&epochs),
            "{act} stopped off a rung: {epochs}"
        );
        reached.entry(act).or_default().push(epochs);
    }
    assert_eq!(
        reached["silu"],
        [9, 9],
        "the baseline is never screened out"
    );
    for (act, epochs) in &reached {
        assert_eq!(epochs[0], epochs[1], "{act}: both seeds stop together");
    }
    let past = |rung: usize| reached.values().filter(|e| e[0] > rung).count();
    assert!(past(1) <= 3 && past(3) <= 2, "{reached:?}");
    // The survivor's runs equal an unscreened experiment's: pausing at the rungs keeps
    // the full schedule.
    let plain = dir.join("plain");
    screen(&plain, "silu", &[]);
    for seed in [0, 1] {
        let results = |root: &Path| {
            std::fs::read_to_string(root.join(format!("runs/silu-seed{seed}/results.csv"))).unwrap()
        };
        assert_eq!(results(&out), results(&plain));
    }
    // Run again: nothing trains, the screened runs stay screened and are reported so.
    let weights = out.join("runs/silu-seed1/weights/last.safetensors");
    let before = std::fs::metadata(&weights).unwrap().modified().unwrap();
    screen(&out, "silu,relu,nn.LeakyReLU(0.2),mish", &["--screen"]);
    assert_eq!(
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
        before
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("screened out after 1 epochs"), "{report}");
    std::fs::remove_dir_all(&dir).ok();
}
