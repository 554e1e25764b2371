//! Detection metrics in ultralytics' convention (YOLOv5 v7.0): val.py's `process_batch`
//! and utils/metrics.py's `ap_per_class`, `compute_ap` ('interp': 101 points, trapezoid)
//! and `box_iou`. COCO's own convention (pycocotools) is in [`super::coco`]; the two give
//! different numbers on the same predictions, so say which one a number follows.
//!
//! IoUs and thresholds are f32 as val.py computes them with torch; the curves are f64 as
//! numpy computes them. Where numpy sorts unstably (equal confidences, equal IoUs) the
//! order here is stable and documented; with real scores exact ties are rare.

use super::nms::Detection;
use crate::ops::boxes::iou;

/// IoU thresholds per detection: 0.5, 0.55, …, 0.95.
pub const IOU_LEVELS: usize = 10;

/// numpy's `eps` in `ap_per_class`.
const EPS: f64 = 1e-16;

/// One ground-truth box: class and corners (x1, y1, x2, y2) in the same pixels as the
/// detections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    pub class: usize,
    pub bbox: [f32; 4],
}

/// val.py's `iouv = torch.linspace(0.5, 0.95, 10)` in f32, as torch's CPU kernel makes
/// it: from the start for the first half, from the end for the second.
pub fn iou_thresholds() -> [f32; IOU_LEVELS] {
    let (start, end) = (0.5f32, 0.95f32);
    let steps = IOU_LEVELS as i32;
    let step = (end - start) / (steps - 1) as f32;
    std::array::from_fn(|i| {
        let i = i as i32;
        if i < steps / 2 {
            start + step * i as f32
        } else {
            end - step * (steps - i - 1) as f32
        }
    })
}

/// numpy's `linspace(start, stop, n)`: `i · step + start`, the last point exactly `stop`.
pub(crate) fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                stop
            } else {
                i as f64 * step + start
            }
        })
        .collect()
}

/// IoU of every pair of xyxy boxes, `iou[i][j]` for `a[i]` and `b[j]`: ultralytics'
/// `box_iou` (torchvision's formula with eps 1e-7), in f32.
pub fn box_iou(a: &[[f32; 4]], b: &[[f32; 4]]) -> Vec<Vec<f32>> {
    const IOU_EPS: f32 = 1e-7;
    a.iter()
        .map(|p| b.iter().map(|q| iou(p, q, IOU_EPS)).collect())
        .collect()
}

/// val.py's `process_batch`: which detections are true positives at each IoU threshold.
///
/// At each threshold every detection picks the same-class label it overlaps most (at
/// least the threshold; equal IoUs go to the later label, as numpy's reversed sort leaves
/// them on small inputs); a label picked by several detections goes to the first of them.
/// `detections` must be in NMS order (best first), which makes the first the most
/// confident. (ultralytics keeps the first detection, not the best-overlapping one: the
/// re-sort by IoU is commented out in val.py.)
pub fn match_detections(
    detections: &[Detection],
    labels: &[Label],
    thresholds: &[f32; IOU_LEVELS],
) -> Vec<[bool; IOU_LEVELS]> {
    let label_boxes: Vec<[f32; 4]> = labels.iter().map(|l| l.bbox).collect();
    let det_boxes: Vec<[f32; 4]> = detections.iter().map(|d| d.bbox).collect();
    let iou = box_iou(&label_boxes, &det_boxes);
    let mut correct = vec![[false; IOU_LEVELS]; detections.len()];
    for (t, &threshold) in thresholds.iter().enumerate() {
        let mut taken = vec![false; labels.len()];
        for (d, det) in detections.iter().enumerate() {
            let best = (0..labels.len())
                .filter(|&l| labels[l].class == det.class && iou[l][d] >= threshold)
                .fold(None, |best: Option<usize>, l| match best {
                    Some(b) if iou[b][d] > iou[l][d] => Some(b),
                    _ => Some(l),
                });
            if let Some(l) = best.filter(|&l| !taken[l]) {
                taken[l] = true;
                correct[d][t] = true;
            }
        }
    }
    correct
}

/// One class's numbers, as val.py prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    pub class: usize,
    /// Ground-truth boxes of this class.
    pub labels: usize,
    /// Precision, recall and F1 at the confidence where the class-mean F1 (smoothed) peaks.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// True and false positives at that confidence (ultralytics' rounded estimates).
    pub tp: f64,
    pub fp: f64,
    /// AP at each IoU threshold 0.5, 0.55, …, 0.95.
    pub ap: [f64; IOU_LEVELS],
}

impl ClassMetrics {
    pub fn ap50(&self) -> f64 {
        self.ap[0]
    }

    /// AP averaged over the ten IoU thresholds (mAP@0.5:0.95 of one class).
    pub fn ap50_95(&self) -> f64 {
        self.ap.iter().sum::<f64>() / IOU_LEVELS as f64
    }
}

