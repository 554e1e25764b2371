//! ultralytics 8's detection loss (`v8DetectionLoss`, 8.4) for the anchor-free head,
//! differentiable with respect to its raw maps through candle's autograd.
//!
//! The anchor points' class logits and box distributions (4 sides × reg_max bins) are
//! decoded to corner boxes (each side the expected bin under the softmax), the
//! [`tal`](super::tal) assigner picks the positives and their soft class targets, and:
//! - class: BCE with logits over every anchor and class, summed, over the targets' sum;
//! - box: (1 − CIoU) of each positive against its box, weighted by its class target;
//! - DFL: the cross-entropy of each side's distribution against the two bins around the
//!   target distance (clamped below reg_max − 1), mixed linearly, equally weighted.
//!
//! Each is divided by the sum of the class targets (at least 1) and scaled by its gain
//! (box 7.5, cls 0.5, dfl 1.5 by default); the total is multiplied by the batch size.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use super::assign::targets_from_tensor;
use super::loss::{complete_iou_xyxy, scalar, LossError, V8Gains};
use super::tal::{assign, GroundTruth, TalSettings};
use crate::act::zoo::LogSigmoid;
use crate::ops::pointwise::apply;

/// ultralytics 8's loss for a head of `nc` classes, `reg_max` bins and these strides.
#[derive(Debug, Clone)]
pub struct V8Loss {
    nc: usize,
    reg_max: usize,
    strides: Vec<f64>,
    gains: V8Gains,
    tal: TalSettings,
}

/// Anchor points (cell centres, grid units) and their strides, levels in order.
struct Points {
    grid: Vec<[f32; 2]>,
    stride: Vec<f32>,
}

impl V8Loss {
    pub fn new(nc: usize, reg_max: usize, strides: &[f64], gains: V8Gains) -> V8Loss {
        V8Loss {
            nc,
            reg_max,
            strides: strides.to_vec(),
            gains,
            tal: TalSettings::for_strides(strides),
        }
    }

