//! The CPU performance harness: actyolo against PyTorch and onnxruntime on this machine,
//! interleaved in one invocation (models at nc=80).
//!
//! ```text
//! cargo bench --bench perf                                  # yolov5n: every row below
//! cargo bench --bench perf -- --model yolov5n,yolov5s       # the issue's full table
//! cargo bench --bench perf -- --model yolov5s --batch 1 --imgsz 640
//! cargo bench --bench perf -- --profile                     # where actyolo's time goes
//! cargo bench --bench perf -- --acts silu,relu,mish         # per-activation cost
//! cargo bench --bench perf -- --threads 1 --train none      # every engine on one thread
//! cargo bench --bench perf -- --help
//! ```
//!
//! Rows: a) the training step (forward in train mode, the YOLOv5 loss on fixed synthetic
//! targets, backward, gradient clipping, SGD step; data prefetched), at batch 8, 320 px and
//! batch 16, 640 px; b) fused inference (decode included, NMS not) at batch 1, 640 and
//! 320 px, and batch 32, 640 px, for actyolo, PyTorch, and onnxruntime on yolov5's own
//! export and on actyolo's export of the same weights; c) a whole `detect` per image (model
//! loading, image decoding, letterbox, inference, NMS, saving the annotated image) over
//! 16 images, against yolov5's detect.py running yolov5's ONNX export in onnxruntime.
//!
//! Fairness: every engine's block of a round (one row, one engine: a warm-up, then the timed
//! runs) runs in a process of its own that exits before the next block starts, so no
//! engine's threads are alive, spinning or not, while another engine is timed. Each engine
//! runs with its defaults: PyTorch with as many threads as cores and OpenMP's default wait
//! policy (`--torch-omp-wait-policy` to change it), onnxruntime with default session
//! options, actyolo as its CLI runs. The order of the engines alternates between rounds so
//! that drift hits all alike; a row reports the median of the round medians. `--threads N`
//! gives every engine N threads instead (rayon's pool, torch's intra-op threads and
//! onnxruntime's intra-op threads), to compare the engines' single-threaded work; it leaves
//! out the whole-detect row, whose detect.py sets up onnxruntime by itself.
//!
//! The peers run in the reference Python environment of ../shared/REFERENCE.md
//! (`ACTYOLO_PYTHON`, default /tmp/ref/bin/python) through `bench/torch_perf.py`, which
//! also makes the shared weights (a seeded yolov5 checkpoint) and yolov5's exports. Without
//! it the table has actyolo's rows only, on seeded weights of its own.

mod train_step;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use actyolo::act::spec::parse_list;
use actyolo::act::ActSpec;
use actyolo::detect::{detect, DetectOptions};
use actyolo::eval::nms::NmsOptions;
use actyolo::export::{export, ExportOptions};
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::latency::{inference_latency, time_runs, Latency};
use actyolo::model::weights::load_model;
use actyolo::ops::gemm::{matmul, MatRef};
use actyolo::util::profile::{self, Stage};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use train_step::{synthetic_targets, TrainStep};

const HYP: &str = "hyp.scratch-low.yaml";
const NC: usize = 80;
const MODELS: [&str; 3] = ["yolov5n", "yolov5s", "yolov7-tiny"];
/// Training steps each peak-RSS process runs.
const RSS_STEPS: usize = 3;
/// The sgemm that measures the FP32 peak: n × n × n.
const PEAK_GEMM_N: usize = 2048;
/// Images of the whole-detect row, and their size (square, so that detect.py's fixed-shape
/// ONNX input and actyolo's minimal letterbox are the same 640 × 640).
const DETECT_IMAGES: usize = 16;
const DETECT_IMGSZ: usize = 640;
/// Timed whole-detect runs per round (each over all the images), after one warm-up.
const DETECT_RUNS: usize = 3;
const DEFAULT_ACTS: &str = "silu,relu,nn.LeakyReLU(0.1),hardswish,mish,gelu,prelu,AconC,FReLU";

