//! data.yaml variants, label checks with their warnings, and the label cache.

mod data_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use actyolo::data::dataset::{label_path, CacheStatus, DataConfig, Dataset, DatasetCounts, Split};
use actyolo::data::labels::{parse_labels, Label, LabelError};
use actyolo::util::error::chain;
use data_support::{scratch_dir, small_synth};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn label_paths_replace_the_last_images_folder() {
    assert_eq!(
        label_path(Path::new("/d/images/x/images/train/a.b.jpg")),
        PathBuf::from("/d/images/x/labels/train/a.b.txt")
    );
    assert_eq!(
        label_path(Path::new("/d/pics/a.png")),
        PathBuf::from("/d/pics/a.txt")
    );
}

#[test]
fn parses_boxes_polygons_and_reports_the_line() {
    let parsed = parse_labels(
        "\n0 0.5 0.5 0.2 0.2\n\n1 0.1 0.2 0.3 0.4\n0 0.5 0.5 0.2 0.2\n",
        2,
    )
    .unwrap();
    assert_eq!(
        parsed.labels,
        vec![
            Label {
                class: 0,
                cx: 0.5,
                cy: 0.5,
                w: 0.2,
                h: 0.2
            },
            Label {
                class: 1,
                cx: 0.1,
                cy: 0.2,
                w: 0.3,
                h: 0.4
            }
        ]
    );
    assert_eq!(parsed.duplicates_removed, 1);
    // A row of more than 6 values makes every row a polygon, turned into its extent.
    let polygon = parse_labels("2 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6", 3).unwrap();
    let label = polygon.labels[0];
    assert!(
        (label.cx - 0.3).abs() < 1e-6
            && (label.cy - 0.4).abs() < 1e-6
            && (label.w - 0.4).abs() < 1e-6
            && (label.h - 0.4).abs() < 1e-6
    );
    assert_eq!(
        parse_labels("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2", 1),
        Err(LabelError::Columns {
            line: 2,
            columns: 4
        })
    );
    assert_eq!(
        parse_labels("1.5 0.5 0.5 0.2 0.2", 3),
        Err(LabelError::ClassNotInteger {
            line: 1,
            value: 1.5
        })
    );
    assert_eq!(parse_labels("0 0.5 0.5 0.2 nan", 3).map_err(|e| chain(&e)).unwrap_err(), "line 1: height NaN is outside [0, 1]; coordinates must be normalised by the image width and height");
}

#[test]
fn yaml_variants_list_files_folder_lists_and_name_maps() {
    let synth = small_synth("dataset-yaml", 6, 3, 1);
    let root = synth.dir.canonicalize().unwrap();
    // A list file with ./-relative, plain relative and absolute paths.
    let absolute = root.join("images/train/000002.png");
    write(
        &root.join("train.txt"),
        &format!(
            "./images/train/000000.png\nimages/train/000001.png\n{}\n\n",
            absolute.display()
        ),
    );
    let sub = root.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    write(&sub.join("data.yaml"), "path: ..\ntrain: train.txt\nval: [images/train, images/val]\nnames:\n  0: circle\n  1: rectangle\n  2: triangle\n");
    let config = DataConfig::load(&sub.join("data.yaml")).unwrap();
    assert_eq!(config.names, ["circle", "rectangle", "triangle"]);
    let train = Dataset::from_config(&config, Split::Train).unwrap();
    assert_eq!(
        train
            .records
            .iter()
            .map(|r| r.path.file_name().unwrap().to_str().unwrap())
            .collect::<Vec<_>>(),
        ["000000.png", "000001.png", "000002.png"]
    );
    assert!(
        matches!(train.report.cache, CacheStatus::Created(ref p) if *p == root.join("train.cache"))
    );
    assert_eq!(Dataset::from_config(&config, Split::Val).unwrap().len(), 9);
    assert_eq!(
        Dataset::from_config(&config, Split::Test)
            .map_err(|e| chain(&e))
            .unwrap_err(),
        format!(
            "{}: the `test:` split is empty or missing",
            sub.join("data.yaml").display()
        )
    );
}

