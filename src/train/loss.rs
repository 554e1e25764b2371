//! YOLOv5's loss: ultralytics' `utils/loss.py` `ComputeLoss` (v7.0), differentiable
//! with respect to the raw Detect maps through candle's autograd.
//!
//! Per level, over the positives that [`assign::build_targets`] picks: the CIoU box loss
//! `mean(1 − CIoU)`, and (for more than one class) the class BCE against label-smoothed
//! one-hot targets; over every prediction: the objectness BCE against the detached,
//! non-negative CIoU of the positive in that cell (0 elsewhere), weighted by the level's
//! balance. The three sums are scaled by their gains, and the total by the batch size.
//! ultralytics' defaults are fixed here as in v7.0: IoU ratio `gr` 1.0, `sort_obj_iou`
//! off, autobalance off.
//!
//! With [`Assignment::Ota`] it is yolov7's `ComputeLossOTA`: the same terms over the
//! positives that [`ota::assign`] picks.
//!
//! [`assign::build_targets`]: super::assign::build_targets
//! [`ota::assign`]: super::ota::assign

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::assign::{build_targets, targets_from_tensor, Positive, TargetError};
use super::ota;
use std::sync::Arc;

use crate::act::zoo::{LogSigmoid, Sigmoid};
use crate::ops::pick::rows_and_column;
use crate::ops::pointwise::apply;
use crate::ops::storage::contiguous;

/// The loss's keys of `hyp.*.yaml` (`box`, `cls`, `obj`, `dfl` are the gains). `box` and
/// `cls` serve both losses; YOLOv5's needs `cls_pw`, `obj`, `obj_pw`, `iou_t`, `anchor_t`
/// and `fl_gamma`, ultralytics 8's `dfl`, which the trainer checks for the model it trains.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossHyp {
    /// Box loss gain.
    #[serde(rename = "box")]
    pub box_gain: f64,
    /// Class loss gain.
    #[serde(rename = "cls")]
    pub cls_gain: f64,
    /// Class BCE positive weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls_pw: Option<f64>,
    /// Objectness loss gain.
    #[serde(rename = "obj", default, skip_serializing_if = "Option::is_none")]
    pub obj_gain: Option<f64>,
    /// Objectness BCE positive weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obj_pw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iou_t: Option<f64>,
    /// Largest anchor-to-label size ratio that still matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_t: Option<f64>,
    /// Anchors per output layer; when set, the model's anchors are re-initialised (ultralytics' `hyp['anchors']`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fl_gamma: Option<f64>,
    /// Label smoothing epsilon (ultralytics fills it from `--label-smoothing`; 0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    /// yolov7's training loss choice: 0 is YOLOv5's loss, 1 yolov7's ComputeLossOTA. Absent
    /// means 0 here, although yolov7 itself takes an absent key as 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_ota: Option<u8>,
    /// ultralytics 8's distribution focal loss gain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dfl: Option<f64>,
}

/// ultralytics 8's loss gains: its `box`, `cls` and `dfl` hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct V8Gains {
    pub box_gain: f64,
    pub cls_gain: f64,
    pub dfl_gain: f64,
}

/// Keys a loss needs that the hyperparameter file does not set.
#[derive(Debug, thiserror::Error)]
#[error("{loss} needs the hyperparameter{} {}, which the file does not set; start from {example}", if .missing.len() == 1 { "" } else { "s" }, .missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
pub struct MissingHyp {
    pub loss: &'static str,
    pub missing: Vec<&'static str>,
    pub example: &'static str,
}

impl LossHyp {
    /// YOLOv5's `anchor_t`, which AutoAnchor reads too.
    pub fn anchor_t(&self) -> Result<f64, MissingHyp> {
        self.anchor_t.ok_or_else(|| MissingHyp {
            loss: "YOLOv5's loss",
            missing: vec!["anchor_t"],
            example: "hyp.scratch-low.yaml",
        })
    }

    /// ultralytics 8's gains.
    pub fn v8_gains(&self) -> Result<V8Gains, MissingHyp> {
        Ok(V8Gains {
            box_gain: self.box_gain,
            cls_gain: self.cls_gain,
            dfl_gain: self.dfl.ok_or_else(|| MissingHyp {
                loss: "ultralytics 8's loss (YOLOv8, YOLO11)",
                missing: vec!["dfl"],
                example: "hyp.v8-default.yaml",
            })?,
        })
    }
}

