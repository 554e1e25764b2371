//! AutoAnchor (ultralytics YOLOv5 7.0, `utils/autoanchor.py`): before training, check how
//! well the model's anchors fit the dataset's label sizes and, when the best possible recall
//! (BPR) is 0.98 or less, compute new ones by k-means on the label sizes followed by a
//! genetic evolution of their fitness. The new anchors replace the old ones only when their
//! BPR is higher.
//!
//! Everything returns data: the log lines ultralytics prints come back as `messages`.
//! Random draws come from the caller's seeded `Rng`, so a seed gives the same anchors. The
//! draws differ from numpy's; in particular the k-means starts are drawn by us (scipy's
//! `kmeans` algorithm, not its random stream), so the evolved anchors are not ultralytics'
//! bit for bit, while the metrics, the fitness and the label gathering are.

use rand::seq::index::sample;
use rand::Rng;
use rand_distr::StandardNormal;

use crate::data::dataset::ImageRecord;

/// check_anchors recomputes the anchors when the BPR is not above this.
const RECOMPUTE_BPR: f64 = 0.98;
/// kmean_anchors keeps labels with a side of at least this many pixels...
const MIN_LABEL_PX: f32 = 2.0;
/// ...and warns about those with a side under this.
const SMALL_LABEL_PX: f32 = 3.0;
/// Evolved anchors never shrink below this many pixels.
const MIN_ANCHOR_PX: f64 = 2.0;
/// Generations of the evolution check_anchors runs.
pub const GENERATIONS: usize = 1000;
/// Probability that one anchor coordinate mutates in a generation.
const MUTATION_PROB: f64 = 0.9;
/// Scale of the mutation noise (further scaled by a uniform draw per generation).
const MUTATION_SIGMA: f64 = 0.1;
/// Bounds of one mutation factor.
const MUTATION_CLIP: (f64, f64) = (0.3, 3.0);
/// k-means runs from different random starts (scipy's `iter=30`); the best one is kept.
const KMEANS_RESTARTS: usize = 30;
/// A k-means run stops when the mean distance improves by no more than this (scipy's `thresh`).
const KMEANS_TOLERANCE: f64 = 1e-5;
/// The range of check_anchors' per-image augment scale.
const AUGMENT_SCALE: (f64, f64) = (0.9, 1.1);
const PREFIX: &str = "AutoAnchor: ";

#[derive(Debug, thiserror::Error)]
pub enum AutoAnchorError {
    #[error("AutoAnchor: {scales} augment scales for {images} images")]
    ScaleCount { images: usize, scales: usize },
    #[error("AutoAnchor: image {index} is {width}x{height} pixels; both sides must be positive")]
    ImageSize {
        index: usize,
        width: f64,
        height: f64,
    },
    #[error("AutoAnchor: the dataset has no labels")]
    NoLabels,
    #[error("AutoAnchor: no label has a side of at least 2 pixels")]
    NoUsableLabels,
    #[error("AutoAnchor: the anchor threshold (anchor_t) is {0}; it must be positive and finite")]
    Threshold(f64),
    #[error("AutoAnchor: {0}")]
    Layout(String),
}

/// How well anchors fit label sizes (ultralytics' `metric` in check_anchors).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorMetrics {
    /// Best possible recall: the fraction of labels that some anchor matches within thr.
    pub bpr: f64,
    /// Anchors above threshold: the mean number of anchors that match a label within thr.
    pub aat: f64,
}

/// One image's size in pixels and its labels' normalised widths and heights (ultralytics'
/// `dataset.shapes` row and `dataset.labels[:, 3:5]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageLabels {
    pub width: f64,
    pub height: f64,
    pub wh: Vec<[f32; 2]>,
}

impl From<&ImageRecord> for ImageLabels {
    fn from(record: &ImageRecord) -> ImageLabels {
        let wh = record
            .labels
            .iter()
            .map(|label| [label.w, label.h])
            .collect();
        ImageLabels {
            width: f64::from(record.width),
            height: f64::from(record.height),
            wh,
        }
    }
}

