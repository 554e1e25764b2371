//! `actyolo detect`: inference on images, as ultralytics' detect.py.

use std::path::PathBuf;

use clap::Args;

use super::flags::DeviceFlag;
use super::values::{fraction, positive};
use actyolo::detect::{detect, DetectEvent, DetectOptions};
use actyolo::eval::NmsOptions;

#[derive(Debug, Args)]
#[command(
    after_help = "Example: actyolo detect --weights best.pt --source images/ --conf 0.4 --save-txt"
)]
#[command(allow_negative_numbers = true)]
pub struct DetectArgs {
    /// Model weights: an ultralytics train.py checkpoint (.pt), .safetensors, or an ONNX export (.onnx).
    #[arg(long)]
    weights: PathBuf,
    /// An image, a folder of images, or a glob pattern (quote it).
    #[arg(long)]
    source: String,
    /// The model YAML, for weights that carry none (a file or a shipped name, e.g. yolov5n).
    #[arg(long)]
    cfg: Option<String>,
    /// Inference size in pixels (rounded up to a multiple of the model's stride).
    #[arg(long, default_value_t = 640, value_parser = positive)]
    imgsz: usize,
    /// Confidence threshold, 0 to 1.
    #[arg(long, default_value_t = 0.25, value_parser = fraction)]
    conf: f64,
    /// NMS IoU threshold, 0 to 1 [default: 0.45 as detect.py; 0.7 for YOLOv8 and YOLO11, as
    /// ultralytics 8].
    #[arg(long, value_parser = fraction)]
    iou: Option<f64>,
    /// Maximum detections per image.
    #[arg(long, default_value_t = 300, value_parser = positive)]
    max_det: usize,
    /// Keep only these classes, e.g. --classes 0 2.
    #[arg(long, num_args = 1..)]
    classes: Option<Vec<usize>>,
    /// Class-agnostic NMS.
    #[arg(long)]
    agnostic_nms: bool,
    /// Save labels/<stem>.txt (cls cx cy w h, normalised).
    #[arg(long)]
    save_txt: bool,
    /// Add the confidence to the --save-txt lines.
    #[arg(long)]
    save_conf: bool,
    /// Save predictions.json (COCO results format).
    #[arg(long)]
    save_json: bool,
    /// Results go to PROJECT/NAME.
    #[arg(long, default_value = "runs/detect")]
    project: PathBuf,
    #[arg(long, default_value = "exp")]
    name: String,
    /// Reuse PROJECT/NAME when it exists instead of numbering a new one.
    #[arg(long)]
    exist_ok: bool,
    #[command(flatten)]
    device: DeviceFlag,
}

pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let options = DetectOptions {
        weights: args.weights,
        source: args.source,
        cfg: args.cfg,
        imgsz: args.imgsz,
        nms: NmsOptions {
            conf_thres: args.conf,
            iou_thres: args.iou.unwrap_or(0.45),
            classes: args.classes,
            agnostic: args.agnostic_nms,
            multi_label: false,
            max_det: args.max_det,
        },
        save_txt: args.save_txt,
        save_conf: args.save_conf,
        save_json: args.save_json,
        family_iou: args.iou.is_none(),
        project: args.project,
        name: args.name,
        exist_ok: args.exist_ok,
        device: args.device.device,
    };
    let summary = detect(&options, &mut render)?;
    println!("{summary}");
    Ok(())
}

fn render(event: DetectEvent<'_>) {
    match event {
        DetectEvent::Image(_) => println!("{event}"),
        DetectEvent::Note(note) => eprintln!("{note}"),
        DetectEvent::Skipped { .. }
        | DetectEvent::Warning { .. }
        | DetectEvent::ImageSizeRounded { .. } => eprintln!("WARNING ⚠️ {event}"),
    }
}