/// ultralytics' `ap_per_class`. `correct`, `conf` and `pred_class` describe every
/// detection; `target_class` every label. One entry per class that has labels, by class.
/// Detections are ranked by confidence with a stable sort (numpy's is unstable).
pub fn ap_per_class(
    correct: &[[bool; IOU_LEVELS]],
    conf: &[f32],
    pred_class: &[usize],
    target_class: &[usize],
) -> Vec<ClassMetrics> {
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
    let mut classes: Vec<usize> = target_class.to_vec();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        return Vec::new();
    }
    let px = linspace(0.0, 1.0, 1000);
    let curves: Vec<ClassCurves> = classes
        .iter()
        .map(|&c| {
            let ranked: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| pred_class[i] == c)
                .collect();
            let labels = target_class.iter().filter(|&&t| t == c).count();
            ClassCurves::new(&ranked, correct, conf, labels, &px)
        })
        .collect();
    let best = max_f1_index(&curves);
    classes
        .iter()
        .zip(&curves)
        .map(|(&class, c)| {
            let (p, r) = (c.precision[best], c.recall[best]);
            let tp = (r * c.labels as f64).round_ties_even();
            ClassMetrics {
                class,
                labels: c.labels,
                precision: p,
                recall: r,
                f1: f1(p, r),
                tp,
                fp: (tp / (p + EPS) - tp).round_ties_even(),
                ap: c.ap,
            }
        })
        .collect()
}

fn f1(p: f64, r: f64) -> f64 {
    2.0 * p * r / (p + r + EPS)
}

/// One class's precision and recall against the confidence grid `px`, and its APs.
struct ClassCurves {
    labels: usize,
    precision: Vec<f64>,
    recall: Vec<f64>,
    ap: [f64; IOU_LEVELS],
}

impl ClassCurves {
    /// `ranked`: the class's detections, most confident first.
    fn new(
        ranked: &[usize],
        correct: &[[bool; IOU_LEVELS]],
        conf: &[f32],
        labels: usize,
        px: &[f64],
    ) -> ClassCurves {
        if ranked.is_empty() || labels == 0 {
            return ClassCurves {
                labels,
                precision: vec![0.0; px.len()],
                recall: vec![0.0; px.len()],
                ap: [0.0; IOU_LEVELS],
            };
        }
        let (recall, precision): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (0..IOU_LEVELS)
            .map(|t| recall_precision(ranked, correct, t, labels))
            .unzip();
        // Curves against confidence run over −conf, which increases along `ranked`.
        let neg_conf: Vec<f64> = ranked.iter().map(|&i| -(conf[i] as f64)).collect();
        ClassCurves {
            labels,
            recall: px
                .iter()
                .map(|&x| interp(-x, &neg_conf, &recall[0], 0.0))
                .collect(),
            precision: px
                .iter()
                .map(|&x| interp(-x, &neg_conf, &precision[0], 1.0))
                .collect(),
            ap: std::array::from_fn(|t| compute_ap(&recall[t], &precision[t])),
        }
    }
}

/// Recall and precision after each of the `ranked` detections at IoU threshold `t`.
fn recall_precision(
    ranked: &[usize],
    correct: &[[bool; IOU_LEVELS]],
    t: usize,
    labels: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut tp = 0usize;
    ranked
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            tp += correct[i][t] as usize;
            (
                tp as f64 / (labels as f64 + EPS),
                tp as f64 / (n + 1) as f64,
            )
        })
        .unzip()
}

/// The confidence index where the class-mean F1, box-filtered over 10% of the grid
/// (ultralytics' `smooth(f1.mean(0), 0.1)`), is largest; the first on a tie.
fn max_f1_index(curves: &[ClassCurves]) -> usize {
    let n = curves[0].precision.len();
    let mean_f1: Vec<f64> = (0..n)
        .map(|i| {
            curves
                .iter()
                .map(|c| f1(c.precision[i], c.recall[i]))
                .sum::<f64>()
                / curves.len() as f64
        })
        .collect();
    let smoothed = smooth(&mean_f1, 0.1);
    smoothed
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > smoothed[best] { i } else { best })
}

/// ultralytics' `smooth(y, f)`: a box filter over an odd number of points, about a
/// fraction `f` of them each side, the ends padded with the end values.
fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    let nf = (y.len() as f64 * f * 2.0).round_ties_even() as usize / 2 + 1;
    let pad = nf / 2;
    let (first, last) = (y[0], y[y.len() - 1]);
    let padded: Vec<f64> = std::iter::repeat_n(first, pad)
        .chain(y.iter().copied())
        .chain(std::iter::repeat_n(last, pad))
        .collect();
    let weight = 1.0 / nf as f64;
    padded
        .windows(nf)
        .map(|w| w.iter().map(|v| v * weight).sum())
        .collect()
}