#[derive(Parser)]
#[command(
    about = "Training-step, inference and detect speed: actyolo against PyTorch and onnxruntime"
)]
struct Args {
    /// Models, comma-separated: yolov5n, yolov5s, yolov7-tiny.
    #[arg(long, value_delimiter = ',', default_value = "yolov5n")]
    model: Vec<String>,
    /// Training rows, BATCH@SIZE, comma-separated ("none" for none).
    #[arg(long, default_value = "8@320,16@640")]
    train: String,
    /// Inference rows, BATCH@SIZE, comma-separated ("none" for none).
    #[arg(long, default_value = "1@640,1@320,32@640")]
    infer: String,
    /// One inference row (batch 1 unless --batch) and one training row (batch 8 unless
    /// --batch) at this size, instead of --infer and --train.
    #[arg(long)]
    imgsz: Option<usize>,
    /// One inference row and one training row at this batch (640 px for inference and
    /// 320 px for training unless --imgsz), instead of --infer and --train.
    #[arg(long)]
    batch: Option<usize>,
    /// Leave out the whole-detect row.
    #[arg(long)]
    no_detect: bool,
    /// PyTorch's OMP_WAIT_POLICY (unset, OpenMP's default, unless given).
    #[arg(long)]
    torch_omp_wait_policy: Option<String>,
    /// Threads for every engine (its default, one per core, unless given); leaves out the
    /// whole-detect row.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Print the per-stage profile of actyolo's training step and inference (first model,
    /// first rows) instead of the comparison (with `--acts`: for each of those activations).
    #[arg(long)]
    profile: bool,
    /// Print the per-activation cost table (first model, first rows) instead of the
    /// comparison, for these comma-separated specs (a representative list when none given).
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_ACTS)]
    acts: Option<String>,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed training steps per engine and round at batch 8, 320 px, after one warm-up
    /// step; larger rows run fewer (at least 3).
    #[arg(long, default_value_t = 5)]
    train_runs: usize,
    /// Timed inferences per engine and round at batch 1, 640 px, after one warm-up; larger
    /// rows run fewer (at least 3), smaller ones as many.
    #[arg(long, default_value_t = 15)]
    infer_runs: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run only the training step and print this process's peak RSS.
    #[arg(long, hide = true)]
    rss_child: bool,
    /// Internal: run one actyolo block (a JSON request) and print its timings as JSON.
    #[arg(long, hide = true)]
    block: Option<String>,
}

/// A batch and a square image size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Shape {
    batch: usize,
    imgsz: usize,
}

impl Shape {
    fn parse_list(list: &str) -> Result<Vec<Shape>> {
        if list == "none" {
            return Ok(vec![]);
        }
        list.split(',')
            .map(|item| {
                let (b, s) = item
                    .split_once('@')
                    .with_context(|| format!("{item:?}: expected BATCH@SIZE, e.g. 1@640"))?;
                let shape = Shape {
                    batch: b
                        .trim()
                        .parse()
                        .with_context(|| format!("{item:?}: batch"))?,
                    imgsz: s
                        .trim()
                        .parse()
                        .with_context(|| format!("{item:?}: size"))?,
                };
                if shape.batch == 0 || shape.imgsz == 0 || !shape.imgsz.is_multiple_of(32) {
                    bail!("{item:?}: the batch must be positive and the size a multiple of 32");
                }
                Ok(shape)
            })
            .collect()
    }

    fn pixels(self) -> usize {
        self.batch * self.imgsz * self.imgsz
    }

    /// `base` runs at `reference`, fewer for more pixels (at least 3), never more.
    fn runs(self, base: usize, reference: Shape) -> usize {
        (base * reference.pixels() / self.pixels()).clamp(3.min(base), base.max(1))
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b{}@{}", self.batch, self.imgsz)
    }
}

const TRAIN_REFERENCE: Shape = Shape {
    batch: 8,
    imgsz: 320,
};
const INFER_REFERENCE: Shape = Shape {
    batch: 1,
    imgsz: 640,
};

/// What the comparison measures.
struct BenchSetup {
    models: Vec<String>,
    train: Vec<Shape>,
    infer: Vec<Shape>,
    detect: bool,
    rounds: usize,
    train_runs: usize,
    infer_runs: usize,
    torch_omp_wait_policy: Option<String>,
    /// Every engine's threads, when not its default.
    threads: Option<usize>,
}