/// Where kmean_anchors' evolution started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorInit {
    KMeans,
    /// ultralytics' fallback when k-means cannot give n distinct centres (too few or too
    /// alike label sizes): sorted uniform draws times the image size.
    Random,
}

/// What kmean_anchors computed.
#[derive(Debug, Clone, PartialEq)]
pub struct EvolvedAnchors {
    /// In pixels, sorted by area, small to large.
    pub anchors: Vec<[f32; 2]>,
    /// Their metrics on all the labels it was given.
    pub metrics: AnchorMetrics,
    pub init: AnchorInit,
    /// Fitness of the k-means (or random) anchors the evolution started from.
    pub start_fitness: f64,
    pub fitness: f64,
    /// Labels with a side of at least 2 px, the ones k-means and the fitness use.
    pub labels_used: usize,
    /// Labels with a side under 3 px.
    pub small_labels: usize,
    pub messages: Vec<String>,
}

/// What check_anchors found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorCheck {
    /// The current anchors' metrics on the (augment-scaled) label sizes.
    pub current: AnchorMetrics,
    /// The recomputed anchors, when the current BPR was 0.98 or less.
    pub recomputed: Option<Recomputed>,
    /// The anchors to use from now on, in pixels per level in stride order, when the
    /// recomputed ones beat the current ones; `None` keeps the current anchors.
    pub adopted: Option<Vec<Vec<(f64, f64)>>>,
    /// ultralytics' log lines, in order.
    pub messages: Vec<String>,
}

/// kmean_anchors' result and its BPR on check_anchors' label sizes (the one compared with
/// the current anchors' BPR).
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    pub evolved: EvolvedAnchors,
    pub bpr: f64,
}

/// Sums of ultralytics' ratio metric over labels: per label and anchor, x is the worse of
/// the width and height ratios, each taken as at most 1 (1 = same size); a label's best is
/// its largest x over the anchors; "above" means above 1/thr.
#[derive(Debug, Default)]
struct RatioSums {
    labels: usize,
    pairs: usize,
    x: f64,
    best: f64,
    x_above: usize,
    x_above_sum: f64,
    best_above: usize,
    best_above_sum: f64,
}

impl RatioSums {
    /// NaN when there are no labels, as in torch.
    fn metrics(&self) -> AnchorMetrics {
        let n = self.labels as f64;
        AnchorMetrics {
            bpr: self.best_above as f64 / n,
            aat: self.x_above as f64 / n,
        }
    }
}

/// The ratio metric of a label against an anchor, in f32 as torch computes it.
fn ratio(label: [f32; 2], anchor: [f32; 2]) -> f32 {
    let side = |l: f32, a: f32| {
        let r = l / a;
        r.min(1.0 / r)
    };
    side(label[0], anchor[0]).min(side(label[1], anchor[1]))
}

/// 1/thr as ultralytics compares it: a Python float against float32 tensors.
fn ratio_limit(thr: f64) -> f32 {
    (1.0 / thr) as f32
}

fn ratio_sums(wh: &[[f32; 2]], anchors: &[[f32; 2]], thr: f64) -> RatioSums {
    let limit = ratio_limit(thr);
    let mut sums = RatioSums {
        labels: wh.len(),
        pairs: wh.len() * anchors.len(),
        ..RatioSums::default()
    };
    for &label in wh {
        let mut best = f32::NEG_INFINITY;
        for &anchor in anchors {
            let x = ratio(label, anchor);
            best = best.max(x);
            sums.x += f64::from(x);
            if x > limit {
                sums.x_above += 1;
                sums.x_above_sum += f64::from(x);
            }
        }
        sums.best += f64::from(best);
        if best > limit {
            sums.best_above += 1;
            sums.best_above_sum += f64::from(best);
        }
    }
    sums
}

