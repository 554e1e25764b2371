//! Detection metrics against the reference implementations on the same "weak model"
//! predictions (fixtures: tools/gen_metrics_fixtures.py):
//! - ultralytics' convention (val.py `process_batch` + `ap_per_class`) to 1e-6;
//! - COCO's convention (pycocotools COCOeval, bbox) to 1e-6, and the COCO JSON we write
//!   equals the JSON pycocotools scored.
//!
//! Plus hand-made cases for box_iou, compute_ap and the COCO evaluation.

use actyolo::eval::coco::{
    evaluate_bbox, predictions_json, xyxy_to_xywh, CocoAnnotation, CocoCategory, CocoDataset,
    CocoDetection, CocoImage, CocoStats,
};
use actyolo::eval::metrics::{box_iou, compute_ap, iou_thresholds, DetectionStats, Label};
use actyolo::eval::Detection;
use candle_core::Device;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics");

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

/// The fixture's boxes: (image, class, xyxy, score; 0 for labels).
struct Inputs {
    labels: Vec<(usize, usize, [f32; 4])>,
    preds: Vec<(usize, usize, [f32; 4], f32)>,
}

fn inputs() -> Inputs {
    let t = candle_core::safetensors::load(format!("{FIXTURES}/inputs.safetensors"), &Device::Cpu)
        .unwrap();
    let boxes = |k: &str| -> Vec<[f32; 4]> {
        t[k].to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect()
    };
    let ints = |k: &str| -> Vec<usize> {
        t[k].to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as usize)
            .collect()
    };
    let conf: Vec<f32> = t["pred_conf"].to_vec1::<f32>().unwrap();
    let (gi, gc, gb) = (ints("gt_image"), ints("gt_class"), boxes("gt_boxes"));
    let (pi, pc, pb) = (ints("pred_image"), ints("pred_class"), boxes("pred_boxes"));
    Inputs {
        labels: (0..gi.len()).map(|k| (gi[k], gc[k], gb[k])).collect(),
        preds: (0..pi.len())
            .map(|k| (pi[k], pc[k], pb[k], conf[k]))
            .collect(),
    }
}

fn assert_close(ours: f64, theirs: &Value, what: &str) {
    let theirs = theirs.as_f64().unwrap();
    assert!(
        (ours - theirs).abs() <= 1e-6,
        "{what}: ours {ours} vs reference {theirs}"
    );
}

#[test]
fn iou_thresholds_are_torch_linspace_in_f32() {
    let expected: Vec<f32> = json("expected.json")["iou_thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(iou_thresholds().to_vec(), expected);
}

#[test]
fn ultralytics_convention_matches_val_py() {
    let expected = json("expected.json");
    let n_images = expected["images"].as_array().unwrap().len();
    let inputs = inputs();
    let mut stats = DetectionStats::new();
    for image in 0..n_images {
        let mut detections: Vec<Detection> = inputs
            .preds
            .iter()
            .filter(|p| p.0 == image)
            .map(|&(_, class, bbox, conf)| Detection { bbox, conf, class })
            .collect();
        detections.sort_by(|a, b| b.conf.total_cmp(&a.conf)); // NMS order
        let labels: Vec<Label> = inputs
            .labels
            .iter()
            .filter(|l| l.0 == image)
            .map(|&(_, class, bbox)| Label { class, bbox })
            .collect();
        stats.add_image(&detections, &labels);
    }
    let ours = stats.summarize();
    let theirs = &expected["ultralytics"];
    let classes = theirs["classes"].as_array().unwrap();
    assert_eq!(ours.classes.len(), classes.len());
    for (c, t) in ours.classes.iter().zip(classes) {
        let name = format!("class {}", c.class);
        assert_eq!(c.class as u64, t["class"].as_u64().unwrap());
        assert_eq!(
            c.labels as u64,
            t["labels"].as_u64().unwrap(),
            "{name} labels"
        );
        for (value, key) in [
            (c.precision, "p"),
            (c.recall, "r"),
            (c.f1, "f1"),
            (c.tp, "tp"),
            (c.fp, "fp"),
        ] {
            assert_close(value, &t[key], &format!("{name} {key}"));
        }
        for (k, ap) in c.ap.iter().enumerate() {
            assert_close(*ap, &t["ap"][k], &format!("{name} AP at threshold {k}"));
        }
    }
    for (value, key) in [
        (ours.mp, "mp"),
        (ours.mr, "mr"),
        (ours.map50, "map50"),
        (ours.map, "map"),
    ] {
        assert_close(value, &theirs[key], key);
    }
}

fn fixture_dataset() -> CocoDataset {
    let expected = json("expected.json");
    let images = expected["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| CocoImage {
            id: i["id"].as_u64().unwrap(),
            file_name: i["file_name"].as_str().unwrap().to_string(),
            width: i["width"].as_u64().unwrap() as u32,
            height: i["height"].as_u64().unwrap() as u32,
        })
        .collect();
    let categories = expected["names"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, n)| CocoCategory {
            id: k as u64,
            name: n.as_str().unwrap().to_string(),
        })
        .collect();
    let annotations = inputs()
        .labels
        .iter()
        .map(|&(image, class, bbox)| CocoAnnotation {
            image_id: image as u64,
            category_id: class as u64,
            bbox: xyxy_to_xywh(bbox),
        })
        .collect();
    CocoDataset {
        images,
        categories,
        annotations,
    }
}

