//! COCO's convention: the JSON files pycocotools reads (ground truth and results) and a
//! re-implementation of its `COCOeval` for boxes, giving the same AP@[.5:.95] and AP@.5
//! (`stats[0]`, `stats[1]`) on the same data.
//!
//! COCOeval's settings as they apply here: iouType 'bbox', area range 'all', at most 100
//! detections per image and category (the highest scoring), categories and images those
//! of the ground truth. Every box is a plain object (`iscrowd` 0, never ignored), which is
//! all our datasets contain. ultralytics' own numbers ([`super::metrics`]) differ: it
//! matches differently and integrates the curve with the trapezoid rule.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::metrics::linspace;

/// An image of the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoImage {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// A category; with our datasets the id is the class index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoCategory {
    pub id: u64,
    pub name: String,
}

/// A ground-truth box, `bbox` as COCO writes it: x, y (top left), width, height in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CocoAnnotation {
    pub image_id: u64,
    pub category_id: u64,
    pub bbox: [f64; 4],
}

/// A prediction, one object of COCO's results format.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CocoDetection {
    pub image_id: u64,
    pub category_id: u64,
    pub bbox: [f64; 4],
    pub score: f64,
}

/// The ground truth of a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoDataset {
    pub images: Vec<CocoImage>,
    pub categories: Vec<CocoCategory>,
    pub annotations: Vec<CocoAnnotation>,
}

#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    #[error(transparent)]
    Write(#[from] crate::util::fs::FileError),
    #[error("cannot serialise COCO JSON")]
    Json(#[from] serde_json::Error),
    /// pycocotools refuses such results ("Results do not correspond to current coco set").
    #[error("a detection is on image {0}, which the ground truth does not have")]
    UnknownImage(u64),
}

/// x1, y1, x2, y2 corners to COCO's x, y, width, height (in f64, from the f32 corners).
pub fn xyxy_to_xywh(b: [f32; 4]) -> [f64; 4] {
    let [x1, y1, x2, y2] = b.map(f64::from);
    [x1, y1, x2 - x1, y2 - y1]
}

/// One annotation as the ground-truth file holds it.
#[derive(Serialize)]
struct AnnotationRecord {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    area: f64,
    iscrowd: u8,
}

#[derive(Serialize)]
struct GroundTruthFile<'a> {
    images: &'a [CocoImage],
    annotations: Vec<AnnotationRecord>,
    categories: &'a [CocoCategory],
}

impl CocoDataset {
    /// The ground-truth JSON. Annotation ids count from 1: COCOeval records a match as the
    /// matched id, so a match to an id 0 would count as none. Area is width × height.
    pub fn to_json(&self) -> Result<String, CocoError> {
        let annotations = self
            .annotations
            .iter()
            .zip(1..)
            .map(|(a, id)| AnnotationRecord {
                id,
                image_id: a.image_id,
                category_id: a.category_id,
                bbox: a.bbox,
                area: a.bbox[2] * a.bbox[3],
                iscrowd: 0,
            })
            .collect();
        let file = GroundTruthFile {
            images: &self.images,
            annotations,
            categories: &self.categories,
        };
        Ok(serde_json::to_string(&file)?)
    }

    pub fn write(&self, path: &Path) -> Result<(), CocoError> {
        write_text(path, &self.to_json()?)
    }
}

/// The results JSON: a list of `{image_id, category_id, bbox, score}`. Numbers are
/// written in full (ultralytics rounds boxes to 3 decimals and scores to 5), so that
/// pycocotools scores exactly what [`evaluate_bbox`] scores.
pub fn predictions_json(detections: &[CocoDetection]) -> Result<String, CocoError> {
    Ok(serde_json::to_string(detections)?)
}

pub fn write_predictions(path: &Path, detections: &[CocoDetection]) -> Result<(), CocoError> {
    write_text(path, &predictions_json(detections)?)
}

fn write_text(path: &Path, text: &str) -> Result<(), CocoError> {
    Ok(crate::util::fs::write_atomic(path, text.as_bytes())?)
}

/// COCOeval's summary numbers for boxes. Each is −1, as in pycocotools, when no
/// category has ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CocoStats {
    /// AP averaged over IoU 0.50:0.05:0.95 (`stats[0]`).
    pub map: f64,
    /// AP at IoU 0.5 (`stats[1]`).
    pub map50: f64,
}