/// The loss's gains and weights, as the loss computes with them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossGains {
    pub box_gain: f64,
    pub cls_gain: f64,
    pub obj_gain: f64,
    /// Positive weights of the class and objectness BCE.
    pub cls_pw: f64,
    pub obj_pw: f64,
    /// Largest target-to-anchor size ratio that still matches.
    pub anchor_t: f64,
    /// Focal loss gamma; 0 is plain BCE.
    pub fl_gamma: f64,
    /// Label smoothing epsilon for the class targets.
    pub label_smoothing: f64,
}

impl LossGains {
    /// The loss part of a hyperparameter file, unscaled.
    pub fn from_hyp(hyp: &LossHyp) -> Result<LossGains, MissingHyp> {
        let keys = [
            ("cls_pw", hyp.cls_pw),
            ("obj", hyp.obj_gain),
            ("obj_pw", hyp.obj_pw),
            ("anchor_t", hyp.anchor_t),
            ("fl_gamma", hyp.fl_gamma),
            ("iou_t", hyp.iou_t),
        ];
        let missing: Vec<&'static str> = keys
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        let value = |i: usize| keys[i].1.unwrap_or_default();
        if !missing.is_empty() {
            return Err(MissingHyp {
                loss: "YOLOv5's loss",
                missing,
                example: "hyp.scratch-low.yaml",
            });
        }
        Ok(LossGains {
            box_gain: hyp.box_gain,
            cls_gain: hyp.cls_gain,
            obj_gain: value(1),
            cls_pw: value(0),
            obj_pw: value(2),
            anchor_t: value(3),
            fl_gamma: value(4),
            label_smoothing: hyp.label_smoothing.unwrap_or(0.0),
        })
    }
}

