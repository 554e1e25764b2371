//! Training and validation batches: format, determinism, and the batch plot.

mod data_support;

use std::sync::Arc;

use actyolo::data::augment::Augmentation;
use actyolo::data::dataset::{DataConfig, Dataset, Split};
use actyolo::data::loader::{Batch, Loader, LoaderConfig, LoaderError};
use actyolo::plot::batch::plot_batch;
use actyolo::train::hyp::Hyp;
use data_support::{scratch_dir, small_synth, SmallSynth};

/// A small synthetic dataset (kept on disk while the first value lives), its config and training split.
fn dataset(name: &str, n_train: usize) -> (SmallSynth, DataConfig, Arc<Dataset>) {
    let synth = small_synth(name, n_train, 3, 5);
    let config = DataConfig::load(&synth.yaml).unwrap();
    let train = Dataset::from_config(&config, Split::Train).unwrap();
    (synth, config, Arc::new(train))
}

fn loader_config(workers: usize) -> LoaderConfig {
    LoaderConfig {
        imgsz: 64,
        batch_size: 4,
        workers,
        seed: 11,
        prefetch: 2,
        rect: None,
    }
}

/// A batch as plain numbers, to compare runs.
fn contents(batch: &Batch) -> (Vec<f32>, Vec<f32>, Vec<std::path::PathBuf>) {
    (
        batch.images.flatten_all().unwrap().to_vec1().unwrap(),
        batch.targets.flatten_all().unwrap().to_vec1().unwrap(),
        batch.paths.clone(),
    )
}

fn epoch(loader: &Loader, epoch: u64) -> Vec<(Vec<f32>, Vec<f32>, Vec<std::path::PathBuf>)> {
    loader
        .epoch(epoch)
        .unwrap()
        .map(|batch| contents(&batch.unwrap()))
        .collect()
}

#[test]
fn training_batches_have_ultralytics_shapes() {
    let (_synth, config, train) = dataset("loader-shapes", 10);
    let loader = Loader::train(train.clone(), &Hyp::default().augment, loader_config(2)).unwrap();
    assert_eq!((loader.len(), loader.batch_size()), (3, 4));
    let batches: Vec<Batch> = loader.epoch(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        batches
            .iter()
            .map(|b| b.images.dims4().unwrap())
            .collect::<Vec<_>>(),
        [(4, 3, 64, 64), (4, 3, 64, 64), (2, 3, 64, 64)]
    );
    let mut seen: Vec<_> = batches.iter().flat_map(|b| b.paths.clone()).collect();
    seen.sort();
    assert_eq!(
        seen,
        train
            .records
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        "an epoch visits every image once"
    );
    for batch in &batches {
        let images: Vec<f32> = batch.images.flatten_all().unwrap().to_vec1().unwrap();
        assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
        let targets: Vec<Vec<f32>> = batch.targets.to_vec2().unwrap();
        assert_eq!(batch.targets.dims()[1], 6);
        for t in &targets {
            assert!(
                (t[0] as usize) < batch.paths.len() && t[0].fract() == 0.0,
                "{t:?}"
            );
            assert!(
                (t[1] as usize) < config.nc() && t[1].fract() == 0.0,
                "{t:?}"
            );
            assert!(t[2..].iter().all(|v| (0.0..=1.0).contains(v)), "{t:?}");
        }
        assert!(
            batch.shapes.iter().all(Option::is_none),
            "mosaics have no single original shape"
        );
    }
    assert!(batches.iter().map(|b| b.targets.dims()[0]).sum::<usize>() > 0);
}

#[test]
fn the_same_seed_gives_the_same_batches_whatever_the_workers() {
    let (_synth, _, train) = dataset("loader-determinism", 8);
    let hyp = Augmentation {
        mixup: 0.5,
        degrees: 10.0,
        shear: 2.0,
        perspective: 0.0005,
        flipud: 0.5,
        ..Hyp::default().augment
    };
    let one = Loader::train(train.clone(), &hyp, loader_config(1)).unwrap();
    let two = Loader::train(train.clone(), &hyp, loader_config(2)).unwrap();
    let first = epoch(&one, 0);
    assert_eq!(first, epoch(&two, 0));
    assert_eq!(first, epoch(&one, 0));
    let next = epoch(&one, 1);
    assert_ne!(first, next, "each epoch has its own order and augmentation");
    assert_ne!(one.order(0), one.order(1));
    let other_seed = Loader::train(
        train,
        &hyp,
        LoaderConfig {
            seed: 12,
            ..loader_config(2)
        },
    )
    .unwrap();
    assert_ne!(first, epoch(&other_seed, 0));
}

