//! Validation as val.py runs it: letterboxed batches, eval-mode inference, multi-label NMS
//! (conf 0.001, IoU 0.6, max_det 300), matching at IoU 0.5:0.95, ultralytics' mAP, the
//! validation losses, and optionally COCO JSON with pycocotools-convention mAP.

use candle_core::Device;
use std::path::PathBuf;
use std::time::Instant;

use super::coco::{
    evaluate_bbox, write_predictions, xyxy_to_xywh, CocoAnnotation, CocoCategory, CocoDataset,
    CocoDetection, CocoError, CocoImage, CocoStats,
};
use super::metrics::{DetectionStats, Label, ValMetrics};
use super::nms::{non_max_suppression, scale_boxes, Detection, NmsError, NmsOptions};
use crate::ops::boxes::xywh_to_xyxy;
use crate::ops::device;
use crate::util::fs::FileError;
use std::sync::Arc;

use crate::data::dataset::{DataConfig, DataConfigError, Dataset, DatasetError, Split};
use crate::data::loader::{Loader, LoaderConfig, LoaderError, RectBatches};
use crate::export::int8::{Int8Error, Int8Model, Int8Options};
use crate::export::{is_onnx, OnnxError, OnnxModel, Predict, PredictError};
use crate::model::input::{check_img_size, check_memory, CheckedSize, InputSizeError, Workload};
use crate::model::weights::{load_model, WeightsError};

#[derive(Debug, Clone)]
pub struct ValOptions {
    pub conf_thres: f64,
    /// NMS IoU threshold; None: the model family's (val.py's 0.6, or ultralytics 8's 0.7
    /// for anchor-free models).
    pub iou_thres: Option<f64>,
    pub max_det: usize,
    /// Where to write `predictions.json` and `ground_truth.json` (COCO format), if anywhere.
    pub save_json: Option<PathBuf>,
}