/// check_anchors' `metric`: BPR and anchors above threshold of `anchors` (pixels) on label
/// sizes `wh` (pixels).
pub fn anchor_metrics(wh: &[[f32; 2]], anchors: &[[f32; 2]], thr: f64) -> AnchorMetrics {
    ratio_sums(wh, anchors, thr).metrics()
}

/// kmean_anchors' `anchor_fitness`, the quantity the evolution maximises: the mean over
/// labels of the best ratio, counting only those above 1/thr.
pub fn anchor_fitness(wh: &[[f32; 2]], anchors: &[[f32; 2]], thr: f64) -> f64 {
    let sums = ratio_sums(wh, anchors, thr);
    sums.best_above_sum / sums.labels as f64
}

/// check_anchors' per-image augment scales, uniform in [0.9, 1.1).
pub fn augment_scales(images: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..images)
        .map(|_| rng.random_range(AUGMENT_SCALE.0..AUGMENT_SCALE.1))
        .collect()
}

/// Label sizes in pixels as check_anchors gathers them: each image resized so that its long
/// side is `imgsz`, times its augment scale (all 1 for kmean_anchors' own gathering).
pub fn label_wh(
    images: &[ImageLabels],
    imgsz: usize,
    scales: &[f64],
) -> Result<Vec<[f32; 2]>, AutoAnchorError> {
    if scales.len() != images.len() {
        return Err(AutoAnchorError::ScaleCount {
            images: images.len(),
            scales: scales.len(),
        });
    }
    let mut wh = Vec::with_capacity(images.iter().map(|image| image.wh.len()).sum());
    for (index, (image, &scale)) in images.iter().zip(scales).enumerate() {
        if !(image.width > 0.0 && image.height > 0.0) {
            return Err(AutoAnchorError::ImageSize {
                index,
                width: image.width,
                height: image.height,
            });
        }
        let long = image.width.max(image.height);
        // numpy's order: imgsz * shape / max, then * scale, then the float32 label times
        // that in float64, rounded to float32 at the end.
        let size = [
            imgsz as f64 * image.width / long * scale,
            imgsz as f64 * image.height / long * scale,
        ];
        wh.extend(image.wh.iter().map(|l| {
            [
                (f64::from(l[0]) * size[0]) as f32,
                (f64::from(l[1]) * size[1]) as f32,
            ]
        }));
    }
    Ok(wh)
}

/// The label sizes check_anchors works on, in pixels at training size `imgsz`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSizes {
    /// With the augment scales: what the anchors are measured on.
    pub scaled: Vec<[f32; 2]>,
    /// Without them: what kmean_anchors fits new anchors to (it gathers them again).
    pub unscaled: Vec<[f32; 2]>,
    pub imgsz: usize,
}

impl LabelSizes {
    /// Gathers both from `images` with one augment scale per image (see [`augment_scales`]).
    pub fn gather(
        images: &[ImageLabels],
        imgsz: usize,
        scales: &[f64],
    ) -> Result<LabelSizes, AutoAnchorError> {
        let scaled = label_wh(images, imgsz, scales)?;
        let unscaled = label_wh(images, imgsz, &vec![1.0; images.len()])?;
        Ok(LabelSizes {
            scaled,
            unscaled,
            imgsz,
        })
    }
}