#[test]
fn yaml_mistakes_name_the_file_and_the_fix() {
    let dir = scratch_dir("dataset-yaml-errors");
    let check = |text: &str, expected: &str| {
        let file = dir.join("data.yaml");
        write(&file, text);
        let message = DataConfig::load(&file).map_err(|e| chain(&e)).unwrap_err();
        assert_eq!(
            message,
            format!("{}: {expected}", file.display()),
            "for {text:?}"
        );
    };
    check(
        "train: a\nval: b\n",
        "the `names:` key is missing; list the class names, e.g. `names: [cat, dog]`",
    );
    check(
        "val: b\nnames: [a]\n",
        "the `train:` key is missing; it names a folder of images or a .txt list of image paths",
    );
    check(
        "train: a\nval: b\nnc: 3\nnames: [a, b]\n",
        "`nc: 3` disagrees with the 2 class names; remove `nc` or fix it",
    );
    check(
        "train: a\nval: b\nnames: {0: a, 2: b}\n",
        "`names`: class indices must run 0, 1, 2, ... without gaps; expected 1, found 2",
    );
    check(
        "train: a\nval: b\nnames: {zero: a}\n",
        "`names`: key `zero` is not a class index; use `0: name`",
    );
    write(
        &dir.join("data.yaml"),
        "train: nowhere\nval: nowhere\nnames: [a]\n",
    );
    let config = DataConfig::load(&dir.join("data.yaml")).unwrap();
    let message = Dataset::from_config(&config, Split::Train)
        .map_err(|e| chain(&e))
        .unwrap_err();
    assert_eq!(message, format!("{} does not exist; a split names a folder of images, a .txt list of image paths, or a list of those", dir.join("nowhere").display()));
}

#[test]
fn bad_files_are_skipped_with_one_warning_each() {
    let synth = small_synth("dataset-bad", 9, 1, 2);
    let (yaml, root) = (&synth.yaml, synth.dir.canonicalize().unwrap());
    let label = |i: usize| root.join(format!("labels/train/{i:06}.txt"));
    let image = |i: usize| root.join(format!("images/train/{i:06}.png"));
    write(&label(0), "0 0.5 0.5 0.2 0.2 0.1\n");
    write(&label(1), "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n");
    write(&label(2), "1 1.5 0.5 0.2 0.2\n");
    write(
        &label(3),
        "1 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n1 0.5 0.5 0.2 0.2\n",
    );
    write(&image(4), "not an image");
    std::fs::remove_file(label(5)).unwrap();
    write(&label(6), "");
    write(&label(7), "0 0.5 0.5 0.2 abc\n");
    write(&label(8), "-1 0.5 0.5 0.2 0.2\n");
    let config = DataConfig::load(yaml).unwrap();
    let dataset = Dataset::from_config(&config, Split::Train).unwrap();
    let warnings: Vec<String> = dataset
        .report
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    let expected = [
        format!("WARNING ⚠️ {}: line 1: 6 columns; a box label has 5 (class cx cy w h) (image skipped)", label(0).display()),
        format!("WARNING ⚠️ {}: line 2: class 7 out of range [0, 3); fix the label or the names in data.yaml (image skipped)", label(1).display()),
        format!("WARNING ⚠️ {}: line 1: x 1.5 is outside [0, 1]; coordinates must be normalised by the image width and height (image skipped)", label(2).display()),
        format!("WARNING ⚠️ {}: 1 duplicate labels removed", label(3).display()),
        format!("WARNING ⚠️ {}: cannot decode: Format error decoding Png: Invalid PNG signature. (image skipped)", image(4).display()),
        format!("WARNING ⚠️ {}: line 1: `abc` is not a number (image skipped)", label(7).display()),
        format!("WARNING ⚠️ {}: line 1: class -1 out of range [0, 3); fix the label or the names in data.yaml (image skipped)", label(8).display()),
    ];
    assert_eq!(warnings, expected);
    assert_eq!(
        dataset.report.counts,
        DatasetCounts {
            images: 3,
            labels: 2,
            backgrounds: 2,
            corrupt: 6
        }
    );
    assert_eq!(
        dataset.report.summary(),
        "found 3 images, 2 labels, 2 backgrounds, 6 corrupt"
    );
    assert_eq!(
        dataset
            .records
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        [image(3), image(5), image(6)]
    );
    assert_eq!(dataset.records[0].labels.len(), 2);
}

#[test]
fn the_cache_is_reused_until_a_file_changes() {
    let synth = small_synth("dataset-cache", 5, 1, 4);
    let config = DataConfig::load(&synth.yaml).unwrap();
    let root = synth.dir.canonicalize().unwrap();
    let cache = root.join("labels/train.cache");
    let load = || Dataset::from_config(&config, Split::Train).unwrap();
    let first = load();
    assert_eq!(first.report.cache, CacheStatus::Created(cache.clone()));
    let second = load();
    assert_eq!(second.report.cache, CacheStatus::Loaded(cache.clone()));
    assert_eq!(second.records, first.records);
    assert_eq!(second.report.counts, first.report.counts);

    // Touching a label file (same content, new time) invalidates it.
    let label = root.join("labels/train/000001.txt");
    let file = std::fs::File::options().write(true).open(&label).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(load().report.cache, CacheStatus::Created(cache.clone()));
    assert_eq!(load().report.cache, CacheStatus::Loaded(cache.clone()));
    // So does a different number of classes, which the class check depends on.
    assert!(matches!(
        Dataset::load(&config.train, 2).unwrap().report.cache,
        CacheStatus::Created(_)
    ));
    // And a cache from elsewhere or garbage is simply rebuilt.
    write(&cache, "{not json");
    assert_eq!(load().report.cache, CacheStatus::Created(cache));
}
