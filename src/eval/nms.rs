//! YOLOv5's `non_max_suppression` and `scale_boxes` (ultralytics v7.0, `utils/general.py`).
//!
//! The arithmetic follows torch's float32 step by step (conf = obj × cls, xywh → xyxy, the
//! class offset, torchvision's IoU), so the kept boxes are the same boxes with the same
//! bits. Two things differ on purpose:
//! - Sorting by score is stable here. torch's CPU argsort (and torchvision's NMS sort) is
//!   not stable beyond 16 elements, so where two candidates have exactly the same score
//!   their order, and hence which of two overlapping ones survives, is torch's arbitrary
//!   choice. With real scores exact ties are rare.
//! - There is no time limit (ultralytics stops after 0.5 s + 0.05 s per image).

use crate::ops::boxes::{area, iou_with_areas, xywh_to_xyxy};
use candle_core::{DType, Tensor};

/// At most this many candidates (the best) go into NMS, as ultralytics' `max_nms`.
pub const MAX_NMS: usize = 30_000;
/// Boxes are shifted by `class × MAX_WH` pixels so that boxes of different classes never
/// overlap: class-aware NMS in one pass (ultralytics' `max_wh`).
pub const MAX_WH: f32 = 7680.0;

/// One kept box: corners in input pixels, score (obj × cls) and class index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// x1, y1, x2, y2.
    pub bbox: [f32; 4],
    pub conf: f32,
    pub class: usize,
}

/// The options of ultralytics' `non_max_suppression`, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NmsOptions {
    /// Candidates need objectness and score above this.
    pub conf_thres: f64,
    /// Boxes overlapping a better one by more than this IoU are dropped.
    pub iou_thres: f64,
    /// Keep only these classes.
    pub classes: Option<Vec<usize>>,
    /// Suppress across classes too.
    pub agnostic: bool,
    /// One candidate per class above `conf_thres` instead of the best class only.
    pub multi_label: bool,
    /// Keep at most this many boxes per image.
    pub max_det: usize,
}

