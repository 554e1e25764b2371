//! `detect`: inference on images as ultralytics YOLOv5 v7.0's detect.py, writing annotated
//! images, optional YOLO label files and a COCO-style `predictions.json` into an
//! auto-numbered run folder. Progress is reported as [`DetectEvent`]s to the caller.

pub mod annotate;
pub mod output;
pub mod predictor;
pub mod source;

use candle_core::Device;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::data::image::{decode_image, IMG_FORMATS, TRUNCATED_JPEG};
use crate::data::LetterboxError;
use crate::eval::nms::NmsError;
use crate::eval::{Detection, NmsOptions};
use crate::export::{is_onnx, OnnxError, OnnxModel, PredictError};
use crate::model::build::Model;
use crate::model::config::{ConfigError, ModelConfig};
use crate::model::weights::{load_model, WeightsError};
use crate::util::fs::increment_path;
use annotate::Annotator;
use output::{label_line, save_image, CocoPrediction, ImageId};
use predictor::{Prediction, Predictor, StageTimes};
use source::{list_source, SourceError};

/// The options of a detect run (the command line's).
#[derive(Debug, Clone)]
pub struct DetectOptions {
    pub weights: PathBuf,
    /// An image, a folder or a glob pattern.
    pub source: String,
    /// The model YAML (a path or a shipped name), for weights that carry none.
    pub cfg: Option<String>,
    /// Square input size, rounded up to a multiple of the stride.
    pub imgsz: usize,
    pub nms: NmsOptions,
    /// Replace `nms.iou_thres` with the model family's: detect.py's 0.45, or ultralytics 8's
    /// 0.7 for anchor-free models (the command line's `--iou` not given).
    pub family_iou: bool,
    pub save_txt: bool,
    pub save_conf: bool,
    pub save_json: bool,
    pub project: PathBuf,
    pub name: String,
    pub exist_ok: bool,
    /// Where the model computes (ONNX files always run on the CPU).
    pub device: Device,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("weights file {} does not exist", .0.display())]
    WeightsNotFound(PathBuf),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("--cfg")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no images found in {given}; supported formats: {}", IMG_FORMATS.join(", "))]
    NoImages { given: String },
    #[error(transparent)]
    InputSize(#[from] crate::model::input::InputSizeError),
    #[error(transparent)]
    Nms(#[from] NmsError),
    #[error(transparent)]
    Letterbox(#[from] LetterboxError),
    #[error("inference failed")]
    Model(#[from] candle_core::Error),
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font(#[from] ab_glyph::InvalidFont),
    #[error("{}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: cannot save the image", path.display())]
    SaveImage {
        path: PathBuf,
        #[source]
        error: image::ImageError,
    },
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> DetectError + '_ {
    move |error| DetectError::Write {
        path: path.to_owned(),
        error,
    }
}

/// What a run reports while it goes.
#[derive(Debug)]
pub enum DetectEvent<'a> {
    /// `--imgsz` was not a multiple of the stride and was rounded up.
    ImageSizeRounded {
        requested: usize,
        used: u32,
        stride: u32,
    },
    /// A file left out: not an image, or unreadable.
    Skipped { path: &'a Path, reason: &'a str },
    /// A problem with an image that is still used.
    Warning { path: &'a Path, message: &'a str },
    /// Something noticed about the weights.
    Note(&'a str),
    /// One image done.
    Image(&'a ImageReport),
}

impl fmt::Display for DetectEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectEvent::ImageSizeRounded {
                requested,
                used,
                stride,
            } => {
                write!(f, "--imgsz {requested} must be a multiple of max stride {stride}, updating to {used}")
            }
            DetectEvent::Skipped { path, reason } => {
                write!(f, "skipped {}: {reason}", path.display())
            }
            DetectEvent::Warning { path, message } => write!(f, "{}: {message}", path.display()),
            DetectEvent::Note(note) => f.write_str(note),
            DetectEvent::Image(report) => report.fmt(f),
        }
    }
}

/// One image's line of the log.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// 1-based, among `total` images.
    pub index: usize,
    pub total: usize,
    pub path: PathBuf,
    /// The letterboxed input, (height, width).
    pub input_shape: (usize, usize),
    /// Detections per class name, in class order.
    pub counts: Vec<(String, usize)>,
    pub times: StageTimes,
}

/// As detect.py: `image 3/10 /path/x.png: 256x256 2 circles, 1 triangle, 12.3ms`.
impl fmt::Display for ImageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, w) = self.input_shape;
        write!(
            f,
            "image {}/{} {}: {h}x{w} ",
            self.index,
            self.total,
            self.path.display()
        )?;
        if self.counts.is_empty() {
            write!(f, "(no detections), ")?;
        }
        for (name, n) in &self.counts {
            write!(f, "{n} {name}{}, ", if *n > 1 { "s" } else { "" })?;
        }
        write!(f, "{:.1}ms", ms(self.times.inference))
    }
}

