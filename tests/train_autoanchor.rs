//! AutoAnchor against ultralytics' `utils/autoanchor.py` (fixture:
//! tools/gen_autoanchor_fixtures.py): label gathering exactly, check_anchors' metric and
//! kmean_anchors' fitness to 1e-6, check_anchors' message verbatim. The k-means and the
//! evolution draw their own random numbers, so they are checked by what they must achieve
//! and by their determinism.
//!
//! The timing of a 1000-generation evolution on 10k labels is an ignored test:
//! `cargo test --release --test train_autoanchor -- --ignored --nocapture`.

use std::collections::HashMap;
use std::time::Instant;

use actyolo::train::autoanchor::{
    anchor_fitness, anchor_metrics, augment_scales, check_anchor_order, check_anchors,
    kmean_anchors, label_wh, split_levels, stride_units, AnchorInit, AutoAnchorError, ImageLabels,
    LabelSizes, Recomputed,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOLERANCE: f64 = 1e-6;
const DEFAULT_ANCHORS: [[(f64, f64); 3]; 3] = [
    [(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)],
    [(30.0, 61.0), (62.0, 45.0), (59.0, 119.0)],
    [(116.0, 90.0), (156.0, 198.0), (373.0, 326.0)],
];
const STRIDES: [f64; 3] = [8.0, 16.0, 32.0];

#[derive(serde::Deserialize)]
struct Image {
    shape: [f64; 2],
    wh: Vec<[f64; 2]>,
}

#[derive(serde::Deserialize)]
struct Metric {
    anchors: String,
    thr: f64,
    bpr: f64,
    aat: f64,
}

#[derive(serde::Deserialize)]
struct Fitness {
    anchors: String,
    thr: f64,
    fitness: f64,
}

#[derive(serde::Deserialize)]
struct Fixture {
    imgsz: usize,
    images: Vec<Image>,
    scales: Vec<f64>,
    wh: Vec<[f64; 2]>,
    anchor_sets: HashMap<String, Vec<[f64; 2]>>,
    metrics: Vec<Metric>,
    fitness: Vec<Fitness>,
    kmeans_labels: usize,
    small_labels: usize,
    message: String,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/autoanchor.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// JSON numbers read as f64 then rounded to f32, as numpy's float32 arrays were made.
fn to_f32(values: &[[f64; 2]]) -> Vec<[f32; 2]> {
    values.iter().map(|v| [v[0] as f32, v[1] as f32]).collect()
}

fn images(fixture: &Fixture) -> Vec<ImageLabels> {
    fixture
        .images
        .iter()
        .map(|image| ImageLabels {
            width: image.shape[0],
            height: image.shape[1],
            wh: to_f32(&image.wh),
        })
        .collect()
}

fn default_anchors() -> Vec<Vec<(f64, f64)>> {
    DEFAULT_ANCHORS.iter().map(|level| level.to_vec()).collect()
}

fn flat(levels: &[Vec<(f64, f64)>]) -> Vec<[f32; 2]> {
    levels
        .iter()
        .flatten()
        .map(|&(w, h)| [w as f32, h as f32])
        .collect()
}

/// Square 640-px images holding `per_image` labels each, sizes from `draw` in pixels.
fn synthetic_images(
    count: usize,
    per_image: usize,
    rng: &mut ChaCha8Rng,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> [f32; 2],
) -> Vec<ImageLabels> {
    (0..count)
        .map(|_| {
            let wh = (0..per_image)
                .map(|_| draw(rng))
                .map(|[w, h]| [w / 640.0, h / 640.0])
                .collect();
            ImageLabels {
                width: 640.0,
                height: 640.0,
                wh,
            }
        })
        .collect()
}

/// Labels close to the default anchors: each one of them times 0.7–1.4 per side.
fn labels_like_default_anchors(rng: &mut ChaCha8Rng) -> Vec<ImageLabels> {
    let anchors = flat(&default_anchors());
    synthetic_images(200, 5, rng, |rng| {
        let a = anchors[rng.random_range(0..anchors.len())];
        [
            a[0] * rng.random_range(0.7..1.4),
            a[1] * rng.random_range(0.7..1.4),
        ]
    })
}

/// Wide, flat labels about 200×20 px, far from every default anchor.
fn flat_labels(rng: &mut ChaCha8Rng) -> Vec<ImageLabels> {
    synthetic_images(100, 4, rng, |rng| {
        [rng.random_range(150.0..250.0), rng.random_range(15.0..25.0)]
    })
}

fn sizes(images: &[ImageLabels], seed: u64) -> LabelSizes {
    let scales = augment_scales(images.len(), &mut ChaCha8Rng::seed_from_u64(seed));
    LabelSizes::gather(images, 640, &scales).expect("label sizes")
}

#[test]
fn label_sizes_match_check_anchors_gathering() {
    let fixture = fixture();
    let wh = label_wh(&images(&fixture), fixture.imgsz, &fixture.scales).unwrap();
    assert_eq!(wh, to_f32(&fixture.wh), "label sizes differ from numpy's");
}

#[test]
fn metrics_match_ultralytics() {
    let fixture = fixture();
    let wh = to_f32(&fixture.wh);
    for expected in &fixture.metrics {
        let anchors = to_f32(&fixture.anchor_sets[&expected.anchors]);
        let got = anchor_metrics(&wh, &anchors, expected.thr);
        let what = format!("{} anchors, thr {}", expected.anchors, expected.thr);
        assert!(
            (got.bpr - expected.bpr).abs() <= TOLERANCE,
            "{what}: bpr {} vs {}",
            got.bpr,
            expected.bpr
        );
        assert!(
            (got.aat - expected.aat).abs() <= TOLERANCE,
            "{what}: aat {} vs {}",
            got.aat,
            expected.aat
        );
    }
}

#[test]
fn fitness_matches_ultralytics() {
    let fixture = fixture();
    let unscaled = label_wh(
        &images(&fixture),
        fixture.imgsz,
        &vec![1.0; fixture.images.len()],
    )
    .unwrap();
    let used: Vec<[f32; 2]> = unscaled
        .into_iter()
        .filter(|l| l[0] >= 2.0 || l[1] >= 2.0)
        .collect();
    assert_eq!(used.len(), fixture.kmeans_labels);
    for expected in &fixture.fitness {
        let got = anchor_fitness(
            &used,
            &to_f32(&fixture.anchor_sets[&expected.anchors]),
            expected.thr,
        );
        assert!(
            (got - expected.fitness).abs() <= TOLERANCE,
            "{} anchors, thr {}: fitness {got} vs {}",
            expected.anchors,
            expected.thr,
            expected.fitness
        );
    }
}

#[test]
fn kmean_anchors_filters_and_counts_labels_as_ultralytics() {
    let fixture = fixture();
    let labels = LabelSizes::gather(&images(&fixture), fixture.imgsz, &fixture.scales).unwrap();
    let evolved = kmean_anchors(
        &labels.unscaled,
        9,
        fixture.imgsz,
        4.0,
        10,
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .unwrap();
    assert_eq!(
        (evolved.labels_used, evolved.small_labels),
        (fixture.kmeans_labels, fixture.small_labels)
    );
    let warning = format!("AutoAnchor: WARNING ⚠️ Extremely small objects found: {} of {} labels are <3 pixels in size", fixture.small_labels, fixture.wh.len());
    assert_eq!(evolved.messages[0], warning);
    assert_eq!(
        evolved.messages[1],
        format!(
            "AutoAnchor: Running kmeans for 9 anchors on {} points...",
            fixture.kmeans_labels
        )
    );
}

#[test]
fn check_anchors_message_matches_ultralytics() {
    let fixture = fixture();
    let labels = LabelSizes::gather(&images(&fixture), fixture.imgsz, &fixture.scales).unwrap();
    let check = check_anchors(
        &labels,
        &default_anchors(),
        &STRIDES,
        4.0,
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .unwrap();
    assert_eq!(check.messages, vec![fixture.message]);
    assert!(check.recomputed.is_none() && check.adopted.is_none());
}

#[test]
fn default_anchors_fit_labels_like_them() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let labels = sizes(&labels_like_default_anchors(&mut rng), 2);
    let check = check_anchors(&labels, &default_anchors(), &STRIDES, 4.0, &mut rng).unwrap();
    assert!(check.current.bpr >= 0.98, "bpr {}", check.current.bpr);
    assert!(check.recomputed.is_none() && check.adopted.is_none());
    assert!(
        check.messages[0].ends_with("Current anchors are a good fit to dataset ✅"),
        "{:?}",
        check.messages
    );
}

#[test]
fn poor_anchors_are_recomputed_and_adopted() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let labels = sizes(&flat_labels(&mut rng), 4);
    let check = check_anchors(&labels, &default_anchors(), &STRIDES, 4.0, &mut rng).unwrap();
    assert!(check.current.bpr < 0.98, "bpr {}", check.current.bpr);
    let Recomputed { evolved, bpr } = check.recomputed.expect("recomputed");
    assert!(bpr >= 0.98, "recomputed bpr {bpr}");
    assert_eq!(evolved.init, AnchorInit::KMeans);
    assert!(
        evolved.fitness >= evolved.start_fitness,
        "fitness {} < start {}",
        evolved.fitness,
        evolved.start_fitness
    );
    let adopted = check.adopted.expect("adopted");
    assert_eq!(
        adopted.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
    let areas: Vec<f64> = adopted.iter().flatten().map(|(w, h)| w * h).collect();
    assert!(
        areas.windows(2).all(|p| p[0] <= p[1]),
        "not small to large: {adopted:?}"
    );
    assert!(check.messages[0]
        .ends_with("Anchors are a poor fit to dataset ⚠️, attempting to improve..."));
    assert_eq!(
        check.messages.last().unwrap(),
        "AutoAnchor: Done ✅ (optional: update model *.yaml to use these anchors in the future)"
    );
}

#[test]
fn kmean_anchors_evolution_improves_on_kmeans() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let labels = sizes(&flat_labels(&mut rng), 6);
    let evolved = kmean_anchors(&labels.unscaled, 9, 640, 4.0, 1000, &mut rng).unwrap();
    assert!(evolved.metrics.bpr >= 0.98, "bpr {}", evolved.metrics.bpr);
    assert!(evolved.fitness >= evolved.start_fitness);
    assert!(
        (anchor_fitness(&labels.unscaled, &evolved.anchors, 4.0) - evolved.fitness).abs() < 1e-12,
        "fitness of the returned anchors"
    );
    let areas: Vec<f32> = evolved.anchors.iter().map(|a| a[0] * a[1]).collect();
    assert!(areas.windows(2).all(|p| p[0] <= p[1]));
    assert!(evolved.anchors.iter().flatten().all(|&v| v >= 2.0));
}

#[test]
fn the_same_seed_gives_the_same_anchors() {
    let labels = sizes(&flat_labels(&mut ChaCha8Rng::seed_from_u64(7)), 8);
    let run = |seed| {
        kmean_anchors(
            &labels.unscaled,
            9,
            640,
            4.0,
            300,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap()
    };
    assert_eq!(run(11), run(11));
}

#[test]
fn kmeans_falls_back_to_random_init_as_ultralytics() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // Every label the same size: no spread to whiten by.
    let same = vec![[40.0f32, 30.0]; 50];
    let evolved = kmean_anchors(&same, 9, 320, 4.0, 100, &mut rng).unwrap();
    assert_eq!(evolved.init, AnchorInit::Random);
    assert!(evolved
        .messages
        .iter()
        .any(|m| m == "AutoAnchor: WARNING ⚠️ switching strategies from kmeans to random init"));
    // Fewer labels than anchors.
    let few = vec![[40.0f32, 30.0], [80.0, 20.0]];
    assert_eq!(
        kmean_anchors(&few, 9, 320, 4.0, 10, &mut rng).unwrap().init,
        AnchorInit::Random
    );
}

#[test]
fn anchor_layout_helpers() {
    let sorted: Vec<[f32; 2]> = flat(&default_anchors());
    let mut levels = split_levels(&sorted, 3).unwrap();
    assert_eq!(levels, default_anchors());
    assert!(!check_anchor_order(&mut levels, &STRIDES));
    levels.reverse();
    assert!(
        check_anchor_order(&mut levels, &STRIDES),
        "large-to-small levels are reversed"
    );
    assert_eq!(levels, default_anchors());
    let units = stride_units(&levels, &STRIDES).unwrap();
    assert_eq!(units.len(), 18);
    assert_eq!(&units[..2], &[1.25, 1.625]);
    assert_eq!(&units[16..], &[373.0 / 32.0, 326.0 / 32.0]);
    assert!(matches!(
        split_levels(&sorted, 4),
        Err(AutoAnchorError::Layout(_))
    ));
    assert!(matches!(
        stride_units(&levels, &STRIDES[..2]),
        Err(AutoAnchorError::Layout(_))
    ));
}

#[test]
fn user_mistakes_are_errors() {
    let image = ImageLabels {
        width: 0.0,
        height: 480.0,
        wh: vec![[0.1, 0.1]],
    };
    assert!(matches!(
        label_wh(std::slice::from_ref(&image), 640, &[1.0]),
        Err(AutoAnchorError::ImageSize { index: 0, .. })
    ));
    assert!(matches!(
        label_wh(&[image], 640, &[]),
        Err(AutoAnchorError::ScaleCount {
            images: 1,
            scales: 0
        })
    ));
    let empty = LabelSizes {
        scaled: vec![],
        unscaled: vec![],
        imgsz: 640,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(matches!(
        check_anchors(&empty, &default_anchors(), &STRIDES, 4.0, &mut rng),
        Err(AutoAnchorError::NoLabels)
    ));
    let one = LabelSizes {
        scaled: vec![[10.0, 10.0]],
        unscaled: vec![[10.0, 10.0]],
        imgsz: 640,
    };
    assert!(matches!(
        check_anchors(&one, &default_anchors(), &STRIDES, 0.0, &mut rng),
        Err(AutoAnchorError::Threshold(_))
    ));
    assert!(matches!(
        kmean_anchors(&[[1.0, 1.5]], 3, 640, 4.0, 10, &mut rng),
        Err(AutoAnchorError::NoUsableLabels)
    ));
}

#[test]
#[ignore = "timing, run by hand"]
fn evolution_timing_on_10k_labels() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let wh: Vec<[f32; 2]> = (0..10_000)
        .map(|_| [rng.random_range(8.0..300.0), rng.random_range(8.0..300.0)])
        .collect();
    let start = Instant::now();
    let evolved = kmean_anchors(&wh, 9, 640, 4.0, 1000, &mut rng).unwrap();
    println!(
        "kmean_anchors, 10k labels, 1000 generations: {:.2?}; fitness {:.4} -> {:.4}, bpr {:.4}",
        start.elapsed(),
        evolved.start_fitness,
        evolved.fitness,
        evolved.metrics.bpr
    );
}
