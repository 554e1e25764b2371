//! What the loss tests share: reading the fixtures' JSON into gains and tensors, and the
//! tolerance they compare with torch at.

use actyolo::train::loss::LossGains;
use candle_core::{Device, Tensor};
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
    ours.iter().zip(&torch).map(|(o, t)| (o - t).abs() - 1e-5 * (1.0 + t.abs())).fold(f32::MIN, f32::max)
}
