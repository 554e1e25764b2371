//! One image in, boxes in its own pixels out: letterbox, forward, NMS, scale back.

use std::time::{Duration, Instant};

use candle_core::Device;
use image::RgbImage;

use super::DetectError;
use crate::data::{image_to_tensor, letterbox};
use crate::eval::{non_max_suppression, scale_boxes, Detection, NmsOptions};
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

/// A fused model with the input size and NMS settings of a detect run.
pub struct Predictor {
    model: Model,
    /// The letterbox's stride: the model's largest, at least 32 (as DetectMultiBackend).
    pub stride: u32,
    /// The input size, a multiple of `stride`.
    pub imgsz: u32,
    nms: NmsOptions,
}

impl Predictor {
    /// Fuses the model and rounds `imgsz` up to a multiple of the stride (ultralytics'
    /// `check_img_size`); a size whose feature maps cannot fit in memory is refused.
    pub fn new(mut model: Model, imgsz: usize, nms: NmsOptions) -> Result<Predictor, DetectError> {
        let size = check_img_size(imgsz, model.max_stride(), 0)?;
        check_memory(&model, size.used, 1, Workload::Inference)?;
        model.fuse()?;
        Ok(Predictor {
            model,
            stride: size.stride as u32,
            imgsz: size.used as u32,
            nms,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.model.names
    }

    pub fn predict(&self, image: &RgbImage) -> Result<Prediction, DetectError> {
        let start = Instant::now();
        let boxed = letterbox(image, (self.imgsz, self.imgsz), self.stride, true, true)?;
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