/// ultralytics' check_anchors: measures `anchors_px` (pixels per level, levels in `strides`
/// order) on `labels`, and recomputes them with [`kmean_anchors`] ([`GENERATIONS`]
/// generations) when the BPR is 0.98 or less.
pub fn check_anchors(
    labels: &LabelSizes,
    anchors_px: &[Vec<(f64, f64)>],
    strides: &[f64],
    thr: f64,
    rng: &mut impl Rng,
) -> Result<AnchorCheck, AutoAnchorError> {
    let current_anchors = flatten_levels(anchors_px, strides)?;
    check_threshold(thr)?;
    let wh = &labels.scaled;
    if wh.is_empty() {
        return Err(AutoAnchorError::NoLabels);
    }
    let current = anchor_metrics(wh, &current_anchors, thr);
    let summary = format!(
        "{PREFIX}{:.2} anchors/target, {:.3} Best Possible Recall (BPR). ",
        current.aat, current.bpr
    );
    if current.bpr > RECOMPUTE_BPR {
        let messages = vec![format!(
            "{summary}Current anchors are a good fit to dataset ✅"
        )];
        return Ok(AnchorCheck {
            current,
            recomputed: None,
            adopted: None,
            messages,
        });
    }
    let mut messages = vec![format!(
        "{summary}Anchors are a poor fit to dataset ⚠️, attempting to improve..."
    )];
    let evolved = kmean_anchors(
        &labels.unscaled,
        current_anchors.len(),
        labels.imgsz,
        thr,
        GENERATIONS,
        rng,
    )?;
    messages.extend(evolved.messages.iter().cloned());
    let bpr = anchor_metrics(wh, &evolved.anchors, thr).bpr;
    let adopted = if bpr > current.bpr {
        let mut levels = split_levels(&evolved.anchors, anchors_px.len())?;
        if check_anchor_order(&mut levels, strides) {
            messages.push(format!("{PREFIX}Reversing anchor order"));
        }
        messages.push(format!(
            "{PREFIX}Done ✅ (optional: update model *.yaml to use these anchors in the future)"
        ));
        Some(levels)
    } else {
        messages.push(format!("{PREFIX}Done ⚠️ (original anchors better than new anchors, proceeding with original anchors)"));
        None
    };
    Ok(AnchorCheck {
        current,
        recomputed: Some(Recomputed { evolved, bpr }),
        adopted,
        messages,
    })
}

fn check_threshold(thr: f64) -> Result<(), AutoAnchorError> {
    if thr > 0.0 && thr.is_finite() {
        Ok(())
    } else {
        Err(AutoAnchorError::Threshold(thr))
    }
}

/// ultralytics' kmean_anchors on label sizes `wh` (pixels): `n` anchors by k-means on the
/// labels of at least 2 px (whitened by their standard deviation), then `generations` rounds
/// of random mutation, each kept when it raises [`anchor_fitness`].
pub fn kmean_anchors(
    wh: &[[f32; 2]],
    n: usize,
    img_size: usize,
    thr: f64,
    generations: usize,
    rng: &mut impl Rng,
) -> Result<EvolvedAnchors, AutoAnchorError> {
    check_threshold(thr)?;
    if n == 0 {
        return Err(AutoAnchorError::Layout(
            "kmean_anchors needs at least one anchor".into(),
        ));
    }
    let mut messages = Vec::new();
    let small_labels = wh
        .iter()
        .filter(|l| l[0] < SMALL_LABEL_PX || l[1] < SMALL_LABEL_PX)
        .count();
    if small_labels > 0 {
        messages.push(format!("{PREFIX}WARNING ⚠️ Extremely small objects found: {small_labels} of {} labels are <3 pixels in size", wh.len()));
    }
    let used: Vec<[f32; 2]> = wh
        .iter()
        .copied()
        .filter(|l| l[0] >= MIN_LABEL_PX || l[1] >= MIN_LABEL_PX)
        .collect();
    if used.is_empty() {
        return Err(AutoAnchorError::NoUsableLabels);
    }
    messages.push(format!(
        "{PREFIX}Running kmeans for {n} anchors on {} points...",
        used.len()
    ));
    let (start, init) = match kmeans_start(&used, n, rng) {
        Some(centres) => (centres, AnchorInit::KMeans),
        None => {
            messages.push(format!(
                "{PREFIX}WARNING ⚠️ switching strategies from kmeans to random init"
            ));
            (random_start(n, img_size, rng), AnchorInit::Random)
        }
    };
    let start = sorted_by_area(start);
    let start_fitness = anchor_fitness(&used, &to_f32(&start), thr);
    let (evolved, fitness) = evolve(start, start_fitness, &used, thr, generations, rng);
    let anchors = to_f32(&sorted_by_area(evolved));
    let sums = ratio_sums(wh, &anchors, thr);
    messages.extend(results_messages(&sums, &anchors, thr, img_size));
    Ok(EvolvedAnchors {
        metrics: sums.metrics(),
        anchors,
        init,
        start_fitness,
        fitness,
        labels_used: used.len(),
        small_labels,
        messages,
    })
}