/// train.py's scaling of the gains to the model and data: `box *= 3/nl`,
/// `cls *= nc/80 · 3/nl`, `obj *= (imgsz/640)² · 3/nl` (the hyp files are tuned for
/// 3 levels, 80 classes and 640 px). Evaluated in ultralytics' order, in f64.
pub fn scale_loss_gains(base: &LossGains, nl: usize, nc: usize, imgsz: usize) -> LossGains {
    let nl = nl as f64;
    LossGains {
        box_gain: base.box_gain * (3.0 / nl),
        cls_gain: base.cls_gain * (nc as f64 / 80.0 * 3.0 / nl),
        obj_gain: base.obj_gain * ((imgsz as f64 / 640.0).powi(2) * 3.0 / nl),
        ..*base
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("loss: anchors must be (levels 1..=5, anchors, 2), got shape {0:?}")]
    Anchors(Vec<usize>),
    #[error("loss: {got} prediction levels for a model with {expected}")]
    Levels { expected: usize, got: usize },
    #[error("loss: level {level} predictions have shape {shape:?}; expected ({batch}, {na}, ny, nx, {no})")]
    PredShape {
        level: usize,
        shape: Vec<usize>,
        batch: usize,
        na: usize,
        no: usize,
    },
    #[error("loss: OTA assignment needs one finite stride > 0 per level ({levels} levels), got {strides:?}")]
    Strides { levels: usize, strides: Vec<f32> },
    #[error("loss")]
    Targets(#[from] TargetError),
    #[error("loss")]
    Tensor(#[from] candle_core::Error),
}

/// How predictions are made responsible for targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    /// YOLOv5's `build_targets` (also yolov7's `ComputeLoss`, `loss_ota: 0`).
    Yolov5,
    /// yolov7's `ComputeLossOTA` (`loss_ota: 1`). `strides` are the levels' pixels per
    /// cell, with which it compares candidate and target boxes in pixels.
    Ota { strides: Vec<f32> },
}

/// YOLOv5's loss for a model with `nc` classes and the given anchors, or yolov7's OTA loss
/// with [`Assignment::Ota`].
#[derive(Debug, Clone)]
pub struct YoloLoss {
    gains: LossGains,
    assignment: Assignment,
    nc: usize,
    /// Per level, per anchor: width and height in grid units (stride units).
    anchors: Vec<Vec<[f32; 2]>>,
    /// Objectness weight per level.
    balance: &'static [f64],
    cls_bce: BceWithLogits,
    obj_bce: BceWithLogits,
    /// Class targets for the true class and the others (ultralytics' `smooth_BCE`).
    class_positive: f64,
    class_negative: f64,
}

/// ultralytics' objectness balance: 3 levels (P3–P5), else up to 5 (P3–P7).
const BALANCE_3: [f64; 3] = [4.0, 1.0, 0.4];
const BALANCE_5: [f64; 5] = [4.0, 1.0, 0.25, 0.06, 0.02];

impl YoloLoss {
    /// `gains` already scaled ([`scale_loss_gains`]); `anchors` is (levels, anchors, 2) in
    /// stride units, as `Detect::anchors`.
    pub fn new(gains: LossGains, nc: usize, anchors: &Tensor) -> Result<YoloLoss, LossError> {
        let dims = anchors.dims();
        if dims.len() != 3 || dims[2] != 2 || dims[0] == 0 || dims[0] > BALANCE_5.len() {
            return Err(LossError::Anchors(dims.to_vec()));
        }
        let anchors = anchors
            .to_dtype(DType::F32)?
            .to_vec3::<f32>()?
            .into_iter()
            .map(|level| level.into_iter().map(|a| [a[0], a[1]]).collect())
            .collect();
        let balance: &'static [f64] = if dims[0] == 3 {
            &BALANCE_3
        } else {
            &BALANCE_5[..dims[0]]
        };
        let focal_gamma = (gains.fl_gamma > 0.0).then_some(gains.fl_gamma);
        Ok(YoloLoss {
            gains,
            assignment: Assignment::Yolov5,
            nc,
            anchors,
            balance,
            cls_bce: BceWithLogits {
                pos_weight: gains.cls_pw,
                focal_gamma,
            },
            obj_bce: BceWithLogits {
                pos_weight: gains.obj_pw,
                focal_gamma,
            },
            class_positive: 1.0 - 0.5 * gains.label_smoothing,
            class_negative: 0.5 * gains.label_smoothing,
        })
    }

    /// The same loss with positives picked by `assignment` (YOLOv5's unless changed).
    pub fn with_assignment(self, assignment: Assignment) -> Result<YoloLoss, LossError> {
        if let Assignment::Ota { strides } = &assignment {
            if strides.len() != self.anchors.len()
                || !strides.iter().all(|s| s.is_finite() && *s > 0.0)
            {
                return Err(LossError::Strides {
                    levels: self.anchors.len(),
                    strides: strides.clone(),
                });
            }
        }
        Ok(YoloLoss { assignment, ..self })
    }

    /// The loss of raw Detect maps `preds` (per level (bs, na, ny, nx, nc + 5), as
    /// `Model::forward(x, true)` returns them) against `targets` (n, 6) rows of
    /// `[image, class, cx, cy, w, h]` normalised to the input image.
    ///
    /// Returns the total to backpropagate (a scalar: `(lbox + lobj + lcls) · bs`) and the
    /// detached components `[lbox, lobj, lcls]` for logging.
    pub fn compute(
        &self,
        preds: &[Tensor],
        targets: &Tensor,
    ) -> Result<(Tensor, [f32; 3]), LossError> {
        let batch = self.check_preds(preds)?;
        let targets = targets_from_tensor(targets, batch, self.nc)?;
        let anchor_t = self.gains.anchor_t as f32;
        let positives = match &self.assignment {
            Assignment::Yolov5 => preds
                .iter()
                .zip(&self.anchors)
                .map(|(pred, anchors)| {
                    let (_, _, ny, nx, _) = pred.dims5()?;
                    Ok(build_targets(&targets, anchors, (ny, nx), anchor_t))
                })
                .collect::<Result<Vec<_>, LossError>>()?,
            Assignment::Ota { strides } => {
                ota::assign(preds, &targets, &self.anchors, strides, anchor_t)?
            }
        };
        let zero = Tensor::zeros((), preds[0].dtype(), preds[0].device())?;
        let (mut lbox, mut lobj, mut lcls) = (zero.clone(), zero.clone(), zero);
        for (level, (pred, positives)) in preds.iter().zip(&positives).enumerate() {
            let terms = self.level_terms(pred, positives)?;
            lbox = (lbox + terms.lbox)?;
            lobj = (lobj + (terms.lobj * self.balance[level])?)?;
            lcls = (lcls + terms.lcls)?;
        }
        let lbox = (lbox * self.gains.box_gain)?;
        let lobj = (lobj * self.gains.obj_gain)?;
        let lcls = (lcls * self.gains.cls_gain)?;
        let items = [scalar(&lbox)?, scalar(&lobj)?, scalar(&lcls)?];
        let total = (((lbox + lobj)? + lcls)? * batch as f64)?;
        Ok((total, items))
    }

    /// The batch size, after checking each level's shape against the anchors and classes.
    fn check_preds(&self, preds: &[Tensor]) -> Result<usize, LossError> {
        if preds.len() != self.anchors.len() {
            return Err(LossError::Levels {
                expected: self.anchors.len(),
                got: preds.len(),
            });
        }
        let (na, no) = (self.anchors[0].len(), self.nc + 5);
        let batch = preds[0].dims().first().copied().unwrap_or(0);
        for (level, pred) in preds.iter().enumerate() {
            let shape = pred.dims();
            if shape.len() != 5 || shape[0] != batch || shape[1] != na || shape[4] != no {
                return Err(LossError::PredShape {
                    level,
                    shape: shape.to_vec(),
                    batch,
                    na,
                    no,
                });
            }
        }
        Ok(batch)
    }

    /// One level's unweighted box, objectness and class terms over its `positives`.
    fn level_terms(&self, pred: &Tensor, positives: &[Positive]) -> Result<LevelTerms, LossError> {
        let (batch, na, ny, nx, _) = pred.dims5()?;
        let zero = Tensor::zeros((), pred.dtype(), pred.device())?;
        let mut objectness = vec![0f64; batch * na * ny * nx];
        let cells: Vec<usize> = positives.iter().map(|p| p.row((na, ny, nx))).collect();
        let (picked, objectness_logits) = rows_and_column(pred, &cells, 4)?;
        let (lbox, lcls) = if positives.is_empty() {
            (zero.clone(), zero)
        } else {
            let iou = complete_iou(
                &predicted_boxes(&picked, positives)?,
                &target_boxes(positives, pred)?,
            )?;
            let lbox = iou.affine(-1.0, 1.0)?.mean_all()?;
            // The objectness target is the box's quality; where positives share a cell and
            // anchor, the last one's (as torch's index assignment leaves it).
            let quality = iou
                .detach()
                .relu()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            for (&cell, q) in cells.iter().zip(quality) {
                objectness[cell] = q;
            }
            let lcls = if self.nc > 1 {
                self.class_term(&picked, positives)?
            } else {
                zero
            };
            (lbox, lcls)
        };
        let objectness = Tensor::from_vec(objectness, (batch, na, ny, nx), pred.device())?
            .to_dtype(pred.dtype())?;
        let lobj = self.obj_bce.mean(&objectness_logits, &objectness)?;
        Ok(LevelTerms { lbox, lobj, lcls })
    }

    /// Class BCE of the picked predictions against smoothed one-hot targets.
    fn class_term(&self, picked: &Tensor, positives: &[Positive]) -> Result<Tensor, LossError> {
        let mut wanted = vec![self.class_negative; positives.len() * self.nc];
        for (row, p) in positives.iter().enumerate() {
            wanted[row * self.nc + p.class] = self.class_positive;
        }
        let wanted = Tensor::from_vec(wanted, (positives.len(), self.nc), picked.device())?
            .to_dtype(picked.dtype())?;
        Ok(self.cls_bce.mean(&picked.narrow(1, 5, self.nc)?, &wanted)?)
    }
}