#[test]
fn validation_batches_are_letterboxed_in_order_with_the_labels() {
    let (_synth, config, _) = dataset("loader-val", 4);
    let val = Arc::new(Dataset::from_config(&config, Split::Val).unwrap());
    let loader = Loader::val(
        val.clone(),
        LoaderConfig {
            batch_size: 2,
            ..loader_config(2)
        },
    )
    .unwrap();
    let batches: Vec<Batch> = loader.epoch(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        batches.iter().map(|b| b.paths.len()).collect::<Vec<_>>(),
        [2, 1]
    );
    let paths: Vec<_> = batches.iter().flat_map(|b| b.paths.clone()).collect();
    assert_eq!(
        paths,
        val.records
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    let shape = batches[0].shapes[0].unwrap();
    assert_eq!(
        (shape.original, shape.gain, shape.pad),
        ((64, 64), (1.0, 1.0), (0.0, 0.0))
    );
    // At imgsz = image size nothing moves: the targets are the label files' boxes.
    let targets: Vec<Vec<f32>> = batches[0].targets.to_vec2().unwrap();
    let expected: Vec<Vec<f32>> = val.records[..2]
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.labels
                .iter()
                .map(move |l| vec![i as f32, l.class as f32, l.cx, l.cy, l.w, l.h])
        })
        .collect();
    assert_eq!(targets.len(), expected.len());
    for (t, e) in targets.iter().zip(&expected) {
        assert!(
            t.iter().zip(e).all(|(a, b)| (a - b).abs() < 2e-5),
            "{t:?} vs {e:?}"
        );
    }
    // A larger imgsz enlarges the image (ultralytics' load_image), so nothing is padded.
    let enlarged = Loader::val(
        val,
        LoaderConfig {
            imgsz: 96,
            ..loader_config(1)
        },
    )
    .unwrap()
    .sample(0, 0)
    .unwrap();
    assert_eq!(enlarged.image.dimensions(), (96, 96));
    let shape = enlarged.shape.unwrap();
    assert_eq!(
        (shape.original, shape.gain, shape.pad),
        ((64, 64), (1.5, 1.5), (0.0, 0.0))
    );
}

#[test]
fn a_training_set_without_labels_is_refused() {
    let (_synth, _, train) = dataset("loader-nolabels", 2);
    let records = train
        .records
        .iter()
        .map(|r| actyolo::data::dataset::ImageRecord {
            labels: Vec::new(),
            ..r.clone()
        })
        .collect();
    let empty = Dataset {
        records,
        report: train.report.clone(),
    };
    assert!(matches!(
        Loader::train(Arc::new(empty), &Hyp::default().augment, loader_config(1)),
        Err(LoaderError::NoLabels)
    ));
}

#[test]
fn plots_the_first_batch_like_train_batch0() {
    let (_synth, config, train) = dataset("loader-plot", 6);
    let loader = Loader::train(train, &Hyp::default().augment, loader_config(2)).unwrap();
    let batch = loader.epoch(0).unwrap().next().unwrap().unwrap();
    let out = scratch_dir("loader-plot-out");
    let path = out.join("train_batch0.jpg");
    plot_batch(
        &batch.images,
        &batch.targets,
        &batch.paths,
        &config.names,
        &path,
    )
    .unwrap();
    let plotted = image::open(&path).unwrap();
    assert_eq!((plotted.width(), plotted.height()), (128, 128));
}

#[test]
fn validation_pads_non_square_images_and_moves_their_boxes() {
    let root = scratch_dir("loader-letterbox");
    std::fs::create_dir_all(root.join("images/val")).unwrap();
    std::fs::create_dir_all(root.join("labels/val")).unwrap();
    image::RgbImage::from_pixel(64, 40, image::Rgb([9, 9, 9]))
        .save(root.join("images/val/wide.png"))
        .unwrap();
    std::fs::write(root.join("labels/val/wide.txt"), "1 0.5 0.5 0.5 0.5\n").unwrap();
    let val = Arc::new(Dataset::load(&[root.join("images/val")], 2).unwrap());
    let sample = Loader::val(val, loader_config(1))
        .unwrap()
        .sample(0, 0)
        .unwrap();
    assert_eq!(sample.image.dimensions(), (64, 64));
    // 12 grey rows above and below the 40 image rows.
    assert_eq!(
        (
            sample.image.get_pixel(0, 11).0,
            sample.image.get_pixel(0, 12).0,
            sample.image.get_pixel(0, 52).0
        ),
        ([114; 3], [9; 3], [114; 3])
    );
    assert_eq!(sample.shape.unwrap().pad, (0.0, 12.0));
    // The box (x 16..48, y 10..30 in the image) moves down by 12: y 22..42 of 64.
    assert_eq!(
        sample.labels,
        vec![actyolo::data::labels::Label {
            class: 1,
            cx: 0.5,
            cy: 0.5,
            w: 0.5,
            h: 0.3125
        }]
    );
}