fn fixture_detections() -> Vec<CocoDetection> {
    inputs()
        .preds
        .iter()
        .map(|&(image, class, bbox, score)| CocoDetection {
            image_id: image as u64,
            category_id: class as u64,
            bbox: xyxy_to_xywh(bbox),
            score: score as f64,
        })
        .collect()
}

#[test]
fn coco_convention_matches_pycocotools() {
    let expected = json("expected.json");
    let stats = evaluate_bbox(&fixture_dataset(), &fixture_detections()).unwrap();
    for (ours, key) in [(stats.map, "map"), (stats.map50, "map50")] {
        let theirs = expected["coco"][key].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 0.002,
            "{key}: ours {ours} vs pycocotools {theirs}, beyond 0.002"
        );
        assert_close(ours, &expected["coco"][key], key);
    }
}

/// Equal JSON values, numbers to 1e-12 relative (the files hold Python's float repr).
fn assert_same_json(ours: &Value, theirs: &Value, path: &str) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{path}: {a} vs {b}"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: lengths");
            a.iter()
                .zip(b)
                .enumerate()
                .for_each(|(i, (a, b))| assert_same_json(a, b, &format!("{path}[{i}]")));
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{path}: keys"
            );
            a.iter()
                .for_each(|(k, v)| assert_same_json(v, &b[k], &format!("{path}.{k}")));
        }
        _ => assert_eq!(ours, theirs, "{path}"),
    }
}

#[test]
fn coco_json_is_what_pycocotools_scored() {
    let gt: Value = serde_json::from_str(&fixture_dataset().to_json().unwrap()).unwrap();
    assert_same_json(&gt, &json("gt.json"), "gt");
    let preds: Value =
        serde_json::from_str(&predictions_json(&fixture_detections()).unwrap()).unwrap();
    assert_same_json(&preds, &json("predictions.json"), "predictions");
}

#[test]
fn box_iou_on_hand_made_boxes() {
    let a = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0]];
    let b = [
        [0.0, 0.0, 10.0, 10.0],
        [5.0, 0.0, 15.0, 10.0],
        [20.0, 20.0, 30.0, 30.0],
    ];
    let iou = box_iou(&a, &b);
    let expected = [[1.0, 50.0 / 150.0, 0.0], [16.0 / 100.0, 0.0, 0.0]];
    for (row, want) in iou.iter().zip(expected) {
        for (got, want) in row.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{iou:?}");
        }
    }
}

#[test]
fn compute_ap_on_hand_made_curves() {
    // A perfect detector: ultralytics' 101-point trapezoid ends at precision 0 on recall
    // 1 (the sentinel), so it reads 0.995, not 1 (the familiar ceiling of YOLOv5's mAP50).
    assert!((compute_ap(&[0.5, 1.0], &[1.0, 1.0]) - 0.995).abs() < 1e-12);
    // Only false positives.
    assert_eq!(compute_ap(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
    // Half the objects found, all correct: precision 1 up to recall 0.5, then the line to
    // the sentinel (recall 1, precision 0) adds a triangle: 0.75.
    assert!((compute_ap(&[0.5], &[1.0]) - 0.75).abs() < 1e-12);
}

fn square(x: f32) -> [f32; 4] {
    [x, x, x + 10.0, x + 10.0]
}

#[test]
fn perfect_and_absent_detections_in_both_conventions() {
    let labels: Vec<Label> = [0.0, 20.0, 40.0]
        .iter()
        .map(|&x| Label {
            class: 1,
            bbox: square(x),
        })
        .collect();
    let perfect: Vec<Detection> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| Detection {
            bbox: l.bbox,
            conf: 0.9 - i as f32 * 0.1,
            class: 1,
        })
        .collect();
    let mut stats = DetectionStats::new();
    stats.add_image(&perfect, &labels);
    let m = stats.summarize();
    assert!(
        (m.map50 - 0.995).abs() < 1e-12
            && (m.map - 0.995).abs() < 1e-12
            && m.mp == 1.0
            && m.mr == 1.0,
        "{m:?}"
    );

    let mut nothing = DetectionStats::new();
    nothing.add_image(&[], &labels);
    assert_eq!(
        (nothing.summarize().map50, nothing.summarize().map),
        (0.0, 0.0)
    );

    let dataset = CocoDataset {
        images: vec![CocoImage {
            id: 1,
            file_name: "a.jpg".into(),
            width: 64,
            height: 64,
        }],
        categories: vec![CocoCategory {
            id: 1,
            name: "thing".into(),
        }],
        annotations: labels
            .iter()
            .map(|l| CocoAnnotation {
                image_id: 1,
                category_id: 1,
                bbox: xyxy_to_xywh(l.bbox),
            })
            .collect(),
    };
    let coco: Vec<CocoDetection> = perfect
        .iter()
        .map(|d| CocoDetection {
            image_id: 1,
            category_id: 1,
            bbox: xyxy_to_xywh(d.bbox),
            score: d.conf as f64,
        })
        .collect();
    assert_eq!(
        evaluate_bbox(&dataset, &coco).unwrap(),
        CocoStats {
            map: 1.0,
            map50: 1.0
        }
    );
    assert_eq!(
        evaluate_bbox(&dataset, &[]).unwrap(),
        CocoStats {
            map: 0.0,
            map50: 0.0
        }
    );
    let stray = CocoDetection {
        image_id: 9,
        ..coco[0]
    };
    assert!(evaluate_bbox(&dataset, &[stray]).is_err());
}
