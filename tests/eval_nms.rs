//! non_max_suppression and scale_boxes against ultralytics' own, on the fixtures made by
//! tools/gen_nms_fixtures.py: the same boxes kept, in the same order, with the same values.

use std::collections::HashMap;

use actyolo::eval::{non_max_suppression, scale_boxes, Detection, NmsOptions};
use candle_core::{Device, Tensor};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixtures() -> (HashMap<String, Tensor>, Value) {
    let tensors =
        candle_core::safetensors::load(format!("{FIXTURES}/nms.safetensors"), &Device::Cpu)
            .unwrap();
    let json = std::fs::read_to_string(format!("{FIXTURES}/nms.json")).unwrap();
    (tensors, serde_json::from_str(&json).unwrap())
}

fn rows(tensor: &Tensor) -> Vec<Vec<f32>> {
    tensor.to_vec2::<f32>().unwrap()
}

/// |a - b| within 1e-5, relative to the value's size (coordinates run to hundreds of pixels).
fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * b.abs().max(1.0)
}

fn options(case: &Value) -> NmsOptions {
    NmsOptions {
        conf_thres: case["conf_thres"].as_f64().unwrap(),
        iou_thres: case["iou_thres"].as_f64().unwrap(),
        classes: case["classes"]
            .as_array()
            .map(|c| c.iter().map(|v| v.as_u64().unwrap() as usize).collect()),
        agnostic: case["agnostic"].as_bool().unwrap(),
        multi_label: case["multi_label"].as_bool().unwrap(),
        max_det: case["max_det"].as_u64().unwrap() as usize,
    }
}

fn assert_same(name: &str, ours: &[Detection], theirs: &[Vec<f32>]) {
    assert_eq!(ours.len(), theirs.len(), "{name}: number of kept boxes");
    for (k, (d, want)) in ours.iter().zip(theirs).enumerate() {
        let got = [
            d.bbox[0],
            d.bbox[1],
            d.bbox[2],
            d.bbox[3],
            d.conf,
            d.class as f32,
        ];
        let same = got.iter().zip(want).all(|(&g, &w)| close(g, w));
        assert!(same, "{name}: box {k}: ours {got:?}, ultralytics {want:?}");
    }
}

#[test]
fn nms_matches_ultralytics() {
    let (tensors, json) = fixtures();
    let cases = json["nms"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let prediction = &tensors[case["input"].as_str().unwrap()];
        let kept = non_max_suppression(prediction, &options(case)).unwrap();
        assert_eq!(
            kept.len(),
            prediction.dim(0).unwrap(),
            "{name}: one result per image"
        );
        for (i, ours) in kept.iter().enumerate() {
            assert_same(
                &format!("{name} image {i}"),
                ours,
                &rows(&tensors[&format!("{name}.{i}")]),
            );
        }
    }
}

#[test]
fn scale_boxes_matches_ultralytics() {
    let (tensors, json) = fixtures();
    let shape = |v: &Value| {
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    };
    for case in json["scale_boxes"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ratio_pad = case["ratio_pad"].as_array().map(|rp| {
            (
                rp[0][0].as_f64().unwrap(),
                (rp[1][0].as_f64().unwrap(), rp[1][1].as_f64().unwrap()),
            )
        });
        let mut boxes: Vec<[f32; 4]> = rows(&tensors[&format!("scale.{name}.in")])
            .iter()
            .map(|r| [r[0], r[1], r[2], r[3]])
            .collect();
        scale_boxes(
            shape(&case["img1_shape"]),
            boxes.iter_mut(),
            shape(&case["img0_shape"]),
            ratio_pad,
        );
        let want = rows(&tensors[&format!("scale.{name}.out")]);
        assert_eq!(boxes.len(), want.len());
        for (got, want) in boxes.iter().zip(&want) {
            assert!(
                got.iter().zip(want).all(|(&g, &w)| close(g, w)),
                "{name}: ours {got:?}, ultralytics {want:?}"
            );
        }
    }
}

#[test]
fn thresholds_outside_0_1_are_errors() {
    let prediction = Tensor::zeros((1, 4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    for options in [
        NmsOptions {
            conf_thres: 1.5,
            ..NmsOptions::default()
        },
        NmsOptions {
            iou_thres: -0.1,
            ..NmsOptions::default()
        },
    ] {
        assert!(non_max_suppression(&prediction, &options).is_err());
    }
}

#[test]
fn wrong_shapes_are_errors_and_empty_inputs_keep_nothing() {
    let bad = Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(non_max_suppression(&bad, &NmsOptions::default()).is_err());
    let no_classes = Tensor::zeros((1, 4, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(non_max_suppression(&no_classes, &NmsOptions::default()).is_err());
    let empty = Tensor::zeros((2, 0, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        non_max_suppression(&empty, &NmsOptions::default()).unwrap(),
        vec![vec![], vec![]]
    );
}

#[test]
fn equal_scores_keep_input_order() {
    // Two far-apart boxes and a duplicate of the first, all with the same score: the stable
    // sort keeps the first of the duplicates and both survivors in input order.
    let rows: Vec<f32> = [
        [50.0, 50.0, 20.0, 20.0],
        [200.0, 200.0, 20.0, 20.0],
        [50.0, 50.0, 20.0, 20.0],
    ]
    .iter()
    .flat_map(|b| [b[0], b[1], b[2], b[3], 0.9, 1.0, 0.0, 0.0])
    .collect();
    let prediction = Tensor::from_vec(rows, (1, 3, 8), &Device::Cpu).unwrap();
    let kept = &non_max_suppression(&prediction, &NmsOptions::default()).unwrap()[0];
    let centres: Vec<f32> = kept.iter().map(|d| (d.bbox[0] + d.bbox[2]) / 2.0).collect();
    assert_eq!(centres, vec![50.0, 200.0]);
}
