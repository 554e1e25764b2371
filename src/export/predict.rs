//! What validation and detection run: a model built here, or an ONNX file (as yolov5's
//! `DetectMultiBackend`), behind one trait.

use candle_core::Tensor;

use super::runtime::{OnnxError, OnnxModel};
use crate::model::build::Model;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// A detector in inference.
pub trait Predict: Sync {
    /// Decoded predictions (B, N, 5 + nc) for `images` (B, 3, H, W), and the raw maps of
    /// each level when the backend has them (a model built here: for the val loss).
    fn predict(&self, images: &Tensor) -> Result<(Tensor, Option<Vec<Tensor>>), PredictError>;

    /// The class names, one per class.
    fn names(&self) -> &[String];

    fn nc(&self) -> usize {
        self.names().len()
    }

    /// Whether the model is anchor-free (YOLOv8, YOLO11), whose family validates and
    /// detects with ultralytics 8's NMS IoU.
    fn anchor_free(&self) -> bool;
}

impl Predict for Model {
    fn predict(&self, images: &Tensor) -> Result<(Tensor, Option<Vec<Tensor>>), PredictError> {
        let (decoded, raw) = Model::predict(self, images)?;
        Ok((decoded, Some(raw)))
    }

    fn names(&self) -> &[String] {
        &self.names
    }

    fn anchor_free(&self) -> bool {
        self.head.anchored().is_none()
    }
}

impl Predict for OnnxModel {
    fn predict(&self, images: &Tensor) -> Result<(Tensor, Option<Vec<Tensor>>), PredictError> {
        Ok((OnnxModel::predict(self, images)?, None))
    }

    fn names(&self) -> &[String] {
        &self.names
    }

    fn anchor_free(&self) -> bool {
        self.anchor_free
    }
}
