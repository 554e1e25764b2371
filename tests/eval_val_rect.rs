//! `val` against YOLOv5's val.py on the same `.pt` and images of mixed aspect ratios
//! (fixture: tools/gen_val_rect_fixtures.py): rectangular batches with pad 0.5, each
//! image's letterboxed shape, and the table (P, R, mAP50, mAP50-95, all and per class)
//! to 0.002, the precision val.py prints.

use std::path::Path;
use std::sync::Arc;

use actyolo::data::dataset::{DataConfig, Dataset, Split};
use actyolo::data::loader::{Loader, LoaderConfig, RectBatches};
use actyolo::eval::val::{run_val, ValOptions, ValRun};
use candle_core::Device;
use serde_json::Value;

mod val_support;

use val_support::{dataset_copy, expected, FIXTURE};

#[test]
fn rectangular_batches_give_val_py_shapes() {
    let expected = expected();
    let dir = dataset_copy("shapes");
    let config = DataConfig::load(&dir.join("data.yaml")).unwrap();
    let dataset = Arc::new(Dataset::from_config(&config, Split::Val).unwrap());
    let loader = Loader::val(
        dataset,
        LoaderConfig {
            imgsz: 256,
            batch_size: 32,
            workers: 2,
            rect: Some(RectBatches {
                stride: 32,
                pad: 0.5,
            }),
            ..LoaderConfig::default()
        },
    )
    .unwrap();
    let images = expected["val_py"]["images_in_val_order"]
        .as_array()
        .unwrap();
    let mut seen = 0;
    for batch in loader.epoch(0).unwrap() {
        let batch = batch.unwrap();
        let (_, _, h, w) = batch.images.dims4().unwrap();
        for path in &batch.paths {
            let name = path.file_name().unwrap().to_str().unwrap();
            let image = images.iter().find(|i| i["file"] == name).unwrap();
            let want = image["letterboxed_hw"].as_array().unwrap();
            assert_eq!(
                [h as u64, w as u64],
                [want[0].as_u64().unwrap(), want[1].as_u64().unwrap()],
                "{name}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, images.len());
}

#[test]
fn val_table_equals_val_py_on_a_yolov5_pt() {
    let expected = expected();
    let dir = dataset_copy("table");
    let run = ValRun {
        weights: Path::new(FIXTURE).join("model.pt"),
        data: dir.join("data.yaml"),
        imgsz: 256,
        batch: 32,
        workers: 2,
        options: ValOptions::default(),
        int8: None,
        device: Device::Cpu,
    };
    let report = run_val(&run, &mut |_| {}).unwrap();
    let got = &report.outcome;
    let want = &expected["val_py"]["all"];
    let close = |name: &str, ours: f64, theirs: &Value| {
        let theirs = theirs.as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 0.002,
            "{name}: ours {ours:.5}, val.py {theirs:.5}"
        );
    };
    assert_eq!(got.images as u64, want["images"].as_u64().unwrap());
    assert_eq!(got.labels as u64, want["instances"].as_u64().unwrap());
    close("P", got.metrics.mp, &want["p"]);
    close("R", got.metrics.mr, &want["r"]);
    close("mAP50", got.metrics.map50, &want["map50"]);
    close("mAP50-95", got.metrics.map, &want["map50_95"]);
    for class in expected["val_py"]["classes"].as_array().unwrap() {
        let index = class["index"].as_u64().unwrap() as usize;
        let name = class["class"].as_str().unwrap();
        let ours = got
            .metrics
            .classes
            .iter()
            .find(|c| c.class == index)
            .unwrap();
        assert_eq!(ours.labels as u64, class["instances"].as_u64().unwrap());
        close(&format!("{name} P"), ours.precision, &class["p"]);
        close(&format!("{name} R"), ours.recall, &class["r"]);
        close(&format!("{name} mAP50"), ours.ap50(), &class["map50"]);
        close(
            &format!("{name} mAP50-95"),
            ours.ap50_95(),
            &class["map50_95"],
        );
    }
}