/// COCOeval's most detections per image and category (`maxDets[-1]`).
const MAX_DETS: usize = 100;
/// Recall thresholds 0:0.01:1 where the precision envelope is sampled.
const RECALL_POINTS: usize = 101;
/// IoU thresholds 0.5:0.05:0.95.
const IOU_POINTS: usize = 10;

/// Boxes grouped by (category id, image id), in input order.
type ByCategoryAndImage<T> = HashMap<(u64, u64), Vec<T>>;

/// A detection's score and xywh box.
type ScoredBox = (f64, [f64; 4]);

/// pycocotools' `evaluate()`, `accumulate()` and the first two numbers of `summarize()`.
pub fn evaluate_bbox(
    dataset: &CocoDataset,
    detections: &[CocoDetection],
) -> Result<CocoStats, CocoError> {
    let images: BTreeSet<u64> = dataset.images.iter().map(|i| i.id).collect();
    if let Some(d) = detections.iter().find(|d| !images.contains(&d.image_id)) {
        return Err(CocoError::UnknownImage(d.image_id));
    }
    let categories: BTreeSet<u64> = dataset.categories.iter().map(|c| c.id).collect();
    let mut gts: ByCategoryAndImage<[f64; 4]> = HashMap::new();
    for a in dataset
        .annotations
        .iter()
        .filter(|a| images.contains(&a.image_id))
    {
        gts.entry((a.category_id, a.image_id))
            .or_default()
            .push(a.bbox);
    }
    let mut dts: ByCategoryAndImage<ScoredBox> = HashMap::new();
    for d in detections {
        dts.entry((d.category_id, d.image_id))
            .or_default()
            .push((d.score, d.bbox));
    }
    let iou_thresholds = linspace(0.5, 0.95, IOU_POINTS);
    let recall_thresholds = linspace(0.0, 1.0, RECALL_POINTS);
    let precisions: Vec<Vec<[f64; RECALL_POINTS]>> = categories
        .iter()
        .filter_map(|&c| {
            let evals: Vec<ImageEval> = images
                .iter()
                .filter_map(|&i| {
                    let gt = gts.get(&(c, i)).map_or(&[][..], Vec::as_slice);
                    let dt = dts.get(&(c, i)).map_or(&[][..], Vec::as_slice);
                    evaluate_image(gt, dt, &iou_thresholds)
                })
                .collect();
            accumulate(&evals, &recall_thresholds)
        })
        .collect();
    Ok(summarize(&precisions))
}

/// One image and category: its detections' scores (best first) and, per IoU threshold,
/// whether each matched a ground-truth box.
struct ImageEval {
    scores: Vec<f64>,
    matched: Vec<[bool; IOU_POINTS]>,
    gt_count: usize,
}

/// COCOeval's `evaluateImg`: the best `MAX_DETS` detections by score (stable), each in
/// turn matched to the unmatched ground-truth box it overlaps most, if at least the
/// threshold (on equal IoUs the later box). `None` when there is neither.
fn evaluate_image(gt: &[[f64; 4]], dt: &[ScoredBox], iou_thresholds: &[f64]) -> Option<ImageEval> {
    if gt.is_empty() && dt.is_empty() {
        return None;
    }
    let mut ranked: Vec<&ScoredBox> = dt.iter().collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.truncate(MAX_DETS);
    let ious: Vec<Vec<f64>> = ranked
        .iter()
        .map(|(_, d)| gt.iter().map(|g| bbox_iou(d, g)).collect())
        .collect();
    let mut matched = vec![[false; IOU_POINTS]; ranked.len()];
    for (t, &threshold) in iou_thresholds.iter().enumerate() {
        let mut gt_taken = vec![false; gt.len()];
        for (d, row) in ious.iter().enumerate() {
            let mut best = (threshold.min(1.0 - 1e-10), None);
            for (g, &iou) in row.iter().enumerate() {
                if !gt_taken[g] && iou >= best.0 {
                    best = (iou, Some(g));
                }
            }
            if let (_, Some(g)) = best {
                gt_taken[g] = true;
                matched[d][t] = true;
            }
        }
    }
    Some(ImageEval {
        scores: ranked.iter().map(|(s, _)| *s).collect(),
        matched,
        gt_count: gt.len(),
    })
}