/// k-means centres in pixels, or `None` where ultralytics falls back to a random start:
/// fewer labels than anchors, a side with no spread to whiten by, or fewer distinct centres
/// than asked for.
fn kmeans_start(wh: &[[f32; 2]], n: usize, rng: &mut impl Rng) -> Option<Vec<[f64; 2]>> {
    if n > wh.len() {
        return None;
    }
    let sigma = std_dev(wh);
    if !sigma.iter().all(|s| *s > 0.0 && s.is_finite()) {
        return None;
    }
    let whitened: Vec<[f64; 2]> = wh
        .iter()
        .map(|l| [f64::from(l[0]) / sigma[0], f64::from(l[1]) / sigma[1]])
        .collect();
    let centres = kmeans(&whitened, n, rng);
    (centres.len() == n).then(|| {
        centres
            .iter()
            .map(|c| [c[0] * sigma[0], c[1] * sigma[1]])
            .collect()
    })
}

/// Population standard deviation of the widths and of the heights (numpy's `std(0)`).
fn std_dev(wh: &[[f32; 2]]) -> [f64; 2] {
    let n = wh.len() as f64;
    let mean = |i: usize| wh.iter().map(|l| f64::from(l[i])).sum::<f64>() / n;
    let std = |i: usize, m: f64| {
        (wh.iter()
            .map(|l| (f64::from(l[i]) - m).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    };
    [std(0, mean(0)), std(1, mean(1))]
}

/// scipy.cluster.vq.kmeans: the best (lowest mean distance) of [`KMEANS_RESTARTS`] Lloyd
/// runs. May return fewer than `k` centres, as scipy does, when clusters empty out.
fn kmeans(points: &[[f64; 2]], k: usize, rng: &mut impl Rng) -> Vec<[f64; 2]> {
    let mut best: Option<(Vec<[f64; 2]>, f64)> = None;
    for _ in 0..KMEANS_RESTARTS {
        let (centres, distance) = lloyd(points, k, rng);
        if best.as_ref().is_none_or(|(_, d)| distance < *d) {
            best = Some((centres, distance));
        }
    }
    best.map(|(centres, _)| centres).unwrap_or_default()
}

/// One run of scipy's `_kmeans`: start from `k` distinct points chosen at random, then
/// alternate assigning points to their nearest centre and moving each centre to its points'
/// mean (dropping centres without points) until the mean distance to the nearest centre
/// improves by no more than [`KMEANS_TOLERANCE`]. Returns the centres and that distance.
fn lloyd(points: &[[f64; 2]], k: usize, rng: &mut impl Rng) -> (Vec<[f64; 2]>, f64) {
    let mut centres: Vec<[f64; 2]> = sample(rng, points.len(), k)
        .iter()
        .map(|i| points[i])
        .collect();
    let mut previous = f64::INFINITY;
    loop {
        let (nearest, distance) = assign_nearest(points, &centres);
        centres = cluster_means(points, &nearest, centres.len());
        if previous - distance <= KMEANS_TOLERANCE {
            return (centres, distance);
        }
        previous = distance;
    }
}

/// Each point's nearest centre and the mean distance to it.
fn assign_nearest(points: &[[f64; 2]], centres: &[[f64; 2]]) -> (Vec<usize>, f64) {
    let mut total = 0.0;
    let nearest = points
        .iter()
        .map(|p| {
            let (index, distance) = nearest_centre(*p, centres);
            total += distance;
            index
        })
        .collect();
    (nearest, total / points.len() as f64)
}

/// The index of the centre nearest to `p` (the first on ties, as scipy's `vq`) and its distance.
fn nearest_centre(p: [f64; 2], centres: &[[f64; 2]]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (i, c) in centres.iter().enumerate() {
        let d2 = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2);
        if d2 < best.1 {
            best = (i, d2);
        }
    }
    (best.0, best.1.sqrt())
}

/// The mean of each cluster's points; clusters without points are dropped.
fn cluster_means(points: &[[f64; 2]], nearest: &[usize], k: usize) -> Vec<[f64; 2]> {
    let mut sums = vec![([0.0f64; 2], 0usize); k];
    for (p, &c) in points.iter().zip(nearest) {
        sums[c].0[0] += p[0];
        sums[c].0[1] += p[1];
        sums[c].1 += 1;
    }
    sums.into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(sum, count)| [sum[0] / count as f64, sum[1] / count as f64])
        .collect()
}