/// The model's name for a class, or its index when the model has no names for it.
pub fn class_name(names: &[String], class: usize) -> String {
    names
        .get(class)
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct DetectSummary {
    pub save_dir: PathBuf,
    /// Images processed (skipped files not counted).
    pub images: usize,
    /// Mean time per image, when there was one.
    pub mean_times: Option<StageTimes>,
    pub imgsz: u32,
    /// How many label files `labels/` holds, when `--save-txt`.
    pub labels: Option<usize>,
}

/// As detect.py: the speed line, then where the results are.
impl fmt::Display for DetectSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = &self.mean_times {
            let shape = format!("(1, 3, {0}, {0})", self.imgsz);
            writeln!(f, "Speed: {:.1}ms pre-process, {:.1}ms inference, {:.1}ms NMS per image at shape {shape}", ms(t.preprocess), ms(t.inference), ms(t.nms))?;
        }
        write!(f, "Results saved to {}", self.save_dir.display())?;
        if let Some(n) = self.labels {
            write!(
                f,
                "\n{n} labels saved to {}",
                self.save_dir.join("labels").display()
            )?;
        }
        Ok(())
    }
}

/// Runs detection on every image of `options.source` and saves the results.
pub fn detect(
    options: &DetectOptions,
    observer: &mut dyn FnMut(DetectEvent<'_>),
) -> Result<DetectSummary, DetectError> {
    let mut nms = options.nms.clone();
    nms.validate()?;
    let files = list_source(&options.source)?;
    for (path, reason) in &files.skipped {
        observer(DetectEvent::Skipped { path, reason });
    }
    if files.images.is_empty() {
        return Err(DetectError::NoImages {
            given: options.source.clone(),
        });
    }
    let family_iou = |anchor_free: bool, mut nms: NmsOptions| {
        if options.family_iou {
            nms.iou_thres = if anchor_free { 0.7 } else { 0.45 };
        }
        nms
    };
    let predictor = if is_onnx(&options.weights) {
        let onnx = OnnxModel::load(&options.weights)?;
        nms = family_iou(onnx.anchor_free, nms);
        let predictor = Predictor::onnx(onnx, options.imgsz, nms)?;
        if let Some((h, w)) = predictor.fixed_shape() {
            let note = format!("the ONNX graph's input size is fixed: every image is letterboxed to {h}x{w} (export with --dynamic for detect.py's minimal rectangles)");
            observer(DetectEvent::Note(&note));
        }
        predictor
    } else {
        let (model, notes) = load(options)?;
        for note in &notes {
            observer(DetectEvent::Note(note));
        }
        nms = family_iou(model.head.anchored().is_none(), nms);
        Predictor::new(model, options.imgsz, nms)?
    };
    if predictor.imgsz as usize != options.imgsz && predictor.fixed_shape().is_none() {
        observer(DetectEvent::ImageSizeRounded {
            requested: options.imgsz,
            used: predictor.imgsz,
            stride: predictor.stride,
        });
    }
    let mut run = Run::create(options, &predictor)?;
    let total = files.images.len();
    for (i, path) in files.images.iter().enumerate() {
        let image = match decode_image(path) {
            Ok(decoded) => {
                if decoded.truncated_jpeg {
                    observer(DetectEvent::Warning {
                        path,
                        message: TRUNCATED_JPEG,
                    });
                }
                decoded.image
            }
            Err(e) => {
                observer(DetectEvent::Skipped {
                    path,
                    reason: &crate::util::error::chain(&e),
                });
                continue;
            }
        };
        let prediction = predictor.predict(&image)?;
        run.save(path, image, &prediction.detections)?;
        let report = run.record(i + 1, total, path, prediction);
        observer(DetectEvent::Image(&report));
    }
    run.finish()
}

fn load(options: &DetectOptions) -> Result<(Model, Vec<String>), DetectError> {
    if !options.weights.is_file() {
        return Err(DetectError::WeightsNotFound(options.weights.clone()));
    }
    let cfg = options.cfg.as_deref().map(ModelConfig::load).transpose()?;
    let (model, notes) = load_model(&options.weights, cfg.as_ref(), None, None)?;
    Ok((model.to_device(&options.device)?, notes))
}

/// The run folder and what is gathered over the images.
struct Run<'a> {
    save_dir: PathBuf,
    save_txt: bool,
    save_conf: bool,
    save_json: bool,
    imgsz: u32,
    names: &'a [String],
    annotator: Annotator,
    coco: Vec<CocoPrediction>,
    totals: StageTimes,
    seen: usize,
}

