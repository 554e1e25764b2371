//! ultralytics 8's TaskAlignedAssigner (`utils/tal.py`, 8.4): which anchor points learn
//! which ground-truth box, and how strongly, for the anchor-free head's loss.
//!
//! For each ground truth, the candidates are the anchor points strictly inside it (a side
//! shorter than the middle level's stride is widened to it about the centre). Each
//! candidate's alignment is `score^α · CIoU^β`, where the score is its predicted
//! probability of the box's class and CIoU (clamped at 0) is between the box and its
//! predicted box. The `topk` best aligned candidates of each box are its positives; an
//! anchor claimed by several boxes keeps the one it overlaps most. The positives' class
//! targets are one-hot, scaled by their alignment normalised per box so that the best
//! aligned anchor of each box gets that box's best CIoU.
//!
//! The arithmetic is f32, operation for operation as torch does it, so that the choices
//! agree. Ties in the top-k (which torch leaves unordered) go to the lower anchor index;
//! they arise only among candidates whose alignment is exactly 0.

/// The assigner's settings: ultralytics' `TaskAlignedAssigner(topk=10, alpha=0.5,
/// beta=6.0)` as v8DetectionLoss makes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TalSettings {
    pub topk: usize,
    pub alpha: f32,
    pub beta: f32,
    /// Boxes are at least this wide and high when their candidates are chosen (the
    /// stride of the middle level, 16 for P3-P5).
    pub min_side: f32,
}

impl TalSettings {
    /// v8DetectionLoss's assigner for a head of these level strides.
    pub fn for_strides(strides: &[f64]) -> TalSettings {
        TalSettings {
            topk: 10,
            alpha: 0.5,
            beta: 6.0,
            min_side: strides.get(1).or(strides.first()).copied().unwrap_or(16.0) as f32,
        }
    }
}

/// One ground-truth box of an image: its class and corners in input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    pub class: usize,
    pub xyxy: [f32; 4],
}

/// What one image's anchor points learn.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Per anchor: the box it regresses to (corners in pixels), for the positives only.
    pub boxes: Vec<Option<[f32; 4]>>,
    /// Per anchor and class (anchor-major): the class target, 0 except at a positive's
    /// box class.
    pub scores: Vec<f32>,
}

const EPS: f32 = 1e-9;