/// ultralytics' random start: 2n uniform draws, sorted, paired, times the image size.
fn random_start(n: usize, img_size: usize, rng: &mut impl Rng) -> Vec<[f64; 2]> {
    let mut draws: Vec<f64> = (0..2 * n).map(|_| rng.random::<f64>()).collect();
    draws.sort_by(f64::total_cmp);
    draws
        .chunks_exact(2)
        .map(|pair| [pair[0] * img_size as f64, pair[1] * img_size as f64])
        .collect()
}

/// The genetic evolution: each generation multiplies the anchors by a random mutation and
/// keeps the result when its fitness is higher. Returns the anchors and their fitness.
fn evolve(
    mut anchors: Vec<[f64; 2]>,
    mut fitness: f64,
    wh: &[[f32; 2]],
    thr: f64,
    generations: usize,
    rng: &mut impl Rng,
) -> (Vec<[f64; 2]>, f64) {
    for _ in 0..generations {
        let mutation = mutation(anchors.len(), rng);
        let candidate: Vec<[f64; 2]> = anchors
            .iter()
            .zip(&mutation)
            .map(|(a, v)| {
                [
                    (a[0] * v[0]).max(MIN_ANCHOR_PX),
                    (a[1] * v[1]).max(MIN_ANCHOR_PX),
                ]
            })
            .collect();
        let candidate_fitness = anchor_fitness(wh, &to_f32(&candidate), thr);
        if candidate_fitness > fitness {
            (anchors, fitness) = (candidate, candidate_fitness);
        }
    }
    (anchors, fitness)
}

/// One generation's factors, drawn again until at least one differs from 1: each
/// coordinate mutates with probability 0.9 by 1 + u·0.1·N(0, 1), clipped to [0.3, 3], where
/// u is one uniform draw shared by the generation.
fn mutation(n: usize, rng: &mut impl Rng) -> Vec<[f64; 2]> {
    loop {
        let scale = rng.random::<f64>() * MUTATION_SIGMA;
        let mut factor = || {
            let mutates = rng.random::<f64>() < MUTATION_PROB;
            let noise: f64 = rng.sample(StandardNormal);
            if mutates {
                (1.0 + scale * noise).clamp(MUTATION_CLIP.0, MUTATION_CLIP.1)
            } else {
                1.0
            }
        };
        let factors: Vec<[f64; 2]> = (0..n).map(|_| [factor(), factor()]).collect();
        if factors.iter().flatten().any(|&v| v != 1.0) {
            return factors;
        }
    }
}

fn sorted_by_area(mut anchors: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    anchors.sort_by(|a, b| (a[0] * a[1]).total_cmp(&(b[0] * b[1])));
    anchors
}

fn to_f32(anchors: &[[f64; 2]]) -> Vec<[f32; 2]> {
    anchors.iter().map(|a| [a[0] as f32, a[1] as f32]).collect()
}

