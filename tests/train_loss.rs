//! YOLOv5's loss against ultralytics' `ComputeLoss` (v7.0): total, (box, obj, cls) and the
//! gradient of the total with respect to every prediction map, to
//! |ours − torch| <= 1e-5 + 1e-5·|torch| (torch in float64 from the float32 inputs).
//! Fixtures: tools/gen_loss_fixtures.py.

mod loss_support;

use std::collections::HashMap;

use actyolo::train::loss::{scale_loss_gains, LossError, YoloLoss};
use candle_core::{Device, Tensor};
use loss_support::{assert_matches_torch, case_targets, gains, tensor};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loss");

fn fixtures() -> (Vec<Value>, HashMap<String, Tensor>) {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/loss.json")).unwrap())
            .unwrap();
    let tensors =
        candle_core::safetensors::load(format!("{FIXTURES}/loss.safetensors"), &Device::Cpu)
            .unwrap();
    (json["cases"].as_array().unwrap().clone(), tensors)
}

fn case_loss(case: &Value) -> YoloLoss {
    let nl = case["levels"].as_u64().unwrap() as usize;
    let anchors = tensor(&case["anchors"], &[nl, 3, 2]);
    YoloLoss::new(
        gains(&case["scaled_hyp"]),
        case["nc"].as_u64().unwrap() as usize,
        &anchors,
    )
    .unwrap()
}

#[test]
fn gains_are_scaled_as_train_py_scales_them() {
    for case in fixtures().0 {
        let nl = case["levels"].as_u64().unwrap() as usize;
        let nc = case["nc"].as_u64().unwrap() as usize;
        let imgsz = case["imgsz"].as_u64().unwrap() as usize;
        let ours = scale_loss_gains(&gains(&case["hyp"]), nl, nc, imgsz);
        let python = gains(&case["scaled_hyp"]);
        // serde_json (without float_roundtrip) may read the last bit of a float differently.
        let same = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b.abs();
        assert!(
            same(ours.box_gain, python.box_gain)
                && same(ours.cls_gain, python.cls_gain)
                && same(ours.obj_gain, python.obj_gain),
            "{}: {ours:?} vs train.py's {python:?}",
            case["name"]
        );
        assert_eq!(
            (ours.cls_pw, ours.obj_pw, ours.anchor_t),
            (python.cls_pw, python.obj_pw, python.anchor_t)
        );
    }
}

#[test]
fn loss_and_gradients_match_ultralytics() {
    let (cases, tensors) = fixtures();
    for case in &cases {
        let group = case["preds"].as_str().unwrap();
        let nl = case["levels"].as_u64().unwrap() as usize;
        let preds: Vec<Tensor> = (0..nl)
            .map(|i| tensors[&format!("preds.{group}.{i}")].clone())
            .collect();
        assert_matches_torch(case, &tensors, &case_loss(case), &preds);
    }
}

#[test]
fn no_targets_leaves_only_the_objectness_loss() {
    let (cases, tensors) = fixtures();
    let preds: Vec<Tensor> = (0..3)
        .map(|i| tensors[&format!("preds.nc3.{i}")].clone())
        .collect();
    let empty = Tensor::zeros((0, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    let (total, items) = case_loss(&cases[0]).compute(&preds, &empty).unwrap();
    assert_eq!((items[0], items[2]), (0.0, 0.0));
    assert!(items[1] > 0.0 && total.to_scalar::<f32>().unwrap().is_finite());
}

#[test]
fn a_vanishing_predicted_height_keeps_the_gradient_finite() {
    // Logits of -100 for every box height: σ underflows, h is 0, and CIoU's w / h is
    // infinite. The case that made a demo training diverge (loss finite, gradient NaN).
    let (cases, tensors) = fixtures();
    let preds: Vec<candle_core::Var> = (0..3)
        .map(|i| {
            let p = &tensors[&format!("preds.nc3.{i}")];
            let height = Tensor::full(-100f32, p.dims(), &Device::Cpu).unwrap();
            let is_height = Tensor::arange(0u32, p.dim(4).unwrap() as u32, &Device::Cpu)
                .unwrap()
                .eq(3u32)
                .unwrap()
                .broadcast_as(p.dims())
                .unwrap();
            candle_core::Var::from_tensor(&is_height.where_cond(&height, p).unwrap()).unwrap()
        })
        .collect();
    let inputs: Vec<Tensor> = preds.iter().map(|v| v.as_tensor().clone()).collect();
    let (total, _) = case_loss(&cases[0])
        .compute(&inputs, &case_targets(&cases[0]))
        .unwrap();
    let grads = total.backward().unwrap();
    for (level, p) in inputs.iter().enumerate() {
        let g = grads
            .get(p)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            g.iter().all(|v| v.is_finite()),
            "level {level}: a non-finite gradient"
        );
    }
}

#[test]
fn mismatched_inputs_are_errors() {
    let (cases, tensors) = fixtures();
    let loss = case_loss(&cases[0]);
    let preds: Vec<Tensor> = (0..3)
        .map(|i| tensors[&format!("preds.nc3.{i}")].clone())
        .collect();
    let targets = case_targets(&cases[0]);
    assert!(matches!(
        loss.compute(&preds[..2], &targets),
        Err(LossError::Levels {
            expected: 3,
            got: 2
        })
    ));
    let one_class: Vec<Tensor> = (0..2)
        .map(|i| tensors[&format!("preds.nc1.{i}")].clone())
        .collect();
    let with_third = vec![
        one_class[0].clone(),
        one_class[1].clone(),
        one_class[1].clone(),
    ];
    assert!(matches!(
        loss.compute(&with_third, &targets),
        Err(LossError::PredShape { level: 0, .. })
    ));
    let bad_image = Tensor::new(&[[7f32, 0.0, 0.5, 0.5, 0.1, 0.1]], &Device::Cpu).unwrap();
    assert!(matches!(
        loss.compute(&preds, &bad_image),
        Err(LossError::Targets(_))
    ));
}
