//! Fixed inputs shared by the kernel, gradient and device-path tests.
// Each test binary that includes this uses part of it.
#![allow(dead_code)]

use candle_core::{Device, Tensor};

/// A deterministic tensor of values in [-1, 1), different per `seed`: a hash pattern
/// without runs of equal values.
pub fn pattern(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u64 + 1) * 2654435761 + seed * 40503) % 10007) as f32 / 5003.5 - 1.0)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Three boxes for a batch of 2 images, 3 classes: (image, class, x, y, w, h), normalised.
pub fn three_boxes() -> Tensor {
    Tensor::from_vec(
        vec![
            0f32, 1., 0.5, 0.5, 0.3, 0.4, 1., 2., 0.3, 0.6, 0.2, 0.2, 0., 0., 0.7, 0.3, 0.5, 0.5,
        ],
        (3, 6),
        &Device::Cpu,
    )
    .unwrap()
}
