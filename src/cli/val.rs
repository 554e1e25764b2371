//! `actyolo val`: mAP of a weights file on a dataset's val split.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::flags::DeviceFlag;
use super::values::{fraction, positive, upper_percentile};
use actyolo::eval::val::{render_table, run_val, ValOptions, ValRun};
use actyolo::export::int8::Int8Options;
use actyolo::ops::fake_quant::Calibration;
use actyolo::util::fs::increment_path;

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ValArgs {
    /// Weights: .pt, .safetensors, or an ONNX export (.onnx).
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset YAML.
    #[arg(long)]
    pub data: PathBuf,
    /// Inference size (rounded up to a multiple of the model's stride); images are batched
    /// by aspect ratio into rectangles of this long side, as val.py does.
    #[arg(long, default_value_t = 640, value_parser = positive)]
    pub imgsz: usize,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch: usize,
    /// Confidence threshold, 0 to 1.
    #[arg(long, default_value_t = 0.001, value_parser = fraction)]
    pub conf: f64,
    /// NMS IoU threshold, 0 to 1 [default: 0.6 as val.py; 0.7 for YOLOv8 and YOLO11, as
    /// ultralytics 8].
    #[arg(long, value_parser = fraction)]
    pub iou: Option<f64>,
    #[arg(long, default_value_t = 300, value_parser = positive)]
    pub max_det: usize,
    /// Write COCO predictions and ground truth JSON, and print pycocotools-convention mAP.
    #[arg(long)]
    pub save_json: bool,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value = "runs/val")]
    pub project: PathBuf,
    #[arg(long, default_value = "exp")]
    pub name: String,
    /// Validate under simulated INT8 post-training quantization: weights int8 per output
    /// channel, every convolution's input uint8 per tensor, calibrated on training images
    /// (as onnxruntime's quantize_static in QDQ format).
    #[arg(long)]
    pub int8: bool,
    /// Training images to calibrate on (the first, in the dataset's order).
    #[arg(long, default_value_t = 128, value_parser = positive)]
    pub calib_images: usize,
    /// How each input's range is calibrated: the extremes seen, or percentiles.
    #[arg(long, value_enum, default_value_t = CalibMethod::Minmax)]
    pub calib: CalibMethod,
    /// With --calib percentile: the upper percentile (the lower is 100 minus it).
    #[arg(long, default_value_t = 99.99, value_parser = upper_percentile)]
    pub calib_percentile: f64,
    #[command(flatten)]
    pub device: DeviceFlag,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CalibMethod {
    /// The smallest and largest value seen (onnxruntime's default).
    Minmax,
    /// --calib-percentile and its complement.
    Percentile,
}

pub fn run(args: ValArgs) -> anyhow::Result<()> {
    let dir = increment_path(&args.project.join(&args.name), false);
    let options = ValOptions {
        conf_thres: args.conf,
        iou_thres: args.iou,
        max_det: args.max_det,
        save_json: args.save_json.then(|| dir.clone()),
    };
    let run = ValRun {
        weights: args.weights,
        data: args.data,
        imgsz: args.imgsz,
        batch: args.batch,
        workers: args.workers,
        options,
        device: args.device.device,
        int8: args.int8.then_some(Int8Options {
            calib_images: args.calib_images,
            calibration: match args.calib {
                CalibMethod::Minmax => Calibration::MinMax,
                CalibMethod::Percentile => Calibration::Percentile(args.calib_percentile),
            },
        }),
    };
    let report = run_val(&run, &mut |message| eprintln!("{message}"))?;
    let outcome = &report.outcome;
    print!("{}", render_table(outcome, &report.names));
    let [pre, inf, nms] = outcome.speed_ms;
    println!(
        "Speed: {pre:.1}ms pre-process, {inf:.1}ms inference, {nms:.1}ms NMS per image at shape ({}, 3, {}, {})",
        run.batch, report.imgsz, report.imgsz
    );
    println!(
        "The table follows ultralytics' convention (val.py's matching, 101-point interpolated AP)."
    );
    println!(
        "COCO convention (pycocotools' COCOeval, max 100 detections per image): mAP@0.5:0.95 {:.5}, mAP@0.5 {:.5}",
        outcome.coco.map, outcome.coco.map50
    );
    if args.save_json {
        println!(
            "COCO JSON (predictions.json, ground_truth.json) saved to {}",
            dir.display()
        );
    }
    Ok(())
}