struct LevelTerms {
    lbox: Tensor,
    lobj: Tensor,
    lcls: Tensor,
}

pub(super) fn scalar(t: &Tensor) -> candle_core::Result<f32> {
    t.to_dtype(DType::F32)?.to_scalar::<f32>()
}

/// Predicted boxes (n, 4) xywh in grid units relative to their cells:
/// xy = 2σ − 0.5, wh = (2σ)² · anchor.
fn predicted_boxes(picked: &Tensor, positives: &[Positive]) -> candle_core::Result<Tensor> {
    let sigmoid = apply(&(Arc::new(Sigmoid) as _), &picked.narrow(1, 0, 4)?)?;
    let xy = sigmoid.narrow(1, 0, 2)?.affine(2.0, -0.5)?;
    let anchors: Vec<f32> = positives.iter().flat_map(|p| p.anchor_wh).collect();
    let anchors = Tensor::from_vec(anchors, (positives.len(), 2), picked.device())?
        .to_dtype(picked.dtype())?;
    let wh = (sigmoid.narrow(1, 2, 2)? * 2.0)?.sqr()?.mul(&anchors)?;
    Tensor::cat(&[xy, wh], 1)
}

/// The positives' target boxes (n, 4) xywh, in the predictions' dtype.
fn target_boxes(positives: &[Positive], like: &Tensor) -> candle_core::Result<Tensor> {
    let boxes: Vec<f32> = positives.iter().flat_map(|p| p.tbox).collect();
    Tensor::from_vec(boxes, (positives.len(), 4), like.device())?.to_dtype(like.dtype())
}

