//! Issue 6's performance harness: yolov5n (nc=80) on this machine's CPU, actyolo against
//! PyTorch and onnxruntime, interleaved in one invocation.
//!
//! ```text
//! cargo bench --bench perf                        # the comparison table and peak RSS
//! cargo bench --bench perf -- --profile           # where actyolo's training step spends its time
//! cargo bench --bench perf -- --acts              # per-activation cost, a representative list
//! cargo bench --bench perf -- --acts silu,relu,mish
//! cargo bench --bench perf -- --help              # rounds and runs per round
//! ```
//!
//! Measured: a) the training step at batch 8, 320 px (forward in train mode, the YOLOv5
//! loss on fixed synthetic targets, backward, SGD step, as the trainer runs it but with a
//! step every batch); b) fused inference at batch 1, 640 and 320 px (decode included, NMS
//! not). Each round measures every engine once, the order alternating between rounds so
//! that drift hits both sides alike; a row reports the median of the round medians and
//! the fastest and slowest single run.
//!
//! The peers run in the reference Python environment of ../shared/REFERENCE.md
//! (`ACTYOLO_PYTHON`, default /tmp/ref/bin/python) through `bench/torch_perf.py`, one
//! long-lived process that measures on request. Without it the table has actyolo's rows only.

mod train_step;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use actyolo::act::spec::parse_list;
use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::latency::{inference_latency, time_runs, Latency};
use actyolo::ops::gemm::{matmul, MatRef};
use actyolo::util::profile::{self, Stage};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use train_step::{synthetic_targets, TrainStep};

const MODEL: &str = "yolov5n.yaml";
const HYP: &str = "hyp.scratch-low.yaml";
const NC: usize = 80;
const TRAIN_BATCH: usize = 8;
const TRAIN_IMGSZ: usize = 320;
const INFER_SIZES: [usize; 2] = [640, 320];
/// Training steps each peak-RSS process runs.
const RSS_STEPS: usize = 3;
/// The sgemm that measures the FP32 peak: n × n × n.
const PEAK_GEMM_N: usize = 2048;
const DEFAULT_ACTS: &str = "silu,relu,nn.LeakyReLU(0.1),hardswish,mish,gelu,prelu,AconC,FReLU";

#[derive(Parser)]
#[command(
    about = "yolov5n training-step and inference speed: actyolo against PyTorch and onnxruntime"
)]
struct Args {
    /// Print the per-stage profile of actyolo's training step and inference instead of
    /// the comparison (with `--acts`: for each of those activations).
    #[arg(long)]
    profile: bool,
    /// Print the per-activation cost table instead of the comparison, for these
    /// comma-separated specs (a representative list when none are given).
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_ACTS)]
    acts: Option<String>,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed training steps per engine and round, after one warm-up step.
    #[arg(long, default_value_t = 5)]
    train_runs: usize,
    /// Timed inferences per engine, size and round, after one warm-up.
    #[arg(long, default_value_t = 15)]
    infer_runs: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run only the training step and print this process's peak RSS.
    #[arg(long, hide = true)]
    rss_child: bool,
}

fn main() -> Result<()> {
    // One candle thread, and freed memory kept for reuse, as the CLI runs.
    actyolo::util::runtime::configure();
    let args = Args::parse();
    if args.rss_child {
        return train_step_peak_rss();
    }
    let setup = BenchSetup::new(&args);
    match &args.acts {
        Some(list) if args.profile => parse_list(list)?
            .iter()
            .try_for_each(|spec| step_profile(&setup, Some(spec))),
        Some(list) => activation_costs(&setup, list),
        None if args.profile => step_profile(&setup, None),
        None => compare(&setup),
    }
}

/// Repetitions, and the synthetic targets every engine trains on.
struct BenchSetup {
    rounds: usize,
    train_runs: usize,
    infer_runs: usize,
    /// (image, class, x, y, w, h) rows, normalised, as the loss reads them.
    targets: Vec<[f32; 6]>,
}

impl BenchSetup {
    fn new(args: &Args) -> BenchSetup {
        BenchSetup {
            rounds: args.rounds.max(1),
            train_runs: args.train_runs,
            infer_runs: args.infer_runs,
            targets: synthetic_targets(TRAIN_BATCH, NC),
        }
    }
}

