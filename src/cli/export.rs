//! `actyolo export`: weights to ONNX, as yolov5's `export.py --include onnx`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::flags::DeviceFlag;
use super::values::positive;
use actyolo::export::{export, show_dims, ExportOptions};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Onnx,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: actyolo export --weights runs/train/exp/weights/best.safetensors --imgsz 640 --dynamic\nThen check it: actyolo val --weights runs/train/exp/weights/best.onnx --data data.yaml"
)]
pub struct ExportArgs {
    /// Model weights: an ultralytics train.py checkpoint (.pt) or .safetensors.
    #[arg(long)]
    weights: PathBuf,
    /// The model YAML, for weights that carry none (a file or a shipped name, e.g. yolov5n).
    #[arg(long)]
    cfg: Option<String>,
    /// The file format (ONNX only).
    #[arg(long, value_enum, default_value_t = Format::Onnx)]
    format: Format,
    /// Input size: one value (square) or height width; rounded up to a multiple of the stride.
    #[arg(long, num_args = 1.., default_values_t = [640], value_parser = positive)]
    imgsz: Vec<usize>,
    /// Batch size declared in the graph.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    batch: usize,
    /// Leave batch, height and width free in the graph.
    #[arg(long)]
    dynamic: bool,
    /// ONNX operator set version.
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// FP16 (GPU export only, as in yolov5: refused here).
    #[arg(long)]
    half: bool,
    /// The .onnx file to write; by default the weights' name with .onnx, beside them.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceFlag,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let Format::Onnx = args.format;
    let options = ExportOptions {
        weights: args.weights,
        cfg: args.cfg,
        imgsz: args.imgsz,
        batch: args.batch,
        dynamic: args.dynamic,
        opset: args.opset,
        half: args.half,
        out: args.out,
        device: args.device.device,
    };
    let summary = export(&options)?;
    for note in &summary.notes {
        eprintln!("{note}");
    }
    println!(
        "ONNX: export success, saved as {} ({:.1} MB), opset {}",
        summary.path.display(),
        summary.bytes as f64 / 1e6,
        summary.opset
    );
    println!(
        "Input `{}` {} float32 (RGB in 0..1), output `{}` {}: x, y, w, h in input pixels, objectness, class scores",
        summary.input.name,
        show_dims(&summary.input.shape),
        summary.output.name,
        show_dims(&summary.output.shape)
    );
    println!(
        "Check it: actyolo val --weights {} --data DATA.yaml",
        summary.path.display()
    );
    Ok(())
}
