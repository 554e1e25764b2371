//! yolov7's OTA assignment: `ComputeLossOTA.build_targets` (WongKinYiu/yolov7
//! `utils/loss.py`, commit a207844), a SimOTA-style dynamic-k matching.
//!
//! The candidates are YOLOv5's positives at every level ([`build_targets`], which is
//! yolov7's `find_3_positive`). Per image, each target takes the `k` candidates that cost
//! it least, where `k` is the sum of its 10 best IoUs with the candidates' predicted boxes
//! (truncated, at least 1) and the cost is the class BCE of the predicted score
//! `sqrt(σ(cls)·σ(obj))` against the one-hot class, plus `3 · −log IoU`. A candidate taken
//! by several targets goes to whichever of the image's targets it costs least, so a
//! candidate may end up regressing another target than the one that proposed it.
//!
//! The decisions use detached predictions in f32, as torch makes them in training.

use crate::ops::boxes::{iou, xywh_to_xyxy};
use candle_core::{DType, Tensor};

use super::assign::{build_targets, Positive, Target};
use crate::ops::pick::select_rows;

/// How many of a target's best IoUs add up to its number of positives.
const TOP_IOUS: usize = 10;
/// Weight of the IoU cost against the class cost.
const IOU_COST_WEIGHT: f32 = 3.0;
/// Keeps `−log IoU` finite for candidates that do not overlap the target.
const IOU_COST_EPS: f32 = 1e-8;

/// A prediction proposed by YOLOv5's matching, with what the cost needs of it.
struct Candidate {
    level: usize,
    /// The level's grid, (ny, nx).
    grid: (usize, usize),
    proposal: Positive,
    /// The predicted box in pixels: [x1, y1, x2, y2].
    corners: [f32; 4],
    /// The predicted score per class, `sqrt(σ(class) · σ(objectness))`.
    scores: Vec<f32>,
}

impl Candidate {
    /// Decodes the raw prediction `raw` (no values) of `proposal` at a level with `stride`
    /// pixels per cell, as the loss does: xy = 2σ − 0.5 + cell, wh = (2σ)² · anchor.
    fn decode(
        level: usize,
        grid: (usize, usize),
        stride: f32,
        proposal: Positive,
        raw: &[f32],
    ) -> Candidate {
        let x = (sigmoid(raw[0]) * 2.0 - 0.5 + proposal.gx as f32) * stride;
        let y = (sigmoid(raw[1]) * 2.0 - 0.5 + proposal.gy as f32) * stride;
        let w = (sigmoid(raw[2]) * 2.0).powi(2) * proposal.anchor_wh[0] * stride;
        let h = (sigmoid(raw[3]) * 2.0).powi(2) * proposal.anchor_wh[1] * stride;
        let objectness = sigmoid(raw[4]);
        let scores = raw[5..]
            .iter()
            .map(|&c| (sigmoid(c) * objectness).sqrt())
            .collect();
        Candidate {
            level,
            grid,
            proposal,
            corners: xywh_to_xyxy([x, y, w, h]),
            scores,
        }
    }

    /// `Σ BCE(logit(score), one_hot(class))`, written as `−log score` for the class and
    /// `−log(1 − score)` for the others: the same value, and finite where yolov7's logit
    /// of a score that rounds to 1 makes it NaN.
    fn class_cost(&self, class: usize) -> f32 {
        self.scores
            .iter()
            .enumerate()
            .map(|(c, &score)| {
                if c == class {
                    -score.ln()
                } else {
                    -(1.0 - score).ln()
                }
            })
            .sum()
    }
}