/// pycocotools' `bbIou` for xywh boxes (no crowd): intersection over union in f64 on
/// `[x, y, w, h]`, as its C code computes it; `ops::boxes::iou` (float32 corners, as
/// torchvision) would round differently and shift the COCO mAP in the last digits.
fn bbox_iou(d: &[f64; 4], g: &[f64; 4]) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    inter / (d[2] * d[3] + g[2] * g[3] - inter)
}

/// COCOeval's `accumulate` for one category: the precision envelope at each recall
/// threshold, per IoU threshold, over the category's detections in all images ranked by
/// score (stable, images in id order). `None` for a category without ground truth.
fn accumulate(evals: &[ImageEval], recall_thresholds: &[f64]) -> Option<Vec<[f64; RECALL_POINTS]>> {
    let gt_count: usize = evals.iter().map(|e| e.gt_count).sum();
    if gt_count == 0 {
        return None;
    }
    let mut ranked: Vec<(f64, &[bool; IOU_POINTS])> = evals
        .iter()
        .flat_map(|e| e.scores.iter().copied().zip(&e.matched))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let curves = (0..IOU_POINTS)
        .map(|t| {
            let (mut tp, mut fp) = (0.0, 0.0);
            let mut recall = Vec::with_capacity(ranked.len());
            let mut precision = Vec::with_capacity(ranked.len());
            for (_, matched) in &ranked {
                if matched[t] {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
                recall.push(tp / gt_count as f64);
                precision.push(tp / (fp + tp + f64::EPSILON));
            }
            sample_envelope(&recall, &mut precision, recall_thresholds)
        })
        .collect();
    Some(curves)
}

/// The precision envelope (the best precision at any higher recall) at the first point
/// reaching each recall threshold; 0 for thresholds the curve never reaches.
fn sample_envelope(
    recall: &[f64],
    precision: &mut [f64],
    recall_thresholds: &[f64],
) -> [f64; RECALL_POINTS] {
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let mut q = [0.0; RECALL_POINTS];
    for (q, &r) in q.iter_mut().zip(recall_thresholds) {
        match precision.get(recall.partition_point(|&v| v < r)) {
            Some(&p) => *q = p,
            None => break,
        }
    }
    q
}

/// `summarize()`'s first two numbers: the mean precision over IoU thresholds, recall
/// thresholds and categories with ground truth; and the same at IoU 0.5 alone.
fn summarize(precisions: &[Vec<[f64; RECALL_POINTS]>]) -> CocoStats {
    if precisions.is_empty() {
        return CocoStats {
            map: -1.0,
            map50: -1.0,
        };
    }
    let mean = |rows: &mut dyn Iterator<Item = &[f64; RECALL_POINTS]>| {
        let (sum, n) = rows.fold((0.0, 0usize), |(s, n), row| {
            (s + row.iter().sum::<f64>(), n + RECALL_POINTS)
        });
        sum / n as f64
    };
    CocoStats {
        map: mean(&mut precisions.iter().flatten()),
        map50: mean(&mut precisions.iter().map(|per_iou| &per_iou[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_sampled_at_the_first_point_reaching_each_recall() {
        // Recall 0.5 at precision 1, then a false positive, then recall 1 at 2/3.
        let recall = [0.5, 0.5, 1.0];
        let mut precision = [1.0, 0.5, 2.0 / 3.0];
        let q = sample_envelope(&recall, &mut precision, &linspace(0.0, 1.0, RECALL_POINTS));
        assert_eq!(q[50], 1.0);
        assert_eq!(q[51], 2.0 / 3.0);
        assert_eq!(q[100], 2.0 / 3.0);
    }

    #[test]
    fn iou_of_touching_boxes_is_zero() {
        assert_eq!(
            bbox_iou(&[0.0, 0.0, 10.0, 10.0], &[10.0, 0.0, 10.0, 10.0]),
            0.0
        );
        assert_eq!(
            bbox_iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]),
            50.0 / 150.0
        );
    }
}
