//! yolov7's OTA loss (`YoloLoss` with `Assignment::Ota`) against a re-implementation of
//! yolov7's `ComputeLossOTA` (WongKinYiu/yolov7 utils/loss.py, commit a207844): the
//! positives it picks, and the total, (box, obj, cls) and the gradient of the total with
//! respect to every prediction map, to |ours − torch| <= 1e-5 + 1e-5·|torch| (torch in
//! float64 from the float32 inputs). Fixtures: tools/gen_ota_fixtures.py.

mod loss_support;

use std::collections::HashMap;

use actyolo::train::assign::targets_from_tensor;
use actyolo::train::loss::{Assignment, LossError, YoloLoss};
use actyolo::train::ota;
use candle_core::{Device, Tensor};
use loss_support::{assert_matches_torch, case_targets, close, gains, tensor};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loss");
const LEVELS: usize = 3;

fn fixtures() -> (Vec<Value>, HashMap<String, Tensor>) {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/ota.json")).unwrap())
            .unwrap();
    let tensors =
        candle_core::safetensors::load(format!("{FIXTURES}/ota.safetensors"), &Device::Cpu)
            .unwrap();
    (json["cases"].as_array().unwrap().clone(), tensors)
}

fn strides(case: &Value) -> Vec<f32> {
    case["strides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap() as f32)
        .collect()
}

fn anchors(case: &Value) -> Tensor {
    tensor(&case["anchors"], &[LEVELS, 3, 2])
}

fn nc(case: &Value) -> usize {
    case["nc"].as_u64().unwrap() as usize
}

fn case_preds(case: &Value, tensors: &HashMap<String, Tensor>) -> Vec<Tensor> {
    let group = case["preds"].as_str().unwrap();
    (0..LEVELS)
        .map(|i| tensors[&format!("preds.{group}.{i}")].clone())
        .collect()
}

fn ota_loss(case: &Value) -> YoloLoss {
    YoloLoss::new(gains(&case["scaled_hyp"]), nc(case), &anchors(case))
        .unwrap()
        .with_assignment(Assignment::Ota {
            strides: strides(case),
        })
        .unwrap()
}

#[test]
fn ota_picks_yolov7s_positives() {
    let (cases, tensors) = fixtures();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let preds = case_preds(case, &tensors);
        let targets =
            targets_from_tensor(&case_targets(case), preds[0].dim(0).unwrap(), nc(case)).unwrap();
        let anchors: Vec<Vec<[f32; 2]>> = anchors(case)
            .to_vec3::<f32>()
            .unwrap()
            .into_iter()
            .map(|l| l.into_iter().map(|a| [a[0], a[1]]).collect())
            .collect();
        let anchor_t = case["scaled_hyp"]["anchor_t"].as_f64().unwrap() as f32;
        let ours = ota::assign(&preds, &targets, &anchors, &strides(case), anchor_t).unwrap();
        for (level, (ours, torch)) in ours
            .iter()
            .zip(case["positives"].as_array().unwrap())
            .enumerate()
        {
            let cells: Vec<[usize; 5]> = ours
                .iter()
                .map(|p| [p.image, p.anchor, p.gy, p.gx, p.class])
                .collect();
            let expected: Vec<[usize; 5]> = torch["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| std::array::from_fn(|i| c[i].as_u64().unwrap() as usize))
                .collect();
            assert_eq!(
                cells, expected,
                "{name}: level {level} positives [image, anchor, gy, gx, class]"
            );
            for (p, tbox) in ours.iter().zip(torch["tbox"].as_array().unwrap()) {
                let off = p
                    .tbox
                    .iter()
                    .enumerate()
                    .any(|(i, &v)| !close(v, tbox[i].as_f64().unwrap()));
                assert!(
                    !off,
                    "{name}: level {level} regression target {:?} vs torch {tbox}",
                    p.tbox
                );
            }
        }
    }
}

#[test]
fn ota_loss_and_gradients_match_yolov7() {
    let (cases, tensors) = fixtures();
    for case in &cases {
        assert_matches_torch(case, &tensors, &ota_loss(case), &case_preds(case, &tensors));
    }
}

#[test]
fn ota_differs_from_yolov5s_assignment_on_the_same_inputs() {
    let (cases, tensors) = fixtures();
    let case = &cases[0];
    let preds = case_preds(case, &tensors);
    let yolov5 = YoloLoss::new(gains(&case["scaled_hyp"]), nc(case), &anchors(case)).unwrap();
    let (v5, _) = yolov5.compute(&preds, &case_targets(case)).unwrap();
    let (with_ota, _) = ota_loss(case).compute(&preds, &case_targets(case)).unwrap();
    let (v5, with_ota) = (
        v5.to_scalar::<f32>().unwrap(),
        with_ota.to_scalar::<f32>().unwrap(),
    );
    assert!(
        (v5 - with_ota).abs() > 1e-3,
        "YOLOv5's {v5} vs OTA's {with_ota}"
    );
}

#[test]
fn ota_needs_one_positive_stride_per_level() {
    let (cases, _) = fixtures();
    let loss = YoloLoss::new(gains(&cases[0]["scaled_hyp"]), 3, &anchors(&cases[0])).unwrap();
    for strides in [
        vec![8.0, 16.0],
        vec![8.0, 0.0, 32.0],
        vec![8.0, f32::NAN, 32.0],
    ] {
        let error = loss
            .clone()
            .with_assignment(Assignment::Ota { strides })
            .unwrap_err();
        assert!(
            matches!(error, LossError::Strides { levels: 3, .. }),
            "{error}"
        );
    }
}

#[test]
fn ota_without_targets_leaves_only_the_objectness_loss() {
    let (cases, tensors) = fixtures();
    let preds = case_preds(&cases[0], &tensors);
    let empty = Tensor::zeros((0, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    let (total, items) = ota_loss(&cases[0]).compute(&preds, &empty).unwrap();
    assert_eq!((items[0], items[2]), (0.0, 0.0));
    assert!(items[1] > 0.0 && total.to_scalar::<f32>().unwrap().is_finite());
}