/// The positives per level that OTA picks for `targets` among the raw Detect maps `preds`
/// (per level (batch, na, ny, nx, no)), with `anchors` per level in grid units, levels'
/// `strides` in pixels per cell, and YOLOv5's `anchor_t` for the candidates. Per level
/// the order is torch's: by image, then as the candidates were proposed.
pub fn assign(
    preds: &[Tensor],
    targets: &[Target],
    anchors: &[Vec<[f32; 2]>],
    strides: &[f32],
    anchor_t: f32,
) -> candle_core::Result<Vec<Vec<Positive>>> {
    let (Some(first), Some(&first_stride)) = (preds.first(), strides.first()) else {
        return Ok(vec![Vec::new(); preds.len()]);
    };
    let (batch, _, ny, nx, _) = first.dims5()?;
    // The input image in pixels, which the targets are normalised to.
    let image_size = [nx as f32 * first_stride, ny as f32 * first_stride];
    let mut candidates = Vec::new();
    for (level, ((pred, anchors), &stride)) in preds.iter().zip(anchors).zip(strides).enumerate() {
        let (_, na, ny, nx, _) = pred.dims5()?;
        let proposals = build_targets(targets, anchors, (ny, nx), anchor_t);
        if proposals.is_empty() {
            continue;
        }
        let rows: Vec<usize> = proposals.iter().map(|p| p.row((na, ny, nx))).collect();
        let raw = select_rows(&pred.detach(), &rows)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        candidates.extend(
            proposals
                .into_iter()
                .zip(raw)
                .map(|(proposal, raw)| Candidate::decode(level, (ny, nx), stride, proposal, &raw)),
        );
    }
    let mut positives = vec![Vec::new(); preds.len()];
    for image in 0..batch {
        let image_targets: Vec<&Target> = targets.iter().filter(|t| t.image == image).collect();
        let image_candidates: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.proposal.image == image)
            .collect();
        if image_targets.is_empty() || image_candidates.is_empty() {
            continue;
        }
        let iou: Vec<Vec<f32>> = image_targets
            .iter()
            .map(|t| {
                let target = target_corners(t, image_size);
                image_candidates
                    .iter()
                    // yolov7 uses torchvision's box_iou: no epsilon.
                    .map(|c| iou(&target, &c.corners, 0.0))
                    .collect()
            })
            .collect();
        let cost: Vec<Vec<f32>> = image_targets
            .iter()
            .zip(&iou)
            .map(|(t, ious)| {
                image_candidates
                    .iter()
                    .zip(ious)
                    .map(|(c, &iou)| {
                        c.class_cost(t.class) + IOU_COST_WEIGHT * -(iou + IOU_COST_EPS).ln()
                    })
                    .collect()
            })
            .collect();
        for (candidate, owner) in image_candidates.iter().zip(dynamic_k_matching(&iou, &cost)) {
            if let Some(owner) = owner {
                let p = &candidate.proposal;
                positives[candidate.level].push(Positive::for_target(
                    image_targets[owner],
                    p.anchor,
                    p.anchor_wh,
                    (p.gy, p.gx),
                    candidate.grid,
                ));
            }
        }
    }
    Ok(positives)
}

/// For `iou` and `cost` (targets × candidates), the target each candidate is matched to:
/// every target takes its [`dynamic_k`] cheapest candidates, and a candidate taken more
/// than once goes to the cheapest of all targets (the first on a tie, as torch's `min`).
fn dynamic_k_matching(iou: &[Vec<f32>], cost: &[Vec<f32>]) -> Vec<Option<usize>> {
    let candidates = cost.first().map_or(0, Vec::len);
    let mut takers = vec![0usize; candidates];
    let mut owner = vec![None; candidates];
    for (target, (ious, costs)) in iou.iter().zip(cost).enumerate() {
        for candidate in cheapest(costs, dynamic_k(ious)) {
            takers[candidate] += 1;
            owner[candidate] = Some(target);
        }
    }
    for (candidate, owner) in owner.iter_mut().enumerate().filter(|(c, _)| takers[*c] > 1) {
        *owner = (0..cost.len()).min_by(|&a, &b| cost[a][candidate].total_cmp(&cost[b][candidate]));
    }
    owner
}

/// A target's number of positives: the sum of its best [`TOP_IOUS`] IoUs, truncated, at least 1.
fn dynamic_k(ious: &[f32]) -> usize {
    let mut best = ious.to_vec();
    best.sort_by(|a, b| b.total_cmp(a));
    let sum: f32 = best.iter().take(TOP_IOUS).sum();
    (sum as usize).max(1)
}

/// The indices of the `k` smallest costs, cheapest first, the first of equal costs. Equal
/// costs come from copies of one prediction (a centre on a cell corner proposes its own
/// cell more than once); torch's `topk` picks among them arbitrarily.
fn cheapest(costs: &[f32], k: usize) -> impl Iterator<Item = usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[a].total_cmp(&costs[b]));
    order.into_iter().take(k)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The target's box in pixels of an image `[width, height]`. yolov7 scales x by the height
/// too; that is the same for its square training images and wrong for others.
fn target_corners(t: &Target, [width, height]: [f32; 2]) -> [f32; 4] {
    xywh_to_xyxy([t.cx * width, t.cy * height, t.w * width, t.h * height])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_k_truncates_the_top_iou_sum_and_keeps_at_least_one() {
        assert_eq!(dynamic_k(&[0.9, 0.8, 0.7, 0.1]), 2);
        assert_eq!(dynamic_k(&[0.3, 0.2]), 1);
        assert_eq!(dynamic_k(&[1.0; 12]), TOP_IOUS);
    }

    #[test]
    fn a_candidate_taken_twice_goes_to_the_cheapest_of_all_targets() {
        // Targets 0 and 1 each take one candidate (k = 1), both candidate 1; target 2
        // takes candidate 0, yet is the cheapest for candidate 1, so it wins it too.
        let iou = vec![
            vec![0.5, 0.6, 0.1],
            vec![0.2, 0.7, 0.1],
            vec![0.6, 0.1, 0.1],
        ];
        let cost = vec![
            vec![5.0, 2.0, 9.0],
            vec![4.0, 1.0, 9.0],
            vec![0.5, 0.9, 9.0],
        ];
        assert_eq!(
            dynamic_k_matching(&iou, &cost),
            vec![Some(2), Some(2), None]
        );
    }
}