    /// The loss of raw maps `preds` (per level (bs, 1, ny, nx, 4·reg_max + nc), as
    /// `Model::forward(x, true)` returns them) against `targets` (n, 6) rows of `[image,
    /// class, cx, cy, w, h]` normalised to the input image.
    ///
    /// Returns the total to backpropagate (`(lbox + lcls + ldfl) · bs`) and the detached
    /// components `[lbox, lcls, ldfl]`.
    pub fn compute(
        &self,
        preds: &[Tensor],
        targets: &Tensor,
    ) -> Result<(Tensor, [f32; 3]), LossError> {
        let (bs, points, imgsz) = self.check_preds(preds)?;
        let (r, nc) = (self.reg_max, self.nc);
        let anchors = points.grid.len();
        let device = preds[0].device().clone();
        let rows: Vec<Tensor> = preds
            .iter()
            .map(|p| {
                let (b, _, ny, nx, no) = p.dims5()?;
                p.reshape((b, ny * nx, no))
            })
            .collect::<candle_core::Result<_>>()?;
        let pred = Tensor::cat(&rows, 1)?.to_dtype(DType::F32)?;
        let pred_dist = pred.narrow(2, 0, 4 * r)?;
        let pred_scores = pred.narrow(2, 4 * r, nc)?;

        // Decoded boxes, corners in grid units (differentiable), and their detached copy
        // in pixels for the assigner.
        let bins = Tensor::arange(0f32, r as f32, &device)?;
        let probs = softmax_last(&pred_dist.reshape((bs, anchors, 4, r))?)?;
        let dist = probs.broadcast_mul(&bins)?.sum(D::Minus1)?; // (bs, A, 4)
        let grid: Vec<f32> = points
            .grid
            .iter()
            .flat_map(|p| [p[0], p[1], p[0], p[1]])
            .collect();
        let grid = Tensor::from_vec(grid, (1, anchors, 4), &device)?;
        let sign = Tensor::new(&[-1f32, -1., 1., 1.], &device)?.reshape((1, 1, 4))?;
        let pred_boxes = grid.broadcast_add(&dist.broadcast_mul(&sign)?)?; // (bs, A, 4) xyxy

        let box_values = pred_boxes.detach().flatten_all()?.to_vec1::<f32>()?;
        let score_values = pred_scores
            .detach()
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(crate::ops::scalar::sigmoid)
            .collect::<Vec<f32>>();
        let points_px: Vec<[f32; 2]> = points
            .grid
            .iter()
            .zip(&points.stride)
            .map(|(p, s)| [p[0] * s, p[1] * s])
            .collect();
        let truths = ground_truths(targets, bs, nc, imgsz)?;
        let mut target_scores = vec![0f32; bs * anchors * nc];
        let mut positives: Vec<(usize, [f32; 4])> = Vec::new(); // (row b·A + a, box in grid units)
        for (b, truths) in truths.iter().enumerate() {
            let boxes_px: Vec<[f32; 4]> = (0..anchors)
                .map(|a| {
                    let v = &box_values[(b * anchors + a) * 4..][..4];
                    let s = points.stride[a];
                    [v[0] * s, v[1] * s, v[2] * s, v[3] * s]
                })
                .collect();
            let scores = &score_values[b * anchors * nc..][..anchors * nc];
            let assigned = assign(scores, &boxes_px, &points_px, truths, nc, &self.tal);
            target_scores[b * anchors * nc..][..anchors * nc].copy_from_slice(&assigned.scores);
            for (a, target) in assigned.boxes.iter().enumerate() {
                if let Some(t) = target {
                    let s = points.stride[a];
                    positives.push((b * anchors + a, [t[0] / s, t[1] / s, t[2] / s, t[3] / s]));
                }
            }
        }
        let score_sum = target_scores.iter().sum::<f32>().max(1.0);

        let target_scores_t = Tensor::from_vec(target_scores.clone(), (bs, anchors, nc), &device)?;
        let lcls = (bce_with_logits_sum(&pred_scores, &target_scores_t)? / score_sum as f64)?;

        let zero = Tensor::zeros((), DType::F32, &device)?;
        let (lbox, ldfl) = if positives.is_empty() {
            (zero.clone(), zero)
        } else {
            let rows: Vec<u32> = positives.iter().map(|(row, _)| *row as u32).collect();
            let rows_t = Tensor::from_vec(rows.clone(), rows.len(), &device)?;
            let weight: Vec<f32> = positives
                .iter()
                .map(|(row, _)| target_scores[row * nc..][..nc].iter().sum())
                .collect();
            let weight = Tensor::from_vec(weight, positives.len(), &device)?;
            let picked = pred_boxes
                .reshape((bs * anchors, 4))?
                .index_select(&rows_t, 0)?;
            let target: Vec<f32> = positives.iter().flat_map(|(_, t)| *t).collect();
            let target = Tensor::from_vec(target, (positives.len(), 4), &device)?;
            let iou = complete_iou_xyxy(&picked, &target)?;
            let lbox = (iou.affine(-1.0, 1.0)?.mul(&weight)?.sum_all()? / score_sum as f64)?;

            let dist = pred_dist
                .reshape((bs * anchors, 4 * r))?
                .index_select(&rows_t, 0)?;
            let sides = self.dfl_weights(&positives, &points, &device)?; // (P·4, R)
            let logp = log_softmax_last(&dist.reshape((positives.len() * 4, r))?)?;
            let per_side = logp.mul(&sides)?.sum(D::Minus1)?.neg()?;
            let per_anchor = per_side.reshape((positives.len(), 4))?.mean(D::Minus1)?;
            let ldfl = (per_anchor.mul(&weight)?.sum_all()? / score_sum as f64)?;
            (lbox, ldfl)
        };
        let lbox = (lbox * self.gains.box_gain)?;
        let lcls = (lcls * self.gains.cls_gain)?;
        let ldfl = (ldfl * self.gains.dfl_gain)?;
        let items = [scalar(&lbox)?, scalar(&lcls)?, scalar(&ldfl)?];
        let total = (((lbox + lcls)? + ldfl)? * bs as f64)?;
        Ok((total, items))
    }

