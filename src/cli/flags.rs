//! The training flags `train` and `compare` share, declared once with train.py's defaults
//! (`compare` changes three of them for its demo).

use std::path::PathBuf;

use clap::Args;

use super::values::{device, positive};
use actyolo::train::optim::{OptimizerKind, UnknownOptimizer};
use actyolo::train::trainer::TrainOptions;
use candle_core::Device;

#[derive(Debug, Args)]
pub struct TrainFlags {
    /// Model config: a shipped name (yolov5n.yaml, yolov7-tiny.yaml, ...) or a YAML path.
    #[arg(long, default_value = "yolov5n.yaml")]
    pub cfg: String,
    /// Dataset YAML (ultralytics format); `actyolo data synth` makes one.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Hyperparameters: a shipped name (hyp.scratch-low.yaml, yolov7's hyp.scratch.tiny.yaml and hyp.scratch.p5.yaml, ultralytics 8's hyp.v8-default.yaml, which YOLOv8 and YOLO11 take by default) or a YAML path.
    #[arg(long, default_value = "hyp.scratch-low.yaml")]
    pub hyp: String,
    /// Initial weights to fine-tune from (.pt or .safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Epochs to train; with `train --resume`, a new total that extends the run.
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub batch: usize,
    /// Train and validation image size (rounded up to a multiple of the model's stride).
    #[arg(long, default_value_t = 640, value_parser = positive)]
    pub imgsz: usize,
    /// SGD, Adam, AdamW, or auto: the model family's default (SGD for YOLOv5 and YOLOv7;
    /// for YOLOv8 and YOLO11 ultralytics 8's rule, AdamW with a fitted lr for short runs).
    #[arg(long, default_value = "auto", value_parser = optimizer)]
    pub optimizer: OptimizerKind,
    /// Train the last N epochs without mosaic (default: 10 for YOLOv8 and YOLO11, as
    /// ultralytics 8; 0 for YOLOv5 and YOLOv7).
    #[arg(long)]
    pub close_mosaic: Option<usize>,
    /// Cosine (one-cycle) LR schedule instead of linear.
    #[arg(long)]
    pub cos_lr: bool,
    /// Data-loading threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Stop after this many epochs without improvement (0: never).
    #[arg(long, default_value_t = 100)]
    pub patience: usize,
    /// Layers to freeze: N freezes layers 0 to N-1 (--freeze 10: YOLOv5's backbone);
    /// several numbers freeze those layers (--freeze 0 1 2).
    #[arg(long, num_args = 1..)]
    pub freeze: Vec<usize>,
    /// Keep the config's anchors without checking them.
    #[arg(long)]
    pub noautoanchor: bool,
    /// Rectangular training: batches of similar aspect ratio letterboxed to the smallest
    /// rectangle, in a fixed order, without mosaic (as train.py's --rect).
    #[arg(long)]
    pub rect: bool,
    /// Mixed precision on a GPU: convolutions in bfloat16, the rest in FP32 (ignored on
    /// the CPU, with a note).
    #[arg(long)]
    pub amp: bool,
    #[command(flatten)]
    pub device: DeviceFlag,
}

/// `--device`, which every command that computes takes.
#[derive(Debug, Args)]
pub struct DeviceFlag {
    /// Where to compute: cpu, or a CUDA GPU as 0 or cuda:0 (a build with the `cuda` feature).
    #[arg(long, default_value = "cpu", value_parser = device)]
    pub device: Device,
}

fn optimizer(text: &str) -> Result<OptimizerKind, UnknownOptimizer> {
    text.parse()
}

/// Where a run goes and what it runs with, beside the shared flags.
pub struct RunPlace {
    pub act: Option<String>,
    pub seed: u64,
    pub project: PathBuf,
    pub name: String,
    pub exist_ok: bool,
}

impl TrainFlags {
    /// The options of a run on `data`.
    pub fn into_options(self, data: PathBuf, place: RunPlace) -> TrainOptions {
        TrainOptions {
            cfg: self.cfg,
            data,
            act: place.act,
            hyp: self.hyp,
            weights: self.weights,
            epochs: self.epochs,
            batch: self.batch,
            imgsz: self.imgsz,
            optimizer: self.optimizer,
            cos_lr: self.cos_lr,
            project: place.project,
            name: place.name,
            exist_ok: place.exist_ok,
            workers: self.workers,
            seed: place.seed,
            patience: self.patience,
            freeze: self.freeze,
            noautoanchor: self.noautoanchor,
            rect: self.rect,
            amp: self.amp,
            close_mosaic: self.close_mosaic,
        }
    }
}
