//! The synthetic dataset: determinism, boxes tight to the visible pixels, settings errors.

mod data_support;

use std::path::Path;

use actyolo::data::dataset::{DataConfig, Dataset, Split};
use actyolo::data::synth::{generate, render, PixelRect, ShapeKind, SynthConfig, SynthError};
use data_support::{scratch_dir, small_synth};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Every image and label file of a generated dataset, by relative path.
fn dataset_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for folder in ["images/train", "images/val", "labels/train", "labels/val"] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|name| {
            (
                format!("{folder}/{name}"),
                std::fs::read(root.join(folder).join(&name)).unwrap(),
            )
        }));
    }
    files
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_different_ones() {
    let (first, again, other) = (
        small_synth("synth-seed-a", 6, 2, 7),
        small_synth("synth-seed-b", 6, 2, 7),
        small_synth("synth-seed-c", 6, 2, 8),
    );
    let (a, b, c) = (
        dataset_files(&first.dir),
        dataset_files(&again.dir),
        dataset_files(&other.dir),
    );
    assert_eq!(a.len(), 16);
    assert_eq!(a, b);
    let names =
        |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&c));
    assert!(
        a.iter().zip(&c).filter(|(x, y)| x.1 != y.1).count() >= 8,
        "another seed must change the images"
    );
}

/// The bounding box of the pixels where shape `k` is the topmost shape, recomputed from
/// the outlines alone.
fn topmost_box(
    objects: &[actyolo::data::synth::SynthObject],
    k: usize,
    size: u32,
) -> Option<PixelRect> {
    let mut rect: Option<PixelRect> = None;
    for y in 0..size {
        for x in 0..size {
            let top = objects.iter().rposition(|o| o.outline.covers_pixel(x, y));
            if top == Some(k) {
                let r = rect.get_or_insert(PixelRect {
                    x1: x,
                    y1: y,
                    x2: x + 1,
                    y2: y + 1,
                });
                *r = PixelRect {
                    x1: r.x1.min(x),
                    y1: r.y1.min(y),
                    x2: r.x2.max(x + 1),
                    y2: r.y2.max(y + 1),
                };
            }
        }
    }
    rect
}

#[test]
fn boxes_are_tight_to_the_visible_pixels() {
    let classes = ShapeKind::ALL;
    let mut labelled = 0;
    for seed in 0..12 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let size = 96;
        let rendered = render(size, &classes, 6, &mut rng);
        assert_eq!(rendered.image.dimensions(), (size, size));
        for (k, object) in rendered.objects.iter().enumerate() {
            if let Some(rect) = object.visible_box {
                assert_eq!(
                    Some(rect),
                    topmost_box(&rendered.objects, k, size),
                    "seed {seed}, object {k}"
                );
                labelled += 1;
            }
        }
        let text = rendered.label_text();
        let lines: Vec<&str> = text.lines().collect();
        let boxes: Vec<_> = rendered
            .objects
            .iter()
            .filter_map(|o| o.visible_box.map(|r| (o.class, r)))
            .collect();
        assert_eq!(lines.len(), boxes.len());
        for (line, (class, r)) in lines.iter().zip(boxes) {
            let values: Vec<f32> = line.split(' ').map(|v| v.parse().unwrap()).collect();
            let s = size as f32;
            let expected = [
                class as f32,
                (r.x1 + r.x2) as f32 / 2.0 / s,
                (r.y1 + r.y2) as f32 / 2.0 / s,
                (r.x2 - r.x1) as f32 / s,
                (r.y2 - r.y1) as f32 / s,
            ];
            for (v, e) in values.iter().zip(expected) {
                assert!((v - e).abs() < 1e-6, "{line} vs {expected:?}");
            }
        }
    }
    assert!(
        labelled >= 24,
        "only {labelled} labelled objects in 12 images"
    );
}

#[test]
fn unknown_shape_lists_the_supported_ones() {
    let message = ShapeKind::parse_list("circle,hexagon")
        .unwrap_err()
        .to_string();
    assert_eq!(message, "unknown shape `hexagon`; the supported shapes are circle, rectangle, triangle, star, cross");
    assert_eq!(
        ShapeKind::parse_list("Circle, triangle").unwrap(),
        vec![ShapeKind::Circle, ShapeKind::Triangle]
    );
}

#[test]
fn refuses_to_overwrite_and_rejects_bad_settings() {
    let out = scratch_dir("synth-exists");
    let config = SynthConfig {
        out: out.to_path_buf(),
        n_train: 1,
        n_val: 1,
        imgsz: 64,
        ..SynthConfig::default()
    };
    generate(&config).unwrap();
    assert!(matches!(generate(&config), Err(SynthError::Exists { .. })));
    let other = scratch_dir("synth-twice");
    let twice = SynthConfig {
        out: other.to_path_buf(),
        classes: vec![ShapeKind::Star, ShapeKind::Star],
        ..config.clone()
    };
    assert_eq!(
        generate(&twice).unwrap_err().to_string(),
        "invalid synth settings: `star` is listed twice in the classes"
    );
}

#[test]
fn the_written_dataset_loads_with_matching_counts() {
    let synth = small_synth("synth-load", 10, 4, 3);
    let config = DataConfig::load(&synth.yaml).unwrap();
    assert_eq!(config.names, ["circle", "rectangle", "triangle"]);
    let train = Dataset::from_config(&config, Split::Train).unwrap();
    assert_eq!(train.len(), 10);
    assert!(
        train.report.warnings.is_empty(),
        "{:?}",
        train.report.warnings
    );
    let labels: usize = train.records.iter().map(|r| r.labels.len()).sum();
    assert_eq!(train.report.counts.labels, labels);
    assert!(labels >= 10);
    assert!(train
        .records
        .iter()
        .all(|r| (r.width, r.height) == (64, 64)));
}