fn first_conv_activation(model: &Model) -> Option<&actyolo::act::Activation> {
    model
        .layers
        .iter()
        .flat_map(|l| &l.blocks)
        .flat_map(|b| b.activations())
        .next()
}

/// A fused (Conv+BN folded) batch-1 inference model.
fn inference_model(act: Option<&ActSpec>) -> Result<Model> {
    let mut model = Model::new(&ModelConfig::load(MODEL)?.with_nc(NC)?, act, 0, None)?;
    model.fuse()?;
    Ok(model)
}

/// The per-round latencies of one measurement.
#[derive(Default)]
struct Rounds(Vec<Latency>);

impl Rounds {
    /// The median of the round medians.
    fn median_ms(&self) -> f64 {
        let mut medians: Vec<f64> = self.0.iter().map(|l| l.median_ms).collect();
        medians.sort_by(f64::total_cmp);
        medians.get(medians.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn min_ms(&self) -> f64 {
        self.0
            .iter()
            .map(|l| l.min_ms)
            .fold(f64::INFINITY, f64::min)
    }

    fn max_ms(&self) -> f64 {
        self.0
            .iter()
            .map(|l| l.max_ms)
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The comparison: training step and inference, every engine, interleaved; then peak RSS.
fn compare(setup: &BenchSetup) -> Result<()> {
    let mut peer = match Peer::start(setup) {
        Ok(peer) => Some(peer),
        Err(e) => {
            println!("(no PyTorch/onnxruntime peers: {e:#}; actyolo numbers only)\n");
            None
        }
    };
    let mut train = TrainStep::new(
        MODEL,
        NC,
        None,
        (TRAIN_BATCH, TRAIN_IMGSZ),
        &setup.targets,
        &Device::Cpu,
    )?;
    let infer = inference_model(None)?;
    let engines: Vec<String> = std::iter::once("actyolo".to_string())
        .chain(peer.iter().flat_map(|p| p.engines.clone()))
        .collect();
    let omp_wait_policy = peer.as_ref().map(|p| p.omp_wait_policy.clone());
    // Per (measurement, engine): the rounds so far.
    let mut results: HashMap<(Measurement, &str), Rounds> = HashMap::new();
    let measurements: Vec<Measurement> = std::iter::once(Measurement::Train)
        .chain(INFER_SIZES.map(Measurement::Infer))
        .collect();
    // The peak is measured in every round, so that it sees the same load as the rest.
    let mut peak = 0f64;
    for round in 0..setup.rounds {
        peak = peak.max(sgemm_peak_gflops()?);
        for &m in &measurements {
            let mut order: Vec<&str> = engines
                .iter()
                .map(String::as_str)
                .filter(|e| m.runs_on(e))
                .collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for engine in order {
                let latency = match (engine, m, peer.as_mut()) {
                    ("actyolo", Measurement::Train, _) => {
                        time_runs(setup.train_runs, || train.run())?
                    }
                    ("actyolo", Measurement::Infer(size), _) => {
                        inference_latency(&infer, size, setup.infer_runs)?
                    }
                    (_, _, Some(peer)) => peer.measure(engine, m, setup)?,
                    (_, _, None) => continue,
                };
                results.entry((m, engine)).or_default().0.push(latency);
            }
        }
        eprintln!("round {}/{} done", round + 1, setup.rounds);
    }
    drop(peer);

    println!("yolov5n (nc={NC}) on {} threads; FP32 peak {peak:.0} GFLOP/s (sgemm {PEAK_GEMM_N}³, best of 3 per round).", rayon::current_num_threads());
    println!("GFLOP per inference: ultralytics' count (2 × MACs, BatchNorm folded); a training step counts 3 × forward × batch (forward, input and weight gradients).");
    println!(
        "Rounds: {}, interleaved; median of the round medians (min–max over all runs).",
        setup.rounds
    );
    if let Some(policy) = omp_wait_policy {
        println!("PyTorch: 2 threads, OMP_WAIT_POLICY={policy}; onnxruntime: 2 intra-op threads.");
    }
    println!();
    println!("| measurement | engine | median ms | min–max ms | actyolo / engine | GFLOP/s | % of peak |");
    println!("|---|---|---|---|---|---|---|");
    for &m in &measurements {
        let gflop = match m {
            Measurement::Train => 3.0 * train.forward_gflop(),
            Measurement::Infer(size) => infer.gflops(size),
        };
        let ours = results.get(&(m, "actyolo")).map(Rounds::median_ms);
        for engine in &engines {
            let Some(r) = results.get(&(m, engine.as_str())) else {
                continue;
            };
            let ratio = match (engine.as_str(), ours) {
                ("actyolo", _) | (_, None) => "—".to_string(),
                (_, Some(ours)) => format!("{:.2}×", ours / r.median_ms()),
            };
            let rate = gflop / (r.median_ms() * 1e-3);
            println!(
                "| {} | {engine} | {:.1} | {:.1}–{:.1} | {ratio} | {rate:.1} | {:.1}% |",
                m.label(),
                r.median_ms(),
                r.min_ms(),
                r.max_ms(),
                100.0 * rate / peak
            );
        }
    }
    drop(train);
    println!();
    print_peak_rss(setup)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measurement {
    Train,
    Infer(usize),
}

impl Measurement {
    fn label(self) -> String {
        match self {
            Measurement::Train => format!("train step b{TRAIN_BATCH}@{TRAIN_IMGSZ}"),
            Measurement::Infer(size) => format!("inference b1@{size} fused"),
        }
    }

    /// onnxruntime only infers.
    fn runs_on(self, engine: &str) -> bool {
        !(self == Measurement::Train && engine == "onnxruntime")
    }
}

/// The best GFLOP/s of a large f32 GEMM on all rayon threads: what the machine can reach.
fn sgemm_peak_gflops() -> Result<f64> {
    let n = PEAK_GEMM_N;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let a: Vec<f32> = (0..n * n).map(|_| rng.random()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.random()).collect();
    let mut c = vec![0f32; n * n];
    let best = time_runs(3, || {
        matmul(
            &mut c,
            MatRef::rows(&a, n, n),
            MatRef::rows(&b, n, n),
            false,
            rayon::current_num_threads(),
        );
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / (best.min_ms * 1e-3) / 1e9)
}

/// bench/torch_perf.py in serve mode: PyTorch's and onnxruntime's side, one request at a time.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The engines it offers: "torch", and "onnxruntime" when that is installed.
    engines: Vec<String>,
    /// How torch's OpenMP threads wait (the script makes them passive unless told).
    omp_wait_policy: String,
}

impl Peer {
    fn start(setup: &BenchSetup) -> Result<Peer> {
        let mut child = python_script("serve")?;
        let stdin = child.stdin.take().context("peer stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("peer stdout")?);
        let mut peer = Peer {
            child,
            stdin,
            stdout,
            engines: vec![],
            omp_wait_policy: String::new(),
        };
        let ready = peer.send(&peer_setup(setup))?;
        peer.engines =
            serde_json::from_value(ready["ready"].clone()).context("peer's ready line")?;
        peer.omp_wait_policy = ready["omp_wait_policy"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        Ok(peer)
    }

    /// Sends one JSON line and reads the answer; an answer with "error" is an error.
    fn send(&mut self, message: &Value) -> Result<Value> {
        writeln!(self.stdin, "{message}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the peer process exited (run bench/torch_perf.py by hand to see why)");
        }
        let answer: Value =
            serde_json::from_str(&line).with_context(|| format!("peer answered {line:?}"))?;
        match answer.get("error") {
            Some(e) => bail!("peer: {e}"),
            None => Ok(answer),
        }
    }

    fn measure(&mut self, engine: &str, m: Measurement, setup: &BenchSetup) -> Result<Latency> {
        let request = match m {
            Measurement::Train => json!({ "train": setup.train_runs }),
            Measurement::Infer(size) => {
                json!({ "infer": engine, "imgsz": size, "runs": setup.infer_runs })
            }
        };
        let answer = self.send(&request)?;
        let ms = |key: &str| {
            answer[key]
                .as_f64()
                .with_context(|| format!("peer answer {answer} lacks {key}"))
        };
        let runs = match m {
            Measurement::Train => setup.train_runs,
            Measurement::Infer(_) => setup.infer_runs,
        };
        Ok(Latency {
            median_ms: ms("median_ms")?,
            min_ms: ms("min_ms")?,
            max_ms: ms("max_ms")?,
            runs,
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The script ends at the end of its input; kill it only if it does not.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts bench/torch_perf.py in `mode` with piped stdin and stdout.
fn python_script(mode: &str) -> Result<Child> {
    let python = std::env::var("ACTYOLO_PYTHON").unwrap_or_else(|_| "/tmp/ref/bin/python".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/torch_perf.py");
    Command::new(&python)
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {python} (set ACTYOLO_PYTHON)"))
}

/// The setup line torch_perf.py reads first.
fn peer_setup(setup: &BenchSetup) -> Value {
    let dir = env!("CARGO_MANIFEST_DIR");
    json!({
        "cfg": format!("{dir}/configs/models/{MODEL}"),
        "hyp": format!("{dir}/configs/hyps/{HYP}"),
        "batch": TRAIN_BATCH,
        "imgsz": TRAIN_IMGSZ,
        "infer_sizes": INFER_SIZES,
        "targets": setup.targets,
        "rss_steps": RSS_STEPS,
    })
}

/// Peak RSS of a process that only builds the model and runs training steps: actyolo in
/// a child of this binary (this process holds other models and the peer's pipes), PyTorch
/// in its own process (its baseline includes the Python interpreter and torch's libraries).
fn print_peak_rss(setup: &BenchSetup) -> Result<()> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("--rss-child")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("the peak-RSS child failed");
    }
    let ours: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the peak-RSS child's answer")?;
    let torch = python_script("rss").and_then(|mut child| {
        let mut stdin = child.stdin.take().context("peer stdin")?;
        writeln!(stdin, "{}", peer_setup(setup))?;
        drop(stdin);
        let out = child.wait_with_output()?;
        let answer: Value =
            serde_json::from_slice(&out.stdout).context("the PyTorch peak-RSS answer")?;
        answer["peak_rss_kib"]
            .as_f64()
            .with_context(|| format!("PyTorch peak RSS: {answer}"))
    });
    let mib = |kib: f64| kib / 1024.0;
    print!("Peak RSS of a process running {RSS_STEPS} training steps (b{TRAIN_BATCH}@{TRAIN_IMGSZ}): actyolo {:.0} MiB", mib(ours));
    match torch {
        Ok(torch) => println!("; PyTorch {:.0} MiB (ru_maxrss, interpreter and libraries included); actyolo / PyTorch {:.2}×", mib(torch), ours / torch),
        Err(e) => println!("; PyTorch: not measured ({e:#})"),
    }
    Ok(())
}

/// `--rss-child`: the training step alone; prints VmHWM in KiB.
fn train_step_peak_rss() -> Result<()> {
    let mut train = TrainStep::new(
        MODEL,
        NC,
        None,
        (TRAIN_BATCH, TRAIN_IMGSZ),
        &synthetic_targets(TRAIN_BATCH, NC),
        &Device::Cpu,
    )?;
    for _ in 0..RSS_STEPS {
        train.run()?;
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    println!("{kib}");
    Ok(())
}

/// `--profile`: actyolo's training step, then its fused inference, stage by stage.
fn step_profile(setup: &BenchSetup, act: Option<&ActSpec>) -> Result<()> {
    let mut train = TrainStep::new(
        MODEL,
        NC,
        act,
        (TRAIN_BATCH, TRAIN_IMGSZ),
        &setup.targets,
        &Device::Cpu,
    )?;
    train.run()?; // the first step allocates the optimizer's state
    let act_label = act.map_or(String::new(), |a| format!(" with {a}"));
    let title = format!("actyolo training step, yolov5n{act_label} b{TRAIN_BATCH}@{TRAIN_IMGSZ}");
    print_profile(&title, setup.train_runs, || train.run())?;
    let model = inference_model(act)?;
    let x = Tensor::rand(
        0f32,
        1f32,
        (1, 3, INFER_SIZES[0], INFER_SIZES[0]),
        &Device::Cpu,
    )?;
    println!();
    let title = format!(
        "actyolo fused inference, yolov5n{act_label} b1@{}",
        INFER_SIZES[0]
    );
    println!();
    print_profile(&title, setup.infer_runs, || {
        // Unspanned model code (candle's own ops) lands in "other forward"; the span opens
        // on the worker thread that `predict` runs on.
        actyolo::util::runtime::on_pool(|| {
            let _t = profile::span(Stage::OtherForward);
            model.predict(&x).map(|_| ())
        })
    })
}

/// Times `runs` runs of `run` with the profile off, then on, and prints the stages.
fn print_profile(
    title: &str,
    runs: usize,
    mut run: impl FnMut() -> candle_core::Result<()>,
) -> Result<()> {
    let off = time_runs(runs, &mut run)?;
    profile::set_enabled(true);
    profile::reset();
    let on = time_runs(runs, &mut run)?;
    profile::set_enabled(false);
    let times = profile::snapshot();
    // time_runs runs one untimed warm-up before the timed ones; all were recorded.
    let steps = (on.runs + 1) as f64;
    let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps;
    let total = per_step(times.total());
    println!(
        "{title}, {} threads, mean of {steps} runs.",
        rayon::current_num_threads()
    );
    println!("Wall time, median: {:.1} ms with profiling off, {:.1} ms with it on; the stages below add up to {total:.1} ms per run.", off.median_ms, on.median_ms);
    println!("Time is exclusive (a nested span pauses its parent); data wait is none here (one batch held in memory).\n");
    println!("| stage | ms / run | % | spans / run |");
    println!("|---|---|---|---|");
    for stage in Stage::ALL {
        let ms = per_step(times.time(stage));
        if ms > 0.0 {
            println!(
                "| {} | {ms:.1} | {:.1}% | {:.0} |",
                stage.label(),
                100.0 * ms / total,
                times.calls(stage) as f64 / steps
            );
        }
    }
    println!("| **all** | {total:.1} | 100% | |");
    Ok(())
}

/// `--acts`: training step and fused inference time per activation, relative to SiLU.
fn activation_costs(setup: &BenchSetup, list: &str) -> Result<()> {
    let mut specs = parse_list(list)?;
    if !specs.contains(&ActSpec::silu()) {
        specs.insert(0, ActSpec::silu());
    }
    let mut rows = Vec::new();
    for spec in &specs {
        rows.push((
            TrainStep::new(
                MODEL,
                NC,
                Some(spec),
                (TRAIN_BATCH, TRAIN_IMGSZ),
                &setup.targets,
                &Device::Cpu,
            )?,
            inference_model(Some(spec))?,
            Rounds::default(),
            Rounds::default(),
        ));
    }
    let started = Instant::now();
    for round in 0..setup.rounds {
        for (train, infer, train_rounds, infer_rounds) in rows.iter_mut() {
            train_rounds
                .0
                .push(time_runs(setup.train_runs, || train.run())?);
            infer_rounds
                .0
                .push(inference_latency(infer, TRAIN_IMGSZ, setup.infer_runs)?);
        }
        eprintln!(
            "round {}/{} done ({:.0} s)",
            round + 1,
            setup.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    let silu = specs
        .iter()
        .position(|s| *s == ActSpec::silu())
        .map(|i| (rows[i].2.median_ms(), rows[i].3.median_ms()));
    println!("yolov5n (nc={NC}), {} threads; rounds: {}, interleaved over the activations; median of the round medians.", rayon::current_num_threads(), setup.rounds);
    println!("Train path: whether BatchNorm and the activation run as one fused kernel, or the activation module runs after BatchNorm.");
    println!("Inference path (BatchNorm folded into the conv): whether the activation is one pointwise kernel, or its module (own kernel or composed candle ops).\n");
    println!("| activation | train path | train step b{TRAIN_BATCH}@{TRAIN_IMGSZ} ms | × SiLU | inference path | inference b1@{TRAIN_IMGSZ} ms | × SiLU |");
    println!("|---|---|---|---|---|---|---|");
    for (spec, (train, infer, train_rounds, infer_rounds)) in specs.iter().zip(&rows) {
        let (t, i) = (train_rounds.median_ms(), infer_rounds.median_ms());
        let relative = |ours: f64, silu: Option<f64>| {
            silu.map_or("—".to_string(), |s| format!("{:.2}×", ours / s))
        };
        let train_path =
            if first_conv_activation(&train.model).is_some_and(|act| act.fusable(true).is_some()) {
                "fused BN+act"
            } else {
                "generic (BN, then act)"
            };
        let infer_path = if first_conv_activation(infer).is_some_and(|a| a.fusable(false).is_some())
        {
            "pointwise kernel"
        } else {
            "generic (act module)"
        };
        println!(
            "| {spec} | {train_path} | {t:.1} | {} | {infer_path} | {i:.1} | {} |",
            relative(t, silu.map(|s| s.0)),
            relative(i, silu.map(|s| s.1))
        );
    }
    Ok(())
}