/// kmean_anchors' closing report (its `print_results`), from the final anchors' sums on
/// all the labels.
fn results_messages(
    sums: &RatioSums,
    anchors: &[[f32; 2]],
    thr: f64,
    img_size: usize,
) -> [String; 2] {
    let AnchorMetrics { bpr, aat } = sums.metrics();
    let list: Vec<String> = anchors
        .iter()
        .map(|a| {
            format!(
                "{},{}",
                f64::from(a[0]).round_ties_even(),
                f64::from(a[1]).round_ties_even()
            )
        })
        .collect();
    [
        format!("{PREFIX}thr={:.2}: {bpr:.4} best possible recall, {aat:.2} anchors past thr", 1.0 / thr),
        format!(
            "{PREFIX}n={}, img_size={img_size}, metric_all={:.3}/{:.3}-mean/best, past_thr={:.3}-mean: {}",
            anchors.len(),
            sums.x / sums.pairs as f64,
            sums.best / sums.labels as f64,
            sums.x_above_sum / sums.x_above as f64,
            list.join(", ")
        ),
    ]
}

/// Anchors per level (pixels) as one list, checking that the levels match the strides and
/// all hold the same number of anchors.
fn flatten_levels(
    levels: &[Vec<(f64, f64)>],
    strides: &[f64],
) -> Result<Vec<[f32; 2]>, AutoAnchorError> {
    let na = levels.first().map_or(0, Vec::len);
    if levels.len() != strides.len() || na == 0 || levels.iter().any(|level| level.len() != na) {
        let counts: Vec<usize> = levels.iter().map(Vec::len).collect();
        return Err(AutoAnchorError::Layout(format!("anchors per level {counts:?} for {} strides; every level needs the same, non-zero number of anchors", strides.len())));
    }
    Ok(levels
        .iter()
        .flatten()
        .map(|&(w, h)| [w as f32, h as f32])
        .collect())
}

/// Splits anchors sorted small to large into `levels` levels of equal size (pixels), as
/// ultralytics' `view_as(m.anchors)`.
pub fn split_levels(
    anchors: &[[f32; 2]],
    levels: usize,
) -> Result<Vec<Vec<(f64, f64)>>, AutoAnchorError> {
    if levels == 0 || anchors.is_empty() || !anchors.len().is_multiple_of(levels) {
        return Err(AutoAnchorError::Layout(format!(
            "{} anchors do not split into {levels} equal levels",
            anchors.len()
        )));
    }
    let na = anchors.len() / levels;
    Ok(anchors
        .chunks_exact(na)
        .map(|level| {
            level
                .iter()
                .map(|a| (f64::from(a[0]), f64::from(a[1])))
                .collect()
        })
        .collect())
}

/// ultralytics' check_anchor_order: reverses the levels when their mean anchor area grows
/// the other way from the strides. Returns whether it did.
pub fn check_anchor_order(levels: &mut [Vec<(f64, f64)>], strides: &[f64]) -> bool {
    let mean_area = |level: &Vec<(f64, f64)>| {
        level.iter().map(|(w, h)| w * h).sum::<f64>() / level.len() as f64
    };
    let (Some(first), Some(last), Some(s0), Some(s1)) = (
        levels.first(),
        levels.last(),
        strides.first(),
        strides.last(),
    ) else {
        return false;
    };
    // torch's sign: 0 for 0.
    let sign = |v: f64| (v > 0.0) as i8 - (v < 0.0) as i8;
    let (da, ds) = (mean_area(last) - mean_area(first), s1 - s0);
    let reverse = da != 0.0 && sign(da) != sign(ds);
    if reverse {
        levels.reverse();
    }
    reverse
}

/// Anchors per level in pixels to the Detect head's `anchors` layout: (levels, na, 2) in
/// units of each level's stride, row-major, ready for `Tensor::from_vec`.
pub fn stride_units(
    levels: &[Vec<(f64, f64)>],
    strides: &[f64],
) -> Result<Vec<f32>, AutoAnchorError> {
    flatten_levels(levels, strides)?;
    Ok(levels
        .iter()
        .zip(strides)
        .flat_map(|(level, &s)| {
            level
                .iter()
                .flat_map(move |&(w, h)| [(w / s) as f32, (h / s) as f32])
        })
        .collect())
}