impl Default for NmsOptions {
    fn default() -> Self {
        NmsOptions {
            conf_thres: 0.25,
            iou_thres: 0.45,
            classes: None,
            agnostic: false,
            multi_label: false,
            max_det: 300,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NmsError {
    #[error("invalid {name} {value}: it must be between 0.0 and 1.0")]
    Threshold { name: &'static str, value: f64 },
    #[error("predictions must be (batch, boxes, 5 + classes) with at least one class, got {0:?}")]
    Shape(Vec<usize>),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl NmsOptions {
    /// ultralytics asserts both thresholds are within [0, 1].
    pub fn validate(&self) -> Result<(), NmsError> {
        for (name, value) in [
            ("confidence threshold", self.conf_thres),
            ("IoU threshold", self.iou_thres),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(NmsError::Threshold { name, value });
            }
        }
        Ok(())
    }
}

/// NMS over each image of `prediction` (bs, N, 5 + nc): cx, cy, w, h, objectness, class
/// scores, as the Detect head outputs in eval mode. Per image, the kept boxes best first.
pub fn non_max_suppression(
    prediction: &Tensor,
    options: &NmsOptions,
) -> Result<Vec<Vec<Detection>>, NmsError> {
    options.validate()?;
    let dims = prediction.dims().to_vec();
    let [bs, n, no] = dims[..] else {
        return Err(NmsError::Shape(dims));
    };
    if no < 6 {
        return Err(NmsError::Shape(dims));
    }
    let values = prediction
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let per_image = n * no;
    Ok((0..bs)
        .map(|b| nms_image(&values[b * per_image..(b + 1) * per_image], no, options))
        .collect())
}

fn nms_image(rows: &[f32], no: usize, options: &NmsOptions) -> Vec<Detection> {
    let mut candidates = candidates(rows, no, options);
    if let Some(classes) = &options.classes {
        candidates.retain(|d| classes.contains(&d.class));
    }
    // Stable, best first (see the module note on ties); NaN scores never pass the threshold.
    candidates.sort_by(|a, b| b.conf.total_cmp(&a.conf));
    candidates.truncate(MAX_NMS);
    let kept = greedy_nms(&candidates, options.agnostic, options.iou_thres);
    kept.into_iter()
        .take(options.max_det)
        .map(|i| candidates[i])
        .collect()
}

/// The rows whose objectness passes, as one detection (best class) or one per class
/// above the threshold (multi-label), in row order.
fn candidates(rows: &[f32], no: usize, options: &NmsOptions) -> Vec<Detection> {
    // torch compares a float32 tensor with a Python float in float32.
    let conf_thres = options.conf_thres as f32;
    let multi_label = options.multi_label && no - 5 > 1;
    let mut out = Vec::new();
    for row in rows.chunks_exact(no).filter(|row| row[4] > conf_thres) {
        let obj = row[4];
        let bbox = xywh_to_xyxy([row[0], row[1], row[2], row[3]]);
        let scores = row[5..].iter().map(|&cls| cls * obj);
        if multi_label {
            out.extend(
                scores
                    .enumerate()
                    .filter(|&(_, conf)| conf > conf_thres)
                    .map(|(class, conf)| Detection { bbox, conf, class }),
            );
        } else if let Some((class, conf)) = first_max(scores) {
            if conf > conf_thres {
                out.push(Detection { bbox, conf, class });
            }
        }
    }
    out
}

/// The index and value of the first largest score, as torch's `max(dim)` on CPU.
fn first_max(scores: impl Iterator<Item = f32>) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, s) in scores.enumerate() {
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best
}

/// torchvision's CPU `nms` over boxes already sorted best first: the indices kept, in
/// order. Boxes are offset by class unless `agnostic`, in float32 as ultralytics does.
fn greedy_nms(sorted: &[Detection], agnostic: bool, iou_thres: f64) -> Vec<usize> {
    let boxes: Vec<[f32; 4]> = sorted
        .iter()
        .map(|d| {
            let offset = if agnostic {
                0.0
            } else {
                d.class as f32 * MAX_WH
            };
            d.bbox.map(|v| v + offset)
        })
        .collect();
    let areas: Vec<f32> = boxes.iter().map(area).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut kept = Vec::new();
    for i in 0..boxes.len() {
        if suppressed[i] {
            continue;
        }
        kept.push(i);
        for j in i + 1..boxes.len() {
            // The IoU is float32; torchvision compares it with the threshold as a double.
            if !suppressed[j]
                && f64::from(iou_with_areas(
                    &boxes[i], areas[i], &boxes[j], areas[j], 0.0,
                )) > iou_thres
            {
                suppressed[j] = true;
            }
        }
    }
    kept
}

/// Rescales xyxy boxes from the letterboxed `img1_shape` (height, width) to the original
/// `img0_shape` and clips them to it, as ultralytics' `scale_boxes`. `ratio_pad` is
/// (gain, (pad_w, pad_h)) as the letterbox made them; by default they are inferred from
/// the two shapes.
pub fn scale_boxes<'a>(
    img1_shape: (usize, usize),
    boxes: impl IntoIterator<Item = &'a mut [f32; 4]>,
    img0_shape: (usize, usize),
    ratio_pad: Option<(f64, (f64, f64))>,
) {
    let (gain, (pad_w, pad_h)) =
        ratio_pad.unwrap_or_else(|| letterbox_gain_pad(img1_shape, img0_shape));
    // torch applies Python floats to a float32 tensor in float32.
    let (gain, pad_w, pad_h) = (gain as f32, pad_w as f32, pad_h as f32);
    let (h0, w0) = (img0_shape.0 as f32, img0_shape.1 as f32);
    for b in boxes {
        *b = [
            ((b[0] - pad_w) / gain).clamp(0.0, w0),
            ((b[1] - pad_h) / gain).clamp(0.0, h0),
            ((b[2] - pad_w) / gain).clamp(0.0, w0),
            ((b[3] - pad_h) / gain).clamp(0.0, h0),
        ];
    }
}

/// The gain and the centred padding that letterboxing `img0_shape` into `img1_shape` used.
fn letterbox_gain_pad((h1, w1): (usize, usize), (h0, w0): (usize, usize)) -> (f64, (f64, f64)) {
    let (h1, w1, h0, w0) = (h1 as f64, w1 as f64, h0 as f64, w0 as f64);
    let gain = (h1 / h0).min(w1 / w0);
    (gain, ((w1 - w0 * gain) / 2.0, (h1 - h0 * gain) / 2.0))
}
