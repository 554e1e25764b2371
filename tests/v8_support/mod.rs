//! The weights of tools/gen_v8_fixtures.py, computed here as there: every weight and bias
//! from a formula of its name and element index, the BatchNorm running statistics from the
//! fixture.

use std::collections::HashMap;

use actyolo::model::build::Model;
use candle_core::{Device, Tensor};

fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// The generator's value of every element of the state_dict entry `name`.
fn formula(name: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let h = fnv1a(name);
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let u = (splitmix64(h.wrapping_add(i)) >> 11) as f64 * 2f64.powi(-53);
            let v = if name.ends_with("bn.weight") {
                0.5 + 0.5 * u
            } else if name.ends_with("bias") {
                0.2 * (2.0 * u - 1.0)
            } else {
                let fan_in = n / shape[0];
                (2.0 * u - 1.0) * (0.8 * (6.0 / fan_in as f64).sqrt())
            };
            v as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Loads the generator's weights into `model` (strictly: every name must be the
/// generator's), with the running statistics of `fixture` (`state.<name>`).
pub fn load_generated(model: &Model, fixture: &HashMap<String, Tensor>) {
    let tensors: HashMap<String, Tensor> = model
        .state_dict()
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let value = if name.ends_with("running_mean") || name.ends_with("running_var") {
                fixture
                    .get(&format!("state.{name}"))
                    .unwrap_or_else(|| panic!("{name}: not among the fixture's statistics"))
                    .clone()
            } else if name.ends_with("dfl.conv.weight") {
                t.copy().unwrap()
            } else {
                formula(&name, t.dims())
            };
            (name, value)
        })
        .collect();
    let statistics = fixture.keys().filter(|k| k.starts_with("state.")).count();
    let ours = tensors
        .keys()
        .filter(|k| k.ends_with("running_mean") || k.ends_with("running_var"))
        .count();
    assert_eq!(
        ours, statistics,
        "running statistics: ours against the fixture's"
    );
    model.load_state_dict(&tensors, true).unwrap();
}