    /// Per positive and side, the weights of the two bins around the target distance
    /// (ultralytics' DFLoss: the distance clamped to [0, reg_max − 1.01], the left bin
    /// weighted by its distance to the right one).
    fn dfl_weights(
        &self,
        positives: &[(usize, [f32; 4])],
        points: &Points,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let r = self.reg_max;
        let top = r as f32 - 1.0 - 0.01;
        let anchors = points.grid.len();
        let mut w = vec![0f32; positives.len() * 4 * r];
        for (i, (row, t)) in positives.iter().enumerate() {
            let p = points.grid[row % anchors];
            let distances = [p[0] - t[0], p[1] - t[1], t[2] - p[0], t[3] - p[1]];
            for (side, d) in distances.into_iter().enumerate() {
                let d = d.clamp(0.0, top);
                let left = d as usize; // floor: d ≥ 0
                let left_weight = (left + 1) as f32 - d;
                let at = &mut w[(i * 4 + side) * r..][..r];
                at[left] = left_weight;
                at[left + 1] = 1.0 - left_weight;
            }
        }
        Tensor::from_vec(w, (positives.len() * 4, r), device)
    }

    /// Batch size, the anchor points, and the input size (h, w) in pixels, after checking
    /// the levels' shapes.
    fn check_preds(&self, preds: &[Tensor]) -> Result<(usize, Points, [f32; 2]), LossError> {
        if preds.len() != self.strides.len() {
            return Err(LossError::Levels {
                expected: self.strides.len(),
                got: preds.len(),
            });
        }
        let no = 4 * self.reg_max + self.nc;
        let batch = preds[0].dims().first().copied().unwrap_or(0);
        let mut points = Points {
            grid: Vec::new(),
            stride: Vec::new(),
        };
        for (level, (pred, &stride)) in preds.iter().zip(&self.strides).enumerate() {
            let shape = pred.dims();
            if shape.len() != 5 || shape[0] != batch || shape[1] != 1 || shape[4] != no {
                return Err(LossError::PredShape {
                    level,
                    shape: shape.to_vec(),
                    batch,
                    na: 1,
                    no,
                });
            }
            let (ny, nx) = (shape[2], shape[3]);
            for y in 0..ny {
                for x in 0..nx {
                    points.grid.push([x as f32 + 0.5, y as f32 + 0.5]);
                    points.stride.push(stride as f32);
                }
            }
        }
        let dims = preds[0].dims();
        let imgsz = [
            dims[2] as f32 * self.strides[0] as f32,
            dims[3] as f32 * self.strides[0] as f32,
        ];
        Ok((batch, points, imgsz))
    }
}

/// Each image's boxes in pixels (corners), from rows normalised to the input `[h, w]`.
fn ground_truths(
    targets: &Tensor,
    bs: usize,
    nc: usize,
    [h, w]: [f32; 2],
) -> Result<Vec<Vec<GroundTruth>>, LossError> {
    let mut truths = vec![Vec::new(); bs];
    for t in targets_from_tensor(targets, bs, nc)? {
        let (cx, cy, bw, bh) = (t.cx * w, t.cy * h, t.w * w / 2.0, t.h * h / 2.0);
        truths[t.image].push(GroundTruth {
            class: t.class,
            xyxy: [cx - bw, cy - bh, cx + bw, cy + bh],
        });
    }
    Ok(truths)
}

/// Σ over every element of torch's BCEWithLogits: (1 − y)·x − log σ(x).
fn bce_with_logits_sum(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let log_sigmoid = apply(&(Arc::new(LogSigmoid) as _), &logits.contiguous()?)?;
    (targets.affine(-1.0, 1.0)?.mul(logits)? - log_sigmoid)?.sum_all()
}

/// Softmax over the last axis, its maximum held out of the gradient (a constant shift).
fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x
        .broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?
        .exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log softmax over the last axis.
fn log_softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)
}