/// ultralytics' `bbox_iou(box1, box2, xywh=True, CIoU=True, eps=1e-7)` for n pairs of
/// (n, 4) xywh boxes: IoU − (centre distance² / enclosing diagonal² + v·α), with the
/// aspect-ratio weight α detached, as ultralytics computes it under `no_grad`.
fn complete_iou(pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    complete_iou_of(Corners::from_xywh(pred)?, Corners::from_xywh(target)?)
}

/// The same for (n, 4) corner boxes, as ultralytics 8's loss calls it (`xywh=False`: each
/// height is `y2 − y1 + eps`).
pub(super) fn complete_iou_xyxy(pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    complete_iou_of(Corners::from_xyxy(pred)?, Corners::from_xyxy(target)?)
}

fn complete_iou_of(p: Corners, t: Corners) -> candle_core::Result<Tensor> {
    const EPS: f64 = 1e-7;
    let overlap = |lo1: &Tensor, hi1: &Tensor, lo2: &Tensor, hi2: &Tensor| {
        (hi1.minimum(hi2)? - lo1.maximum(lo2)?)?.relu()
    };
    let inter = (overlap(&p.x1, &p.x2, &t.x1, &t.x2)? * overlap(&p.y1, &p.y2, &t.y1, &t.y2)?)?;
    let union = (((p.w.mul(&p.h)? + t.w.mul(&t.h)?)? - &inter)? + EPS)?;
    let iou = inter.div(&union)?;
    let enclosing_w = (p.x2.maximum(&t.x2)? - p.x1.minimum(&t.x1)?)?;
    let enclosing_h = (p.y2.maximum(&t.y2)? - p.y1.minimum(&t.y1)?)?;
    let diagonal2 = ((enclosing_w.sqr()? + enclosing_h.sqr()?)? + EPS)?;
    let dx = (((&t.x1 + &t.x2)? - &p.x1)? - &p.x2)?;
    let dy = (((&t.y1 + &t.y2)? - &p.y1)? - &p.y2)?;
    let centre_distance2 = ((dx.sqr()? + dy.sqr()?)? / 4.0)?;
    // w / (h + eps), not w / h: a predicted h can underflow towards 0 (σ of a very negative
    // logit), and the backward pass of w / h then multiplies 0 by ∞ (NaN); the eps moves the
    // ratio by parts in 1e7 for boxes of normal size (corner boxes' heights have it once
    // already).
    let ratio = |c: &Corners| c.w.div(&(&c.h + EPS)?);
    let aspect = (atan(&ratio(&t)?)? - atan(&ratio(&p)?)?)?;
    let v = (aspect.sqr()? * (4.0 / std::f64::consts::PI.powi(2)))?;
    let alpha = v
        .detach()
        .div(&((v.detach() - iou.detach())? + (1.0 + EPS))?)?;
    iou - (centre_distance2.div(&diagonal2)? + v.mul(&alpha)?)?
}