impl BenchSetup {
    fn new(args: &Args) -> Result<BenchSetup> {
        for model in &args.model {
            if !MODELS.contains(&model.as_str()) {
                bail!("--model {model}: one of {}", MODELS.join(", "));
            }
        }
        let (train, infer) = if args.imgsz.is_some() || args.batch.is_some() {
            let one = |batch: usize, imgsz: usize| Shape::parse_list(&format!("{batch}@{imgsz}"));
            (
                one(args.batch.unwrap_or(8), args.imgsz.unwrap_or(320))?,
                one(args.batch.unwrap_or(1), args.imgsz.unwrap_or(640))?,
            )
        } else {
            (
                Shape::parse_list(&args.train)?,
                Shape::parse_list(&args.infer)?,
            )
        };
        Ok(BenchSetup {
            models: args.model.clone(),
            train,
            infer,
            detect: !args.no_detect && args.threads.is_none(),
            rounds: args.rounds.max(1),
            train_runs: args.train_runs,
            infer_runs: args.infer_runs,
            torch_omp_wait_policy: args.torch_omp_wait_policy.clone(),
            threads: args.threads.map(usize::from),
        })
    }

    /// The model of `--profile` and `--acts`, and their rows.
    fn first(&self) -> Result<(String, Shape, Shape)> {
        Ok((
            self.models.first().context("--model is empty")?.clone(),
            *self.train.first().unwrap_or(&TRAIN_REFERENCE),
            *self.infer.first().unwrap_or(&Shape {
                batch: 1,
                imgsz: 320,
            }),
        ))
    }
}

fn main() -> Result<()> {
    // One candle thread, and freed memory kept for reuse, as the CLI runs.
    actyolo::util::runtime::configure();
    let args = Args::parse();
    if let Some(threads) = args.threads {
        // Before rayon's pool exists; the blocks' processes inherit it.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if let Some(request) = &args.block {
        let request: BlockRequest = serde_json::from_str(request).context("--block")?;
        let answer = match run_block(&request) {
            Ok(latency) => latency_json(&latency),
            Err(e) => json!({ "error": format!("{e:#}") }),
        };
        println!("{answer}");
        return Ok(());
    }
    let setup = BenchSetup::new(&args)?;
    if args.rss_child {
        let (model, train, _) = setup.first()?;
        return train_step_peak_rss(&model, train);
    }
    match &args.acts {
        Some(list) if args.profile => parse_list(list)?
            .iter()
            .try_for_each(|spec| step_profile(&setup, Some(spec))),
        Some(list) => activation_costs(&setup, list),
        None if args.profile => step_profile(&setup, None),
        None => compare(&setup),
    }
}

fn cfg_name(model: &str) -> String {
    format!("{model}.yaml")
}

fn cfg_path(model: &str) -> String {
    format!("{}/configs/models/{model}.yaml", env!("CARGO_MANIFEST_DIR"))
}

fn first_conv_activation(model: &Model) -> Option<&actyolo::act::Activation> {
    model
        .layers
        .iter()
        .flat_map(|l| &l.blocks)
        .flat_map(|b| b.activations())
        .next()
}

/// A fused (Conv+BN folded) inference model on seeded weights.
fn inference_model(model: &str, act: Option<&ActSpec>) -> Result<Model> {
    let mut model = Model::new(
        &ModelConfig::load(&cfg_name(model))?.with_nc(NC)?,
        act,
        0,
        None,
    )?;
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

/// Who runs a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Engine {
    Actyolo,
    Torch,
    /// onnxruntime on yolov5's own export.
    OrtYolov5,
    /// onnxruntime on actyolo's export of the same weights.
    OrtActyolo,
    /// yolov5's detect.py with yolov5's ONNX export in onnxruntime.
    DetectPy,
}

impl Engine {
    const ALL: [Engine; 5] = [
        Engine::Actyolo,
        Engine::Torch,
        Engine::OrtYolov5,
        Engine::OrtActyolo,
        Engine::DetectPy,
    ];

