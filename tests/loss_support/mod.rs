//! What the loss tests share: reading the fixtures' JSON into gains and tensors, and the
//! tolerance they compare with torch at.

use std::collections::HashMap;

use actyolo::train::loss::{LossGains, YoloLoss};
use candle_core::{Device, Tensor, Var};
use serde_json::Value;

/// |ours − torch| <= 1e-5 + 1e-5·|torch|.
pub fn close(ours: f32, torch: f64) -> bool {
    (ours as f64 - torch).abs() <= 1e-5 + 1e-5 * torch.abs()
}

/// The loss gains of a fixture's hyp object (keys as in `hyp.*.yaml`).
pub fn gains(h: &Value) -> LossGains {
    let g = |k: &str| h[k].as_f64().unwrap();
    LossGains {
        box_gain: g("box"),
        cls_gain: g("cls"),
        obj_gain: g("obj"),
        cls_pw: g("cls_pw"),
        obj_pw: g("obj_pw"),
        anchor_t: g("anchor_t"),
        fl_gamma: g("fl_gamma"),
        label_smoothing: g("label_smoothing"),
    }
}

/// A nested JSON array of numbers as an f32 tensor of `shape`.
pub fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    fn flatten(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            n => out.push(n.as_f64().unwrap() as f32),
        }
    }
    let mut data = Vec::new();
    flatten(v, &mut data);
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// A case's targets, (n, 6) rows of [image, class, cx, cy, w, h].
pub fn case_targets(case: &Value) -> Tensor {
    let n = case["targets"].as_array().unwrap().len();
    tensor(&case["targets"], &[n, 6])
}

/// The largest amount by which a gradient exceeds |ours − torch| <= 1e-5·(1 + |torch|);
/// at most 0 when every element is within it.
pub fn gradient_excess(ours: &Tensor, torch: &Tensor) -> f32 {
    let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let torch = torch.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(ours.len(), torch.len(), "gradient sizes differ");
    ours.iter()
        .zip(&torch)
        .map(|(o, t)| (o - t).abs() - 1e-5 * (1.0 + t.abs()))
        .fold(f32::MIN, f32::max)
}

/// One golden case: `loss` on `preds` (one tensor per level) and the case's targets gives
/// PyTorch's total, its box/obj/cls items (within `close`) and its gradients per level
/// (`grad.{name}.{level}`, within `gradient_excess`).
pub fn assert_matches_torch(
    case: &Value,
    tensors: &HashMap<String, Tensor>,
    loss: &YoloLoss,
    preds: &[Tensor],
) {
    let name = case["name"].as_str().unwrap();
    let vars: Vec<Var> = preds.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (total, items) = loss.compute(&inputs, &case_targets(case)).unwrap();
    let expected = case["loss"].as_f64().unwrap();
    let ours = total.to_scalar::<f32>().unwrap();
    assert!(
        close(ours, expected),
        "{name}: loss {ours} vs torch {expected}"
    );
    for (k, what) in ["box", "obj", "cls"].iter().enumerate() {
        let expected = case["items"][k].as_f64().unwrap();
        assert!(
            close(items[k], expected),
            "{name}: {what} {} vs torch {expected}",
            items[k]
        );
    }
    let grads = total.backward().unwrap();
    for (i, var) in vars.iter().enumerate() {
        let worst = gradient_excess(
            grads.get(var).unwrap(),
            &tensors[&format!("grad.{name}.{i}")],
        );
        assert!(
            worst <= 0.0,
            "{name}: level {i} gradient off by {worst} beyond the tolerance"
        );
    }
}