/// Corner coordinates and sizes of (n, 4) xywh boxes, each (n,).
struct Corners {
    x1: Tensor,
    y1: Tensor,
    x2: Tensor,
    y2: Tensor,
    w: Tensor,
    h: Tensor,
}

impl Corners {
    fn from_xyxy(boxes: &Tensor) -> candle_core::Result<Corners> {
        let column = |i: usize| boxes.narrow(1, i, 1)?.squeeze(1);
        let (x1, y1, x2, y2) = (column(0)?, column(1)?, column(2)?, column(3)?);
        Ok(Corners {
            w: (&x2 - &x1)?,
            h: ((&y2 - &y1)? + 1e-7)?,
            x1,
            y1,
            x2,
            y2,
        })
    }

    fn from_xywh(boxes: &Tensor) -> candle_core::Result<Corners> {
        let column = |i: usize| boxes.narrow(1, i, 1)?.squeeze(1);
        let (x, y, w, h) = (column(0)?, column(1)?, column(2)?, column(3)?);
        let (half_w, half_h) = ((&w / 2.0)?, (&h / 2.0)?);
        Ok(Corners {
            x1: (&x - &half_w)?,
            x2: (&x + &half_w)?,
            y1: (&y - &half_h)?,
            y2: (&y + &half_h)?,
            w,
            h,
        })
    }
}

/// `nn.BCEWithLogitsLoss(pos_weight)` with mean reduction, wrapped in ultralytics'
/// `FocalLoss(gamma, alpha=0.25)` when a gamma is set.
#[derive(Debug, Clone, Copy)]
struct BceWithLogits {
    pos_weight: f64,
    focal_gamma: Option<f64>,
}

impl BceWithLogits {
    /// torch's formula: `(1 − y)·x − (1 + (pw − 1)·y)·log σ(x)`, elementwise, then the mean.
    fn mean(&self, logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
        let log_sigmoid = apply(&(Arc::new(LogSigmoid) as _), logits)?;
        let log_weight = targets.affine(self.pos_weight - 1.0, 1.0)?;
        let loss = (targets.affine(-1.0, 1.0)?.mul(logits)? - log_weight.mul(&log_sigmoid)?)?;
        let loss = match self.focal_gamma {
            Some(gamma) => loss.mul(&focal_factor(logits, targets, gamma)?)?,
            None => loss,
        };
        loss.mean_all()
    }
}

/// FocalLoss's `alpha_factor · (1 − p_t)^gamma`, p_t = y·p + (1 − y)·(1 − p), alpha 0.25.
fn focal_factor(logits: &Tensor, targets: &Tensor, gamma: f64) -> candle_core::Result<Tensor> {
    const ALPHA: f64 = 0.25;
    let p = apply(&(Arc::new(Sigmoid) as _), logits)?;
    let not_targets = targets.affine(-1.0, 1.0)?;
    let p_t = (targets.mul(&p)? + not_targets.mul(&p.affine(-1.0, 1.0)?)?)?;
    let alpha_factor = (targets * ALPHA)?.add(&(&not_targets * (1.0 - ALPHA))?)?;
    // relu: rounding can put p_t a hair above 1, where a fractional power is NaN.
    let modulating = p_t.affine(-1.0, 1.0)?.relu()?.powf(gamma)?;
    alpha_factor.mul(&modulating)
}

/// Elementwise arctangent with its gradient 1 / (1 + x²); candle has no atan.
fn atan(x: &Tensor) -> candle_core::Result<Tensor> {
    if crate::ops::portable::wanted(x.device()) {
        return crate::ops::portable::atan(x);
    }
    x.contiguous()?.apply_op1(Atan)
}

struct Atan;

impl CustomOp1 for Atan {
    fn name(&self) -> &'static str {
        "atan"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let result = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(
                contiguous::<f32>("atan", storage, layout)?
                    .iter()
                    .map(|v| v.atan())
                    .collect(),
            ),
            CpuStorage::F64(_) => CpuStorage::F64(
                contiguous::<f64>("atan", storage, layout)?
                    .iter()
                    .map(|v| v.atan())
                    .collect(),
            ),
            _ => candle_core::bail!("atan: expects f32 or f64"),
        };
        Ok((result, layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.div(&(arg.sqr()? + 1.0)?)?))
    }
}
