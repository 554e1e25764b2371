//! `export`: a trained model as one ONNX file, as yolov5's `export.py --include onnx`
//! writes it (fused graph, Detect decode included, `stride` and `names` metadata), and
//! ONNX files run as weights ([`runtime`], behind [`Predict`] with the models built here).

pub mod int8;
pub mod metadata;
pub mod onnx;
pub mod predict;
pub mod runtime;

use candle_core::Device;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::model::build::Model;
use crate::model::config::{ConfigError, ModelConfig};
use crate::model::input::{check_img_size, InputSizeError};
use crate::model::weights::{load_model, WeightsError};
use crate::ops::graph::{Graph, GraphError};
use crate::util::fs::{write_atomic, FileError};
use onnx::{Dim, Io};

pub use predict::{Predict, PredictError};
pub use runtime::{OnnxError, OnnxModel};

/// The opsets written: from 14 (HardSwish, Split and Clip with tensor inputs) to 21.
pub const OPSETS: RangeInclusive<i64> = 14..=21;

/// The largest batch an export declares.
pub const MAX_BATCH: usize = 1024;

/// ONNX files at or above 2 GB need external data, which this writer does not produce.
const MAX_FILE_BYTES: usize = 2 << 30;

/// The options of an export (the command line's).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub weights: PathBuf,
    /// The model YAML (a path or a shipped name), for weights that carry none.
    pub cfg: Option<String>,
    /// One size for a square input, or height and width.
    pub imgsz: Vec<usize>,
    pub batch: usize,
    /// Batch, height and width left free in the graph.
    pub dynamic: bool,
    pub opset: i64,
    /// FP16 weights and input (refused: only a GPU export makes them, as in yolov5).
    pub half: bool,
    /// The file; by default the weights' name with `.onnx`, beside them.
    pub out: Option<PathBuf>,
    /// Where the model is loaded and fused before it is written.
    pub device: Device,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("weights file {} does not exist", .0.display())]
    WeightsNotFound(PathBuf),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("--cfg")]
    Config(#[from] ConfigError),
    #[error("--half is only compatible with GPU export (as in yolov5's export.py); this build exports on the CPU in FP32, so leave --half out")]
    Half,
    #[error("--opset {0}: allowed {first}..={last} (17 is yolov5's default)", first = OPSETS.start(), last = OPSETS.end())]
    Opset(i64),
    #[error("--batch {0}: allowed 1..={MAX_BATCH}")]
    Batch(usize),
    #[error("--imgsz takes one size (square) or two (height width), got {0:?}")]
    Imgsz(Vec<usize>),
    #[error("--imgsz")]
    Size(#[from] InputSizeError),
    #[error("{}: the model cannot be exported", weights.display())]
    Graph {
        weights: PathBuf,
        #[source]
        source: GraphError,
    },
    #[error("fusing the model")]
    Fuse(#[source] candle_core::Error),
    #[error("the ONNX file would be {0} bytes; files of 2 GB or more need external data, which is not written: export a smaller model")]
    TooLarge(usize),
    #[error(transparent)]
    Write(#[from] FileError),
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub bytes: usize,
    pub opset: i64,
    pub input: Io,
    pub output: Io,
    /// Warnings and notes for the user (a rounded image size, loading notes).
    pub notes: Vec<String>,
}

/// `dims` as `(1, 3, 640, 640)`, free ones by name.
pub fn show_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Named(s) => s.to_string(),
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// Whether a weights path names an ONNX file (by its extension, as yolov5 tells backends).
pub fn is_onnx(weights: &Path) -> bool {
    weights
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The default file: the weights' name with `.onnx`, beside them (as export.py).
pub fn default_output(weights: &Path) -> PathBuf {
    weights.with_extension("onnx")
}

/// Loads the weights and writes the ONNX file.
pub fn export(options: &ExportOptions) -> Result<ExportSummary, ExportError> {
    if options.half {
        return Err(ExportError::Half);
    }
    if !OPSETS.contains(&options.opset) {
        return Err(ExportError::Opset(options.opset));
    }
    if !(1..=MAX_BATCH).contains(&options.batch) {
        return Err(ExportError::Batch(options.batch));
    }
    let (h, w) = match options.imgsz[..] {
        [s] => (s, s),
        [h, w] => (h, w),
        _ => return Err(ExportError::Imgsz(options.imgsz.clone())),
    };
    if !options.weights.is_file() {
        return Err(ExportError::WeightsNotFound(options.weights.clone()));
    }
    let cfg = options.cfg.as_deref().map(ModelConfig::load).transpose()?;
    let (model, mut notes) = load_model(&options.weights, cfg.as_ref(), None, None)?;
    let stride = model.max_stride();
    let (h, w) = (check_img_size(h, stride, 0)?, check_img_size(w, stride, 0)?);
    notes.extend(h.warning());
    notes.extend(w.warning());
    let (h, w) = (h.used, w.used);
    let mut model = model
        .to_device(&options.device)
        .map_err(ExportError::Fuse)?;
    model.fuse().map_err(ExportError::Fuse)?;
    let path = options
        .out
        .clone()
        .unwrap_or_else(|| default_output(&options.weights));
    let settings = OnnxSettings {
        imgsz: (h, w),
        batch: options.batch,
        dynamic: options.dynamic,
        opset: options.opset,
    };
    let OnnxFile {
        bytes,
        input,
        output,
    } = to_onnx(&model, &settings).map_err(|source| ExportError::Graph {
        weights: options.weights.clone(),
        source,
    })?;
    if bytes.len() >= MAX_FILE_BYTES {
        return Err(ExportError::TooLarge(bytes.len()));
    }
    write_atomic(&path, &bytes)?;
    Ok(ExportSummary {
        path,
        bytes: bytes.len(),
        opset: options.opset,
        input,
        output,
        notes,
    })
}

/// The shape and opset of an ONNX graph.
#[derive(Debug, Clone, Copy)]
pub struct OnnxSettings {
    /// Height and width (multiples of the model's stride), declared unless `dynamic`.
    pub imgsz: (usize, usize),
    pub batch: usize,
    pub dynamic: bool,
    pub opset: i64,
}

/// An encoded ONNX model and its declared input and output.
#[derive(Debug, Clone)]
pub struct OnnxFile {
    pub bytes: Vec<u8>,
    pub input: Io,
    pub output: Io,
}

/// The ONNX file of a fused model.
pub fn to_onnx(model: &Model, settings: &OnnxSettings) -> Result<OnnxFile, GraphError> {
    let (h, w) = settings.imgsz;
    let mut graph = Graph::new(settings.opset);
    let out = model.export(&mut graph, "images")?;
    let out = graph.rename_output(&out, "output0");
    // YOLOv5's layout (bs, anchors, 5 + nc), or ultralytics 8's (bs, 4 + nc, anchors).
    let anchor_free = model.head.anchored().is_none();
    let anchors_per_cell = model.head.anchored().map_or(1, |d| d.na);
    let per_box = Dim::Fixed(model.head.nc() + if anchor_free { 4 } else { 5 });
    let (batch, anchors, input_shape) = if settings.dynamic {
        (
            Dim::Named("batch"),
            Dim::Named("anchors"),
            vec![
                Dim::Named("batch"),
                Dim::Fixed(3),
                Dim::Named("height"),
                Dim::Named("width"),
            ],
        )
    } else {
        let cells: usize = model
            .head
            .strides()
            .iter()
            .map(|&s| h.div_ceil(s as usize) * w.div_ceil(s as usize))
            .sum();
        (
            Dim::Fixed(settings.batch),
            Dim::Fixed(cells * anchors_per_cell),
            vec![
                Dim::Fixed(settings.batch),
                Dim::Fixed(3),
                Dim::Fixed(h),
                Dim::Fixed(w),
            ],
        )
    };
    let output_shape = if anchor_free {
        vec![batch, per_box, anchors]
    } else {
        vec![batch, anchors, per_box]
    };
    let input = Io {
        name: "images".into(),
        shape: input_shape,
    };
    let output = Io {
        name: out,
        shape: output_shape,
    };
    let metadata = [
        ("stride".to_string(), model.max_stride().to_string()),
        ("names".to_string(), metadata::names_to_python(&model.names)),
    ];
    let proto = onnx::model_proto(&graph, &input, &output, &metadata);
    Ok(OnnxFile {
        bytes: proto.encode_to_vec(),
        input,
        output,
    })
}