/// Assigns one image: `scores` (anchors × nc) are the predicted probabilities, `boxes`
/// the predicted corners in pixels, `points` the anchor points in pixels.
pub fn assign(
    scores: &[f32],
    boxes: &[[f32; 4]],
    points: &[[f32; 2]],
    truths: &[GroundTruth],
    nc: usize,
    settings: &TalSettings,
) -> Assignment {
    let anchors = points.len();
    let mut assignment = Assignment {
        boxes: vec![None; anchors],
        scores: vec![0.0; anchors * nc],
    };
    // ultralytics pads images to the same box count with zeros, which `sum > 0` masks.
    let valid: Vec<bool> = truths
        .iter()
        .map(|t| t.xyxy.iter().sum::<f32>() > 0.0)
        .collect();
    if truths.is_empty() {
        return assignment;
    }
    let (g_count, a_count) = (truths.len(), anchors);
    let mut align = vec![0f32; g_count * a_count];
    let mut overlaps = vec![0f32; g_count * a_count];
    let mut inside = vec![false; g_count * a_count];
    for (g, truth) in truths.iter().enumerate() {
        if !valid[g] {
            continue;
        }
        let [x1, y1, x2, y2] = widened(truth.xyxy, settings.min_side);
        for (a, p) in points.iter().enumerate() {
            let within = p[0] - x1 > EPS && p[1] - y1 > EPS && x2 - p[0] > EPS && y2 - p[1] > EPS;
            if !within {
                continue;
            }
            inside[g * a_count + a] = true;
            let overlap = complete_iou(truth.xyxy, boxes[a]).max(0.0);
            let score = scores[a * nc + truth.class];
            overlaps[g * a_count + a] = overlap;
            align[g * a_count + a] = score.powf(settings.alpha) * overlap.powf(settings.beta);
        }
    }
    // Each box's top-k anchors by alignment, kept where the anchor is inside the box.
    let mut positive = vec![false; g_count * a_count];
    let mut order: Vec<usize> = (0..a_count).collect();
    for g in (0..g_count).filter(|&g| valid[g]) {
        let row = &align[g * a_count..][..a_count];
        let k = settings.topk.min(a_count);
        order.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
        for &a in &order[..k] {
            positive[g * a_count + a] = inside[g * a_count + a];
        }
    }
    // An anchor claimed by several boxes keeps the box it overlaps most (the first on a
    // tie, over every box, as torch's max over the box axis).
    for a in 0..a_count {
        let claims = (0..g_count).filter(|&g| positive[g * a_count + a]).count();
        if claims > 1 {
            let best = (0..g_count).fold(0, |best, g| {
                if overlaps[g * a_count + a] > overlaps[best * a_count + a] {
                    g
                } else {
                    best
                }
            });
            for g in 0..g_count {
                positive[g * a_count + a] = g == best;
            }
        }
    }
    // Normalise: each box's alignments scaled so its best is its best CIoU.
    let mut normalised = vec![0f32; a_count];
    for g in 0..g_count {
        let (mut best_align, mut best_overlap) = (0f32, 0f32);
        for a in (0..a_count).filter(|&a| positive[g * a_count + a]) {
            best_align = best_align.max(align[g * a_count + a]);
            best_overlap = best_overlap.max(overlaps[g * a_count + a]);
        }
        for a in (0..a_count).filter(|&a| positive[g * a_count + a]) {
            let value = align[g * a_count + a] * best_overlap / (best_align + EPS);
            normalised[a] = normalised[a].max(value);
        }
    }
    for a in 0..a_count {
        if let Some(g) = (0..g_count).find(|&g| positive[g * a_count + a]) {
            assignment.boxes[a] = Some(truths[g].xyxy);
            assignment.scores[a * nc + truths[g].class] = normalised[a];
        }
    }
    assignment
}

/// The box with each side at least `min_side`, about its centre, in ultralytics' f32 steps
/// (corners to centre and size, and back).
fn widened([x1, y1, x2, y2]: [f32; 4], min_side: f32) -> [f32; 4] {
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    // torch.where(side < min, min, side): a NaN side stays NaN, unlike f32::max.
    let at_least = |side: f32| if side < min_side { min_side } else { side };
    let (w, h) = (at_least(x2 - x1), at_least(y2 - y1));
    let (half_w, half_h) = (w / 2.0, h / 2.0);
    [cx - half_w, cy - half_h, cx + half_w, cy + half_h]
}

/// ultralytics' `bbox_iou(box1, box2, xywh=False, CIoU=True)` for one pair of corner
/// boxes, in f32 and its order of operations.
pub fn complete_iou(b1: [f32; 4], b2: [f32; 4]) -> f32 {
    const E: f32 = 1e-7;
    let (w1, h1) = (b1[2] - b1[0], b1[3] - b1[1] + E);
    let (w2, h2) = (b2[2] - b2[0], b2[3] - b2[1] + E);
    let inter = (b1[2].min(b2[2]) - b1[0].max(b2[0])).max(0.0)
        * (b1[3].min(b2[3]) - b1[1].max(b2[1])).max(0.0);
    let union = w1 * h1 + w2 * h2 - inter + E;
    let iou = inter / union;
    let cw = b1[2].max(b2[2]) - b1[0].min(b2[0]);
    let ch = b1[3].max(b2[3]) - b1[1].min(b2[1]);
    let c2 = cw.powi(2) + ch.powi(2) + E;
    let rho2 =
        ((b2[0] + b2[2] - b1[0] - b1[2]).powi(2) + (b2[1] + b2[3] - b1[1] - b1[3]).powi(2)) / 4.0;
    let v = (4.0 / std::f32::consts::PI.powi(2)) * ((w2 / h2).atan() - (w1 / h1).atan()).powi(2);
    let alpha = v / (v - iou + (1.0 + E));
    iou - (rho2 / c2 + v * alpha)
}
