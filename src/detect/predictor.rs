//! One image in, boxes in its own pixels out: letterbox, forward, NMS, scale back.

use std::time::{Duration, Instant};

use candle_core::Device;
use image::RgbImage;

use super::DetectError;
use crate::data::{image_to_tensor, letterbox};
use crate::eval::{non_max_suppression, scale_boxes, Detection, NmsOptions};
use crate::export::{OnnxModel, Predict};
use crate::model::build::Model;
use crate::model::input::{check_img_size, check_memory, Workload};

/// Time spent per stage, for one image or summed over many.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Letterbox and conversion to a tensor.
    pub preprocess: Duration,
    pub inference: Duration,
    pub nms: Duration,
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, other: StageTimes) {
        self.preprocess += other.preprocess;
        self.inference += other.inference;
        self.nms += other.nms;
    }
}

/// The result for one image.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Best first, corners in the original image's pixels, rounded to whole pixels as
    /// detect.py does.
    pub detections: Vec<Detection>,
    /// The letterboxed input, (height, width).
    pub input_shape: (usize, usize),
    pub times: StageTimes,
}

/// A detector (a fused model, or an ONNX file) with the input size and NMS settings of a
/// detect run.
pub struct Predictor {
    model: Box<dyn Predict + Send>,
    /// The letterbox's stride: the model's largest, at least 32 (as DetectMultiBackend).
    pub stride: u32,
    /// The input size, a multiple of `stride` (the larger side of a fixed ONNX input).
    pub imgsz: u32,
    /// The letterbox's target (height, width), and whether it pads only to the stride
    /// (the minimum rectangle) or all the way (an ONNX graph with a fixed input size).
    shape: (u32, u32),
    auto: bool,
    nms: NmsOptions,
}

impl Predictor {
    /// Fuses the model and rounds `imgsz` up to a multiple of the stride (ultralytics'
    /// `check_img_size`); a size whose feature maps cannot fit in memory is refused.
    pub fn new(mut model: Model, imgsz: usize, nms: NmsOptions) -> Result<Predictor, DetectError> {
        let size = check_img_size(imgsz, model.max_stride(), 0)?;
        check_memory(&model, size.used, 1, Workload::Inference)?;
        model.fuse()?;
        let side = size.used as u32;
        Ok(Predictor {
            model: Box::new(model),
            stride: size.stride as u32,
            imgsz: side,
            shape: (side, side),
            auto: true,
            nms,
        })
    }

    /// An ONNX file: at its own input size when the graph fixes it (every image padded to
    /// it, as DetectMultiBackend does), else as a model built here.
    pub fn onnx(model: OnnxModel, imgsz: usize, nms: NmsOptions) -> Result<Predictor, DetectError> {
        let stride = model.stride as u32;
        let (imgsz, shape, auto) = match model.fixed_input() {
            Some((_, h, w)) => (h.max(w) as u32, (h as u32, w as u32), false),
            None => {
                let side = check_img_size(imgsz, model.stride, 0)?.used as u32;
                (side, (side, side), true)
            }
        };
        Ok(Predictor {
            model: Box::new(model),
            stride,
            imgsz,
            shape,
            auto,
            nms,
        })
    }

    pub fn names(&self) -> &[String] {
        self.model.names()
    }

    /// The (height, width) every image is padded to, when the detector fixes it.
    pub fn fixed_shape(&self) -> Option<(u32, u32)> {
        (!self.auto).then_some(self.shape)
    }

    pub fn predict(&self, image: &RgbImage) -> Result<Prediction, DetectError> {
        let start = Instant::now();
        let boxed = letterbox(image, self.shape, self.stride, self.auto, true)?;
        let input = image_to_tensor(&boxed.image, &Device::Cpu)?;
        let preprocessed = Instant::now();
        let (output, _) = self.model.predict(&input)?;
        let inferred = Instant::now();
        let mut detections = non_max_suppression(&output, &self.nms)?
            .into_iter()
            .next()
            .unwrap_or_default();
        let input_shape = (boxed.image.height() as usize, boxed.image.width() as usize);
        let original_shape = (image.height() as usize, image.width() as usize);
        scale_boxes(
            input_shape,
            detections.iter_mut().map(|d| &mut d.bbox),
            original_shape,
            None,
        );
        for detection in &mut detections {
            // torch.round: half to even.
            detection.bbox = detection.bbox.map(f32::round_ties_even);
        }
        let done = Instant::now();
        let times = StageTimes {
            preprocess: preprocessed - start,
            inference: inferred - preprocessed,
            nms: done - inferred,
        };
        Ok(Prediction {
            detections,
            input_shape,
            times,
        })
    }
}