impl<'a> Run<'a> {
    /// Creates `project/name` (numbered when it exists) and its `labels/` when needed.
    fn create(options: &DetectOptions, predictor: &'a Predictor) -> Result<Run<'a>, DetectError> {
        let save_dir = increment_path(&options.project.join(&options.name), options.exist_ok);
        let folder = if options.save_txt {
            save_dir.join("labels")
        } else {
            save_dir.clone()
        };
        std::fs::create_dir_all(&folder).map_err(write_error(&folder))?;
        Ok(Run {
            save_dir,
            save_txt: options.save_txt,
            save_conf: options.save_conf,
            save_json: options.save_json,
            imgsz: predictor.imgsz,
            names: predictor.names(),
            annotator: Annotator::new()?,
            coco: Vec::new(),
            totals: StageTimes::default(),
            seen: 0,
        })
    }

    /// The annotated image, and the labels and COCO entries when asked for.
    fn save(
        &mut self,
        path: &Path,
        mut image: RgbImage,
        detections: &[Detection],
    ) -> Result<(), DetectError> {
        let file_name = path.file_name().unwrap_or(path.as_os_str());
        let stem = path.file_stem().unwrap_or(file_name).to_string_lossy();
        if self.save_txt && !detections.is_empty() {
            // As detect.py: lines in reverse (worst first), appended to labels/<stem>.txt.
            let lines: String = detections
                .iter()
                .rev()
                .map(|d| label_line(d, image.width(), image.height(), self.save_conf) + "\n")
                .collect();
            let txt = self.save_dir.join("labels").join(format!("{stem}.txt"));
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&txt)
                .map_err(write_error(&txt))?;
            file.write_all(lines.as_bytes())
                .map_err(write_error(&txt))?;
        }
        if self.save_json {
            let id = ImageId::from_stem(&stem);
            self.coco.extend(
                detections
                    .iter()
                    .map(|d| CocoPrediction::new(id.clone(), d)),
            );
        }
        self.annotator.draw(&mut image, detections, self.names);
        let target = self.save_dir.join(file_name);
        save_image(&image, &target).map_err(|error| DetectError::SaveImage {
            path: target,
            error,
        })?;
        Ok(())
    }

    fn record(
        &mut self,
        index: usize,
        total: usize,
        path: &Path,
        prediction: Prediction,
    ) -> ImageReport {
        self.seen += 1;
        self.totals += prediction.times;
        let mut counts: Vec<(String, usize)> = Vec::new();
        let mut classes: Vec<usize> = prediction.detections.iter().map(|d| d.class).collect();
        classes.sort_unstable();
        for class in classes {
            let name = class_name(self.names, class);
            match counts.last_mut() {
                Some((last, n)) if *last == name => *n += 1,
                _ => counts.push((name, 1)),
            }
        }
        ImageReport {
            index,
            total,
            path: path.to_owned(),
            input_shape: prediction.input_shape,
            counts,
            times: prediction.times,
        }
    }

    fn finish(self) -> Result<DetectSummary, DetectError> {
        if self.save_json {
            let json_path = self.save_dir.join("predictions.json");
            let json = serde_json::to_vec(&self.coco).map_err(|e| DetectError::Write {
                path: json_path.clone(),
                error: e.into(),
            })?;
            std::fs::write(&json_path, json).map_err(write_error(&json_path))?;
        }
        let labels = if self.save_txt {
            Some(count_label_files(&self.save_dir.join("labels"))?)
        } else {
            None
        };
        let n = self.seen as f64;
        let mean_times = (self.seen > 0).then(|| StageTimes {
            preprocess: self.totals.preprocess.div_f64(n),
            inference: self.totals.inference.div_f64(n),
            nms: self.totals.nms.div_f64(n),
        });
        Ok(DetectSummary {
            save_dir: self.save_dir,
            images: self.seen,
            mean_times,
            imgsz: self.imgsz,
            labels,
        })
    }
}

fn count_label_files(labels: &Path) -> Result<usize, DetectError> {
    let entries = std::fs::read_dir(labels).map_err(write_error(labels))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .count())
}