/// numpy's `interp(x, xp, fp, left)` at one point, with `right = fp[-1]`; `xp` must be
/// non-decreasing. Repeated `xp` values take the last one's `fp`.
fn interp(x: f64, xp: &[f64], fp: &[f64], left: f64) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return left;
    }
    if x > xp[n - 1] {
        return fp[n - 1];
    }
    let j = xp.partition_point(|&v| v <= x) - 1;
    if j == n - 1 || xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    slope * (x - xp[j]) + fp[j]
}

/// ultralytics' `compute_ap` ('interp'): the area under the precision envelope of a
/// recall/precision curve (detections best first), sampled at 101 recall points and
/// integrated with the trapezoid rule.
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mrec: Vec<f64> = std::iter::once(0.0)
        .chain(recall.iter().copied())
        .chain(std::iter::once(1.0))
        .collect();
    let mut mpre: Vec<f64> = std::iter::once(1.0)
        .chain(precision.iter().copied())
        .chain(std::iter::once(0.0))
        .collect();
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    let x = linspace(0.0, 1.0, 101);
    let y: Vec<f64> = x
        .iter()
        .map(|&v| interp(v, &mrec, &mpre, mpre[0]))
        .collect();
    x.windows(2)
        .zip(y.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0)
        .sum()
}

/// The overall numbers val.py prints on its `all` row, and the per-class rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValMetrics {
    pub classes: Vec<ClassMetrics>,
    /// Mean precision and recall over the classes with labels.
    pub mp: f64,
    pub mr: f64,
    /// mAP@0.5 and mAP@0.5:0.95.
    pub map50: f64,
    pub map: f64,
}

/// val.py's `stats`: every detection's correctness, confidence and class, and every
/// label's class, gathered image by image.
#[derive(Debug, Clone)]
pub struct DetectionStats {
    thresholds: [f32; IOU_LEVELS],
    correct: Vec<[bool; IOU_LEVELS]>,
    conf: Vec<f32>,
    pred_class: Vec<usize>,
    target_class: Vec<usize>,
}

impl Default for DetectionStats {
    fn default() -> Self {
        DetectionStats {
            thresholds: iou_thresholds(),
            correct: Vec::new(),
            conf: Vec::new(),
            pred_class: Vec::new(),
            target_class: Vec::new(),
        }
    }
}

impl DetectionStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one image: its detections best first (as NMS returns them) and its labels,
    /// in the same pixel coordinates.
    pub fn add_image(&mut self, detections: &[Detection], labels: &[Label]) {
        self.correct
            .extend(match_detections(detections, labels, &self.thresholds));
        self.conf.extend(detections.iter().map(|d| d.conf));
        self.pred_class.extend(detections.iter().map(|d| d.class));
        self.target_class.extend(labels.iter().map(|l| l.class));
    }

    /// val.py's summary: all zeros (and no class rows) unless some detection is correct
    /// at some threshold.
    pub fn summarize(&self) -> ValMetrics {
        if !self.correct.iter().any(|c| c.iter().any(|&v| v)) {
            return ValMetrics::default();
        }
        let classes = ap_per_class(
            &self.correct,
            &self.conf,
            &self.pred_class,
            &self.target_class,
        );
        let mean = |f: &dyn Fn(&ClassMetrics) -> f64| {
            classes.iter().map(f).sum::<f64>() / classes.len() as f64
        };
        ValMetrics {
            mp: mean(&|c| c.precision),
            mr: mean(&|c| c.recall),
            map50: mean(&|c| c.ap50()),
            map: mean(&|c| c.ap50_95()),
            classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_follows_numpy_at_the_ends_and_on_repeated_points() {
        let (xp, fp) = ([0.0, 1.0, 1.0, 2.0], [0.0, 10.0, 20.0, 40.0]);
        assert_eq!(interp(-1.0, &xp, &fp, 7.0), 7.0);
        assert_eq!(interp(3.0, &xp, &fp, 7.0), 40.0);
        assert_eq!(interp(1.0, &xp, &fp, 7.0), 20.0);
        assert_eq!(interp(1.5, &xp, &fp, 7.0), 30.0);
        assert_eq!(interp(0.25, &xp, &fp, 7.0), 2.5);
    }

    #[test]
    fn smooth_of_a_constant_is_the_constant() {
        let y = smooth(&[0.5; 1000], 0.1);
        assert_eq!(y.len(), 1000);
        assert!(y.iter().all(|v| (v - 0.5).abs() < 1e-12));
    }

    #[test]
    fn linspace_matches_numpy() {
        assert_eq!(linspace(0.0, 1.0, 101)[7], 7.0 * 0.01);
        assert_eq!(*linspace(0.5, 0.95, 10).last().unwrap(), 0.95);
    }
}
