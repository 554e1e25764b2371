//! Output comparison shared by the model parity tests.

use std::collections::HashMap;

use actyolo::model::build::Model;
use candle_core::Tensor;

/// Largest |a - b| beyond the tolerance 1e-4 + 1e-4·|b| (<= 0 when within it).
pub fn excess(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs() - 1e-4 * (1.0 + b.abs()))
        .fold(f32::MIN, f32::max)
}

/// The model's eval outputs on `expected["images"]` against `{prefix}z` (decoded) and
/// `{prefix}raw.<level>`, within the tolerance.
pub fn check_outputs(model: &Model, expected: &HashMap<String, Tensor>, prefix: &str, what: &str) {
    let (z, raw) = model.predict(&expected["images"]).unwrap();
    let z_expected = &expected[&format!("{prefix}z")];
    assert!(
        excess(&z, z_expected) <= 0.0,
        "{what}: decoded output off by {}",
        excess(&z, z_expected)
    );
    for (i, r) in raw.iter().enumerate() {
        let e = &expected[&format!("{prefix}raw.{i}")];
        assert!(
            excess(r, e) <= 0.0,
            "{what}: raw level {i} off by {}",
            excess(r, e)
        );
    }
}
