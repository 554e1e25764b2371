//! actyolo's speed on a CUDA GPU: the training step and fused inference of each model, as
//! JSON lines, for the GPU check (tools/gpu_check.sh), which runs PyTorch's yolov5 on the
//! same GPU with bench/torch_gpu.py between these blocks and prints the two side by side.
//!
//! ```text
//! cargo bench --features cuda --bench gpu -- --device 0 --models yolov5n,yolov5s
//! ```
//!
//! Each line: {"engine": "actyolo" (or "actyolo-amp" with --amp), "model", "what": "train" | "infer", "batch", "imgsz",
//! "median_ms", "min_ms", "max_ms", "runs", "tflops"} over `--runs` timed runs after one warm-up,
//! each ended by a device synchronisation; or {"error"} when a measurement fails (out of
//! memory, say), the others going on. The training step is perf's (bench/train_step.rs).

mod train_step;

use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::latency::{time_runs, Latency};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use serde_json::json;
use train_step::{synthetic_targets, TrainStep};

const NC: usize = 80;

#[derive(Parser)]
#[command(about = "actyolo's training step and inference on a CUDA GPU, as JSON lines")]
struct Args {
    /// cpu, 0 or cuda:0.
    #[arg(long, default_value = "0")]
    device: String,
    /// Shipped model configs, comma-separated.
    #[arg(long, default_value = "yolov5n,yolov5s")]
    models: String,
    #[arg(long, default_value_t = 64)]
    train_batch: usize,
    #[arg(long, default_value_t = 640)]
    imgsz: usize,
    /// Inference batch sizes, comma-separated.
    #[arg(long, default_value = "1,32")]
    infer_batches: String,
    /// Timed runs per measurement, after one warm-up.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Mixed precision, as `train --amp` runs: convolutions in bfloat16 (engine
    /// "actyolo-amp").
    #[arg(long)]
    amp: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    actyolo::util::runtime::configure();
    let args = Args::parse();
    let device = actyolo::ops::device::select(&args.device)?;
    if args.amp {
        actyolo::ops::portable::set_mixed_precision(Some(DType::BF16));
    }
    let engine = if args.amp { "actyolo-amp" } else { "actyolo" };
    let batches: Vec<usize> = args
        .infer_batches
        .split(',')
        .map(|b| b.trim().parse())
        .collect::<Result<_, _>>()?;
    for model in args.models.split(',').map(str::trim) {
        let cfg = format!("{model}.yaml");
        // `gflop`: the work measured, for the rate.
        let report = |what: &str, batch: usize, measured: Result<(Latency, f64)>| {
            let line = match measured {
                Ok((l, gflop)) => json!({"engine": engine, "model": model, "what": what,
                    "batch": batch, "imgsz": args.imgsz, "median_ms": l.median_ms,
                    "min_ms": l.min_ms, "max_ms": l.max_ms, "runs": l.runs,
                    "tflops": gflop / l.median_ms}),
                Err(e) => json!({"engine": engine, "model": model, "what": what,
                    "batch": batch, "imgsz": args.imgsz, "error": format!("{e:#}")}),
            };
            println!("{line}");
        };
        let train = || -> Result<(Latency, f64)> {
            let targets = synthetic_targets(args.train_batch, NC);
            let mut step = TrainStep::new(
                &cfg,
                NC,
                None,
                (args.train_batch, args.imgsz),
                &targets,
                &device,
            )?;
            // Forward, input gradients and weight gradients: three forwards' work.
            Ok((
                time_runs(args.runs, || step.run())?,
                3.0 * step.forward_gflop(),
            ))
        };
        report("train", args.train_batch, train());
        for &batch in &batches {
            report(
                "infer",
                batch,
                infer(&cfg, batch, args.imgsz, args.runs, &device),
            );
        }
    }
    Ok(())
}

/// Fused eval-mode inference (decode included, NMS not) of a random batch.
fn infer(
    cfg: &str,
    batch: usize,
    imgsz: usize,
    runs: usize,
    device: &Device,
) -> Result<(Latency, f64)> {
    let config = ModelConfig::load(cfg)?.with_nc(NC)?;
    let mut model = Model::new_on(&config, None, 0, None, device)?;
    model.fuse()?;
    let x = Tensor::rand(0f32, 1f32, (batch, 3, imgsz, imgsz), device)?;
    let latency = time_runs(runs, || {
        model.predict(&x)?;
        device.synchronize()
    })?;
    Ok((latency, model.gflops(imgsz) * batch as f64))
}