impl Default for ValOptions {
    fn default() -> Self {
        ValOptions {
            conf_thres: 0.001,
            iou_thres: None,
            max_det: 300,
            save_json: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValOutcome {
    /// ultralytics' convention (what val.py prints).
    pub metrics: ValMetrics,
    /// Mean box, objectness and class losses over the batches, when a loss was given.
    pub loss: Option<[f32; 3]>,
    pub images: usize,
    pub labels: usize,
    /// Labels per class.
    pub class_labels: Vec<usize>,
    /// Milliseconds per image: pre-processing (waiting for the batch), inference, NMS.
    pub speed_ms: [f64; 3],
    /// pycocotools' convention (COCOeval on the same boxes, max 100 per image), in
    /// original-image pixels; equal to what pycocotools computes on the saved JSON.
    pub coco: CocoStats,
}

impl ValOutcome {
    /// ultralytics' fitness: 0.1 · mAP@0.5 + 0.9 · mAP@0.5:0.95.
    pub fn fitness(&self) -> f64 {
        0.1 * self.metrics.map50 + 0.9 * self.metrics.map
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ValError {
    #[error("validation")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] DataConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{} has {nc} classes but {} has {names}", weights.display(), data.display())]
    Classes {
        weights: PathBuf,
        data: PathBuf,
        nc: usize,
        names: usize,
    },
    #[error("val split")]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    InputSize(#[from] InputSizeError),
    #[error(transparent)]
    Nms(#[from] NmsError),
    #[error(transparent)]
    Coco(#[from] CocoError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{}: the ONNX graph's input is {h}x{w}; validation needs a square size: export with one --imgsz, or with --dynamic", weights.display())]
    OnnxNotSquare {
        weights: PathBuf,
        h: usize,
        w: usize,
    },
    #[error(transparent)]
    Int8(#[from] Int8Error),
    #[error("--int8 simulates quantizing a model built from weights; {} is an ONNX graph already: pass the .safetensors or .pt it was exported from", .0.display())]
    Int8OfOnnx(PathBuf),
    #[error("the validation loss")]
    Loss(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Labels of one image from the batch targets (image, class, cx, cy, w, h normalised),
/// as corners in input pixels.
fn image_labels(targets: &[f32], image: usize, (h, w): (usize, usize)) -> Vec<Label> {
    targets
        .chunks_exact(6)
        .filter(|t| t[0] as usize == image)
        .map(|t| {
            let (cx, cy, bw, bh) = (
                t[2] * w as f32,
                t[3] * h as f32,
                t[4] * w as f32,
                t[5] * h as f32,
            );
            Label {
                class: t[1] as usize,
                bbox: xywh_to_xyxy([cx, cy, bw, bh]),
            }
        })
        .collect()
}

/// COCO image id: the file stem as a number when it is one (as ultralytics), else the index.
fn image_id(path: &std::path::Path, index: usize) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(index as u64)
}

/// A loss evaluated on validation batches: train.py reports its training loss on the val
/// split. The trainer passes its own.
pub trait ValLoss {
    /// The box, objectness and class losses of a batch's raw maps against its targets.
    fn parts(
        &self,
        raw: &[candle_core::Tensor],
        targets: &candle_core::Tensor,
    ) -> Result<[f32; 3], Box<dyn std::error::Error + Send + Sync>>;
}

/// Runs `model` over `loader` (eval mode); `on_batch(i, n)` reports progress.
pub fn validate(
    model: &dyn Predict,
    loader: &Loader,
    options: &ValOptions,
    loss: Option<&dyn ValLoss>,
    mut on_batch: impl FnMut(usize, usize),
) -> Result<ValOutcome, ValError> {
    let nms = NmsOptions {
        conf_thres: options.conf_thres,
        iou_thres: options
            .iou_thres
            .unwrap_or(if model.anchor_free() { 0.7 } else { 0.6 }),
        classes: None,
        agnostic: false,
        multi_label: true,
        max_det: options.max_det,
    };
    let mut stats = DetectionStats::new();
    let mut loss_sum = [0f32; 3];
    let mut times = [0f64; 3];
    let (mut images, mut labels) = (0usize, 0usize);
    let mut class_labels = vec![0usize; model.nc()];
    let (mut gt, mut preds) = (CocoDataset::default(), Vec::<CocoDetection>::new());
    let batches = loader.epoch(0)?;
    let total = batches.len();
    let mut clock = Instant::now();
    for (i, batch) in batches.enumerate() {
        let batch = batch?;
        times[0] += clock.elapsed().as_secs_f64();
        clock = Instant::now();
        let (decoded, raw) = model.predict(&batch.images)?;
        if let (Some(loss), Some(raw)) = (loss, &raw) {
            let parts = loss.parts(raw, &batch.targets).map_err(ValError::Loss)?;
            loss_sum.iter_mut().zip(parts).for_each(|(a, b)| *a += b);
        }
        times[1] += clock.elapsed().as_secs_f64();
        clock = Instant::now();
        let mut detections = non_max_suppression(&decoded, &nms)?;
        times[2] += clock.elapsed().as_secs_f64();
        let (_, _, h, w) = batch.images.dims4()?;
        let targets = batch.targets.flatten_all()?.to_vec1::<f32>()?;
        for (j, dets) in detections.iter_mut().enumerate() {
            let mut image_labels = image_labels(&targets, j, (h, w));
            images += 1;
            labels += image_labels.len();
            for l in &image_labels {
                if let Some(c) = class_labels.get_mut(l.class) {
                    *c += 1;
                }
            }
            let Some(Some(shape)) = batch.shapes.get(j) else {
                // No single original image (never so in validation): match in input pixels.
                stats.add_image(dets, &image_labels);
                continue;
            };
            // As val.py: predictions and labels are matched in the original image's
            // pixels (clipped to it), with the gain of the height.
            let (h0, w0) = (shape.original.0 as usize, shape.original.1 as usize);
            let ratio_pad = Some((shape.gain.0, shape.pad));
            scale_boxes(
                (h, w),
                image_labels.iter_mut().map(|l| &mut l.bbox),
                (h0, w0),
                ratio_pad,
            );
            scale_boxes(
                (h, w),
                dets.iter_mut().map(|d: &mut Detection| &mut d.bbox),
                (h0, w0),
                ratio_pad,
            );
            stats.add_image(dets, &image_labels);
            let id = image_id(&batch.paths[j], gt.images.len());
            gt.images.push(CocoImage {
                id,
                file_name: batch.paths[j].display().to_string(),
                width: w0 as u32,
                height: h0 as u32,
            });
            gt.annotations
                .extend(image_labels.iter().map(|l| CocoAnnotation {
                    image_id: id,
                    category_id: l.class as u64,
                    bbox: xyxy_to_xywh(l.bbox),
                }));
            preds.extend(dets.iter().map(|d| CocoDetection {
                image_id: id,
                category_id: d.class as u64,
                bbox: xyxy_to_xywh(d.bbox),
                score: d.conf as f64,
            }));
        }
        on_batch(i + 1, total);
        clock = Instant::now();
    }
    gt.categories = model
        .names()
        .iter()
        .enumerate()
        .map(|(id, name)| CocoCategory {
            id: id as u64,
            name: name.clone(),
        })
        .collect();
    if let Some(dir) = &options.save_json {
        std::fs::create_dir_all(dir).map_err(crate::util::fs::FileError::new(
            dir,
            "cannot create the folder",
        ))?;
        gt.write(&dir.join("ground_truth.json"))?;
        write_predictions(&dir.join("predictions.json"), &preds)?;
    }
    let coco = evaluate_bbox(&gt, &preds)?;
    let per_image = |t: f64| 1e3 * t / images.max(1) as f64;
    Ok(ValOutcome {
        metrics: stats.summarize(),
        loss: loss.map(|_| loss_sum.map(|v| v / total.max(1) as f32)),
        images,
        labels,
        class_labels,
        speed_ms: times.map(per_image),
        coco,
    })
}

/// val.py's table: the `all` row, then one row per class with labels.
pub fn render_table(outcome: &ValOutcome, names: &[String]) -> String {
    let m = &outcome.metrics;
    let row = |name: &str, images: usize, labels: usize, p: f64, r: f64, map50: f64, map: f64| {
        format!("{name:>22}{images:>11}{labels:>11}{p:>11.3}{r:>11.3}{map50:>11.3}{map:>11.3}\n")
    };
    let mut out = format!(
        "{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}\n",
        "Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"
    );
    out += &row(
        "all",
        outcome.images,
        outcome.labels,
        m.mp,
        m.mr,
        m.map50,
        m.map,
    );
    for c in &m.classes {
        let name = names
            .get(c.class)
            .map_or_else(|| c.class.to_string(), Clone::clone);
        out += &row(
            &name,
            outcome.images,
            c.labels,
            c.precision,
            c.recall,
            c.ap50(),
            c.ap50_95(),
        );
    }
    out
}

/// What `actyolo val` is asked to do.
#[derive(Debug, Clone)]
pub struct ValRun {
    pub weights: PathBuf,
    pub data: PathBuf,
    pub imgsz: usize,
    pub batch: usize,
    pub workers: usize,
    pub options: ValOptions,
    /// Validate under simulated INT8 post-training quantization, calibrated so.
    pub int8: Option<Int8Options>,
    /// Where the model computes (ONNX files always run on the CPU).
    pub device: Device,
}

/// The result of `actyolo val`.
#[derive(Debug, Clone)]
pub struct ValReport {
    pub outcome: ValOutcome,
    pub names: Vec<String>,
    /// The input size used: `--imgsz` rounded up to the model's stride.
    pub imgsz: usize,
}

/// Loads the weights and the dataset's val split and validates as val.py does
/// (rectangular batches, pad 0.5). An ONNX file runs as yolov5's `DetectMultiBackend` runs
/// it: one with fixed input size validates at that square size without rectangular
/// batches; a dynamic one as the weights it was exported from. Warnings (about the
/// weights, the size, each skipped file) and the dataset summary go to `on_message` as
/// they are found.
pub fn run_val(run: &ValRun, on_message: &mut dyn FnMut(String)) -> Result<ValReport, ValError> {
    let data = DataConfig::load(&run.data)?;
    let classes_differ = |nc: usize, names: usize| ValError::Classes {
        weights: run.weights.clone(),
        data: run.data.clone(),
        nc,
        names,
    };
    let (predictor, size, rect): (Box<dyn Predict>, CheckedSize, bool) = if is_onnx(&run.weights) {
        if run.int8.is_some() {
            return Err(ValError::Int8OfOnnx(run.weights.clone()));
        }
        let onnx = OnnxModel::load(&run.weights)?;
        if !run.device.is_cpu() {
            on_message(format!(
                "--device {}: ONNX files run on the CPU",
                device::name(&run.device)
            ));
        }
        if onnx.nc() != data.names.len() {
            return Err(classes_differ(onnx.nc(), data.names.len()));
        }
        let (size, rect) = match onnx.fixed_input() {
            Some((batch, h, w)) => {
                if h != w {
                    return Err(ValError::OnnxNotSquare {
                        weights: run.weights.clone(),
                        h,
                        w,
                    });
                }
                on_message(format!(
                    "Forcing square inference ({batch}, 3, {h}, {w}) without rectangular batches: the ONNX graph has a fixed input size (export with --dynamic to validate as the weights do)"
                ));
                let size = CheckedSize {
                    requested: run.imgsz,
                    used: h,
                    stride: onnx.stride,
                };
                (size, false)
            }
            None => (check_img_size(run.imgsz, onnx.stride, 0)?, true),
        };
        (Box::new(onnx), size, rect)
    } else {
        let (model, warnings) = match load_model(&run.weights, None, None, Some(&data.names)) {
            Err(WeightsError::Classes { nc, names, .. }) => return Err(classes_differ(nc, names)),
            other => other?,
        };
        warnings.into_iter().for_each(&mut *on_message);
        let size = check_img_size(run.imgsz, model.max_stride(), 0)?;
        check_memory(&model, size.used, run.batch, Workload::Inference)?;
        let mut model = model.to_device(&run.device)?;
        model.fuse()?;
        match &run.int8 {
            Some(int8) => {
                let quantized = Int8Model::calibrate(model, &data, size.used, int8)?;
                on_message(format!(
                    "INT8 simulation: {} convolutions, calibrated ({:?}) on {} training images at {}x{}: weights int8 per output channel, inputs uint8 per tensor",
                    quantized.inputs().len(),
                    int8.calibration,
                    quantized.calibration_images(),
                    size.used,
                    size.used
                ));
                (Box::new(quantized), size, true)
            }
            None => (Box::new(model), size, true),
        }
    };
    size.warning().into_iter().for_each(&mut *on_message);
    let dataset = Dataset::from_config(&data, Split::Val)?;
    for warning in &dataset.report.warnings {
        on_message(warning.to_string());
    }
    on_message(format!("val: {}", dataset.report.summary()));
    let config = LoaderConfig {
        imgsz: size.used as u32,
        batch_size: run.batch,
        workers: run.workers,
        rect: rect.then_some(RectBatches {
            stride: size.stride as u32,
            pad: 0.5,
        }),
        ..Default::default()
    };
    let loader = Loader::val(Arc::new(dataset), config)?;
    let outcome = validate(predictor.as_ref(), &loader, &run.options, None, |_, _| {})?;
    Ok(ValReport {
        outcome,
        names: data.names,
        imgsz: size.used,
    })
}