    fn label(self) -> &'static str {
        match self {
            Engine::Actyolo => "actyolo",
            Engine::Torch => "PyTorch",
            Engine::OrtYolov5 => "onnxruntime, yolov5's export",
            Engine::OrtActyolo => "onnxruntime, actyolo's export",
            Engine::DetectPy => "detect.py, onnxruntime",
        }
    }

    /// The name torch_perf.py's block mode knows it by.
    fn peer_name(self) -> &'static str {
        match self {
            Engine::Actyolo => "actyolo",
            Engine::Torch => "torch",
            Engine::OrtYolov5 | Engine::OrtActyolo => "onnxruntime",
            Engine::DetectPy => "detect.py",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Measurement {
    Train(String, Shape),
    Infer(String, Shape),
    Detect(String),
}

impl Measurement {
    fn model(&self) -> &str {
        match self {
            Measurement::Train(m, _) | Measurement::Infer(m, _) | Measurement::Detect(m) => m,
        }
    }

    fn label(&self) -> String {
        match self {
            Measurement::Train(m, s) => format!("{m} train step {s}"),
            Measurement::Infer(m, s) => format!("{m} inference {s} fused"),
            Measurement::Detect(m) => format!("{m} whole detect, per image @{DETECT_IMGSZ}"),
        }
    }

    fn runs_on(&self, engine: Engine) -> bool {
        match self {
            Measurement::Train(..) => matches!(engine, Engine::Actyolo | Engine::Torch),
            Measurement::Infer(..) => engine != Engine::DetectPy,
            Measurement::Detect(_) => matches!(engine, Engine::Actyolo | Engine::DetectPy),
        }
    }
}

/// One block, as the actyolo child and torch_perf.py's block mode read it.
#[derive(Debug, Serialize, Deserialize)]
struct BlockRequest {
    engine: String,
    /// "train", "infer" or "detect".
    kind: String,
    model: String,
    cfg: String,
    hyp: String,
    /// The shared checkpoint, when the peers made one.
    weights: Option<PathBuf>,
    onnx: Option<PathBuf>,
    batch: usize,
    imgsz: usize,
    runs: usize,
    targets: Vec<[f32; 6]>,
    /// The whole-detect row's images and its output folder.
    source: Option<PathBuf>,
    project: Option<PathBuf>,
    /// The peers' threads, when not their default.
    threads: Option<usize>,
}

/// The files every engine shares: a scratch folder, removed at the end.
struct Workspace {
    dir: PathBuf,
    /// The seeded yolov5 checkpoint per model, when the peers made it.
    weights: HashMap<String, PathBuf>,
    /// The engines that can run (actyolo always).
    engines: Vec<Engine>,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn onnx_path(dir: &Path, model: &str, shape: Shape, exporter: Engine) -> PathBuf {
    let tool = if exporter == Engine::OrtYolov5 {
        ""
    } else {
        ".actyolo"
    };
    dir.join(format!(
        "{model}_b{}_{}{tool}.onnx",
        shape.batch, shape.imgsz
    ))
}

impl Workspace {
    /// Makes the scratch folder, the detect images, and (through torch_perf.py's prepare
    /// mode) the checkpoints and yolov5's exports; actyolo exports the same checkpoints.
    fn prepare(setup: &BenchSetup) -> Result<Workspace> {
        let dir = std::env::temp_dir().join(format!("actyolo-perf-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("images"))?;
        let mut workspace = Workspace {
            dir,
            weights: HashMap::new(),
            engines: vec![Engine::Actyolo],
        };
        write_detect_images(&workspace.dir.join("images"))?;
        let request = json!({
            "dir": workspace.dir,
            "models": setup.models.iter().map(|m| json!({"name": m, "cfg": cfg_path(m)})).collect::<Vec<_>>(),
            "infer": setup.infer,
            "detect_shape": INFER_REFERENCE,
        });
        let answer = match python_script("prepare", &request, None) {
            Ok(answer) => answer,
            Err(e) => {
                println!("(no PyTorch/onnxruntime peers: {e:#}; actyolo numbers only)\n");
                return Ok(workspace);
            }
        };
        workspace.engines.push(Engine::Torch);
        for model in &setup.models {
            workspace
                .weights
                .insert(model.clone(), workspace.dir.join(format!("{model}.pt")));
        }
        if answer["onnxruntime"].as_bool() == Some(true) {
            workspace.engines.push(Engine::OrtYolov5);
            workspace.engines.push(Engine::OrtActyolo);
            for (model, shape) in setup
                .models
                .iter()
                .flat_map(|m| setup.infer.iter().map(move |s| (m, *s)))
            {
                export(&ExportOptions {
                    weights: workspace.weights[model].clone(),
                    cfg: None,
                    imgsz: vec![shape.imgsz],
                    batch: shape.batch,
                    dynamic: false,
                    opset: 17,
                    half: false,
                    out: Some(onnx_path(&workspace.dir, model, shape, Engine::OrtActyolo)),
                    device: Device::Cpu,
                })
                .with_context(|| format!("actyolo's export of {model} at {shape}"))?;
            }
            if answer["detect"].as_bool() == Some(true) {
                workspace.engines.push(Engine::DetectPy);
            }
        }
        Ok(workspace)
    }

    fn request(&self, setup: &BenchSetup, m: &Measurement, engine: Engine) -> BlockRequest {
        let model = m.model().to_string();
        let (kind, shape, runs) = match m {
            Measurement::Train(_, s) => ("train", *s, s.runs(setup.train_runs, TRAIN_REFERENCE)),
            Measurement::Infer(_, s) => ("infer", *s, s.runs(setup.infer_runs, INFER_REFERENCE)),
            Measurement::Detect(_) => ("detect", INFER_REFERENCE, DETECT_RUNS),
        };
        let onnx = match engine {
            Engine::OrtActyolo => Some(onnx_path(&self.dir, &model, shape, Engine::OrtActyolo)),
            Engine::OrtYolov5 | Engine::DetectPy => {
                Some(onnx_path(&self.dir, &model, shape, Engine::OrtYolov5))
            }
            Engine::Actyolo | Engine::Torch => None,
        };
        BlockRequest {
            engine: engine.peer_name().to_string(),
            kind: kind.to_string(),
            cfg: cfg_path(&model),
            hyp: format!("{}/configs/hyps/{HYP}", env!("CARGO_MANIFEST_DIR")),
            weights: self.weights.get(&model).cloned(),
            onnx,
            batch: shape.batch,
            imgsz: shape.imgsz,
            runs,
            // Only the training step reads targets, only detect the images and output folder.
            targets: match m {
                Measurement::Train(..) => synthetic_targets(shape.batch, NC),
                _ => vec![],
            },
            source: matches!(m, Measurement::Detect(_)).then(|| self.dir.join("images")),
            project: matches!(m, Measurement::Detect(_)).then(|| self.dir.join("detect")),
            threads: setup.threads,
            model,
        }
    }
}

/// Seeded noise images with a few flat rectangles, square, as JPEG files.
fn write_detect_images(dir: &Path) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for i in 0..DETECT_IMAGES {
        let size = DETECT_IMGSZ as u32;
        let mut image = image::RgbImage::from_fn(size, size, |_, _| {
            image::Rgb([rng.random(), rng.random(), rng.random()])
        });
        for _ in 0..4 {
            let (x0, y0) = (rng.random_range(0..size / 2), rng.random_range(0..size / 2));
            let (w, h) = (
                rng.random_range(32..size / 2),
                rng.random_range(32..size / 2),
            );
            let colour = image::Rgb([rng.random(), rng.random(), rng.random()]);
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    image.put_pixel(x, y, colour);
                }
            }
        }
        image.save(dir.join(format!("{i:02}.jpg")))?;
    }
    Ok(())
}

fn latency_json(l: &Latency) -> Value {
    json!({ "median_ms": l.median_ms, "min_ms": l.min_ms, "max_ms": l.max_ms, "runs": l.runs })
}

/// `--block`: one actyolo block, in this (child) process.
fn run_block(request: &BlockRequest) -> Result<Latency> {
    let shape = Shape {
        batch: request.batch,
        imgsz: request.imgsz,
    };
    match request.kind.as_str() {
        "train" => {
            let mut train = TrainStep::new(
                &cfg_name(&request.model),
                NC,
                None,
                (shape.batch, shape.imgsz),
                &request.targets,
                &Device::Cpu,
            )?;
            Ok(time_runs(request.runs, || train.run())?)
        }
        "infer" => {
            let mut model = match &request.weights {
                Some(weights) => load_model(weights, None, None, None)?.0,
                None => Model::new(
                    &ModelConfig::load(&cfg_name(&request.model))?.with_nc(NC)?,
                    None,
                    0,
                    None,
                )?,
            };
            model.fuse()?;
            Ok(inference_latency(
                &model,
                shape.batch,
                shape.imgsz,
                request.runs,
            )?)
        }
        "detect" => {
            let (Some(weights), Some(source), Some(project)) =
                (&request.weights, &request.source, &request.project)
            else {
                bail!("the detect block needs the shared checkpoint and the images");
            };
            let options = DetectOptions {
                weights: weights.clone(),
                source: source.display().to_string(),
                cfg: None,
                imgsz: shape.imgsz,
                nms: NmsOptions {
                    max_det: 1000,
                    ..NmsOptions::default()
                },
                family_iou: true,
                save_txt: false,
                save_conf: false,
                save_json: false,
                project: project.clone(),
                name: "actyolo".into(),
                exist_ok: true,
                device: Device::Cpu,
            };
            let latency = time_runs(request.runs, || {
                detect(&options, &mut |_| {}).map_err(candle_core::Error::wrap)?;
                Ok(())
            })?;
            let per_image = |ms: f64| ms / DETECT_IMAGES as f64;
            Ok(Latency {
                median_ms: per_image(latency.median_ms),
                min_ms: per_image(latency.min_ms),
                max_ms: per_image(latency.max_ms),
                runs: latency.runs,
            })
        }
        other => bail!("unknown block kind {other:?}"),
    }
}

/// Runs one block in a fresh process (this binary for actyolo, torch_perf.py for the
/// peers), which exits before this returns.
fn run_engine_block(request: &BlockRequest, engine: Engine, setup: &BenchSetup) -> Result<Latency> {
    let answer = if engine == Engine::Actyolo {
        let out = Command::new(std::env::current_exe()?)
            .arg("--block")
            .arg(serde_json::to_string(request)?)
            .stderr(Stdio::inherit())
            .output()?;
        serde_json::from_slice::<Value>(&out.stdout).with_context(|| {
            format!(
                "actyolo's block answered {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?
    } else {
        python_script(
            "block",
            &serde_json::to_value(request)?,
            setup.torch_omp_wait_policy.as_deref(),
        )?
    };
    if let Some(e) = answer.get("error") {
        bail!("{} {}: {e}", engine.label(), request.kind);
    }
    let ms = |key: &str| {
        answer[key]
            .as_f64()
            .with_context(|| format!("block answer {answer} lacks {key}"))
    };
    Ok(Latency {
        median_ms: ms("median_ms")?,
        min_ms: ms("min_ms")?,
        max_ms: ms("max_ms")?,
        runs: request.runs,
    })
}

/// The machine, for the table's heading: CPU model, cores, date.
fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let date = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {} cores, {date}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// The comparison: every row, every engine, interleaved; then peak RSS.
fn compare(setup: &BenchSetup) -> Result<()> {
    let workspace = Workspace::prepare(setup)?;
    let mut measurements: Vec<Measurement> = Vec::new();
    for model in &setup.models {
        measurements.extend(
            setup
                .train
                .iter()
                .map(|s| Measurement::Train(model.clone(), *s)),
        );
        measurements.extend(
            setup
                .infer
                .iter()
                .map(|s| Measurement::Infer(model.clone(), *s)),
        );
        if setup.detect && workspace.engines.contains(&Engine::DetectPy) {
            measurements.push(Measurement::Detect(model.clone()));
        }
    }
    let mut results: HashMap<(Measurement, Engine), Rounds> = HashMap::new();
    // The peak is measured in every round, so that it sees the same load as the rest.
    let mut peak = 0f64;
    let started = Instant::now();
    for round in 0..setup.rounds {
        peak = peak.max(sgemm_peak_gflops()?);
        for m in &measurements {
            let mut order: Vec<Engine> = workspace
                .engines
                .iter()
                .copied()
                .filter(|e| m.runs_on(*e))
                .collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for engine in order {
                let request = workspace.request(setup, m, engine);
                match run_engine_block(&request, engine, setup) {
                    Ok(latency) => results
                        .entry((m.clone(), engine))
                        .or_default()
                        .0
                        .push(latency),
                    Err(e) => eprintln!("{}: {}: {e:#}", m.label(), engine.label()),
                }
            }
        }
        eprintln!(
            "round {}/{} done ({:.0} s)",
            round + 1,
            setup.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    println!("Machine: {}. FP32 peak {peak:.0} GFLOP/s (sgemm {PEAK_GEMM_N}³ on {} threads, best of 3 per round).", machine_line(), rayon::current_num_threads());
    println!("GFLOP per inference: ultralytics' count (2 × MACs, BatchNorm folded) × batch; a training step counts 3 × forward (forward, input and weight gradients).");
    println!(
        "Rounds: {}, interleaved, the engine order alternating; median of the round medians (min–max over all runs).",
        setup.rounds
    );
    println!("Every engine's block of a round runs in its own process, which exits before the next block starts: no engine's threads are alive while another is timed.");
    if workspace.engines.contains(&Engine::Torch) {
        let (torch_threads, ort_options) = match setup.threads {
            Some(n) => (
                format!("{n} intra-op threads (--threads)"),
                format!("{n} intra-op threads (--threads), other options default"),
            ),
            None => (
                format!(
                    "{} threads (one per core)",
                    std::thread::available_parallelism().map_or(0, |n| n.get())
                ),
                "default session options".into(),
            ),
        };
        println!(
            "PyTorch: {torch_threads}, OMP_WAIT_POLICY {}; onnxruntime: {ort_options}; the same seeded weights everywhere.",
            setup
                .torch_omp_wait_policy
                .as_deref()
                .unwrap_or("unset (OpenMP's default)"),
        );
    }
    println!("Whole detect: wall time of one run over {DETECT_IMAGES} images of {DETECT_IMGSZ}×{DETECT_IMGSZ}, per image (model loading, decoding, letterbox, inference, NMS, saving), after one warm-up run.");
    println!();
    println!("| measurement | engine | median ms | min–max ms | actyolo / engine | GFLOP/s | % of peak |");
    println!("|---|---|---|---|---|---|---|");
    let mut gflops: HashMap<String, Model> = HashMap::new();
    for m in &measurements {
        let model = match gflops.entry(m.model().to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(inference_model(m.model(), None)?)
            }
        };
        let gflop = match m {
            Measurement::Train(_, s) => Some(3.0 * model.gflops(s.imgsz) * s.batch as f64),
            Measurement::Infer(_, s) => Some(model.gflops(s.imgsz) * s.batch as f64),
            Measurement::Detect(_) => None,
        };
        let ours = results
            .get(&(m.clone(), Engine::Actyolo))
            .map(Rounds::median_ms);
        for engine in Engine::ALL {
            let Some(r) = results.get(&(m.clone(), engine)) else {
                continue;
            };
            let ratio = match (engine, ours) {
                (Engine::Actyolo, _) | (_, None) => "—".to_string(),
                (_, Some(ours)) => format!("{:.2}×", ours / r.median_ms()),
            };
            let (rate, share) = match gflop {
                Some(g) => {
                    let rate = g / (r.median_ms() * 1e-3);
                    (format!("{rate:.1}"), format!("{:.1}%", 100.0 * rate / peak))
                }
                None => ("—".into(), "—".into()),
            };
            println!(
                "| {} | {} | {:.1} | {:.1}–{:.1} | {ratio} | {rate} | {share} |",
                m.label(),
                engine.label(),
                r.median_ms(),
                r.min_ms(),
                r.max_ms(),
            );
        }
    }
    println!();
    print_peak_rss(setup)
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

/// Runs bench/torch_perf.py in `mode` with `request` as its one input line and returns
/// its one JSON answer; an answer with "error" is an error.
fn python_script(mode: &str, request: &Value, omp_wait_policy: Option<&str>) -> Result<Value> {
    let python = std::env::var("ACTYOLO_PYTHON").unwrap_or_else(|_| "/tmp/ref/bin/python".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/torch_perf.py");
    let mut command = Command::new(&python);
    command
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(policy) = omp_wait_policy {
        command.env("OMP_WAIT_POLICY", policy);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {python} (set ACTYOLO_PYTHON)"))?;
    writeln!(child.stdin.take().context("peer stdin")?, "{request}")?;
    let out = child.wait_with_output()?;
    let answer: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "torch_perf.py {mode} answered {:?} (run it by hand to see why)",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    match answer.get("error") {
        Some(e) => bail!("torch_perf.py {mode}: {e}"),
        None => Ok(answer),
    }
}

/// Peak RSS of a process that only builds the model and runs training steps (first model,
/// first training row): actyolo in a child of this binary, PyTorch in its own process (its
/// baseline includes the Python interpreter and torch's libraries).
fn print_peak_rss(setup: &BenchSetup) -> Result<()> {
    let (model, shape, _) = setup.first()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.args([
        "--rss-child",
        "--model",
        &model,
        "--train",
        &format!("{}@{}", shape.batch, shape.imgsz),
    ]);
    let out = command.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("the peak-RSS child failed");
    }
    let ours: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the peak-RSS child's answer")?;
    let request = json!({
        "cfg": cfg_path(&model),
        "hyp": format!("{}/configs/hyps/{HYP}", env!("CARGO_MANIFEST_DIR")),
        "batch": shape.batch,
        "imgsz": shape.imgsz,
        "targets": synthetic_targets(shape.batch, NC),
        "rss_steps": RSS_STEPS,
    });
    let torch = python_script("rss", &request, None).and_then(|answer| {
        answer["peak_rss_kib"]
            .as_f64()
            .with_context(|| format!("PyTorch peak RSS: {answer}"))
    });
    let mib = |kib: f64| kib / 1024.0;
    print!("Peak RSS of a process running {RSS_STEPS} {model} training steps ({shape}): actyolo {:.0} MiB", mib(ours));
    match torch {
        Ok(torch) => println!("; PyTorch {:.0} MiB (ru_maxrss, interpreter and libraries included); actyolo / PyTorch {:.2}×", mib(torch), ours / torch),
        Err(e) => println!("; PyTorch: not measured ({e:#})"),
    }
    Ok(())
}

/// `--rss-child`: the training step alone; prints VmHWM in KiB.
fn train_step_peak_rss(model: &str, shape: Shape) -> Result<()> {
    let mut train = TrainStep::new(
        &cfg_name(model),
        NC,
        None,
        (shape.batch, shape.imgsz),
        &synthetic_targets(shape.batch, NC),
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
    let (name, train_shape, infer_shape) = setup.first()?;
    let mut train = TrainStep::new(
        &cfg_name(&name),
        NC,
        act,
        (train_shape.batch, train_shape.imgsz),
        &synthetic_targets(train_shape.batch, NC),
        &Device::Cpu,
    )?;
    train.run()?; // the first step allocates the optimizer's state
    let act_label = act.map_or(String::new(), |a| format!(" with {a}"));
    let title = format!(
        "actyolo training step, {name}{act_label} {train_shape} ({:.1} GFLOP)",
        3.0 * train.forward_gflop()
    );
    print_profile(&title, setup.train_runs, || train.run())?;
    let model = inference_model(&name, act)?;
    let x = Tensor::rand(
        0f32,
        1f32,
        (infer_shape.batch, 3, infer_shape.imgsz, infer_shape.imgsz),
        &Device::Cpu,
    )?;
    println!();
    let title = format!("actyolo fused inference, {name}{act_label} {infer_shape}");
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
    let (name, train_shape, infer_shape) = setup.first()?;
    let targets = synthetic_targets(train_shape.batch, NC);
    let mut rows = Vec::new();
    for spec in &specs {
        rows.push((
            TrainStep::new(
                &cfg_name(&name),
                NC,
                Some(spec),
                (train_shape.batch, train_shape.imgsz),
                &targets,
                &Device::Cpu,
            )?,
            inference_model(&name, Some(spec))?,
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
            infer_rounds.0.push(inference_latency(
                infer,
                infer_shape.batch,
                infer_shape.imgsz,
                setup.infer_runs,
            )?);
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
    println!("{name} (nc={NC}), {} threads; rounds: {}, interleaved over the activations; median of the round medians.", rayon::current_num_threads(), setup.rounds);
    println!("Train path: whether BatchNorm and the activation run as one fused kernel, or the activation module runs after BatchNorm.");
    println!("Inference path (BatchNorm folded into the conv): whether the activation is one pointwise kernel, or its module (own kernel or composed candle ops).\n");
    println!("| activation | train path | train step {train_shape} ms | × SiLU | inference path | inference {infer_shape} ms | × SiLU |");
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
