//! Simulated INT8 quantization against onnxruntime's `quantize_static`
//! (`tools/gen_int8_fixtures.py`): the input scale and zero point calibrated with MinMax,
//! and a convolution's output with per-channel int8 weights, a uint8 input and an int32 bias.

use candle_core::{Device, Tensor};
use serde::Deserialize;

use actyolo::ops::conv2d::{conv2d_with_bias, Conv2dParams};
use actyolo::ops::fake_quant::{observe, quantized, Calibration, Observed, Uint8};

#[derive(Deserialize)]
struct Fixture {
    weight: Vec<f32>,
    bias: Vec<f32>,
    calibration: Vec<Vec<f32>>,
    input: Vec<f32>,
    input_scale: f32,
    input_zero_point: u8,
    output: Vec<f32>,
}

fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
}

#[test]
fn a_quantized_convolution_matches_onnxruntime() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/int8.json"
    ))
    .unwrap();
    let f: Fixture = serde_json::from_str(&text).unwrap();
    let (w, b) = (tensor(&f.weight, &[4, 3, 3, 3]), tensor(&f.bias, &[4]));
    let params = Conv2dParams {
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    let conv = |x: &Tensor| conv2d_with_bias(x, &w, &b, params).unwrap();
    let mut seen: Vec<Observed> = Vec::new();
    for x in &f.calibration {
        observe(&mut seen, false, || conv(&tensor(x, &[1, 3, 6, 6])));
    }
    assert_eq!(seen.len(), 1);
    let (min, max) = seen[0].range(Calibration::MinMax);
    let input = Uint8::from_range(min, max);
    // The scale to f32 rounding, the zero point exactly.
    assert!(
        (input.scale - f.input_scale).abs() <= 1e-6 * f.input_scale,
        "scale {} vs {}",
        input.scale,
        f.input_scale
    );
    assert_eq!(input.zero_point, f.input_zero_point);
    let y = quantized(&[input], &mut Vec::new(), || {
        conv(&tensor(&f.input, &[1, 3, 6, 6]))
    });
    let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // The same dequantized operands in f32: the sums differ only in their order.
    let worst = y
        .iter()
        .zip(&f.output)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "output differs by {worst}");
    // And quantization did something: the float convolution is further away.
    let float = conv(&tensor(&f.input, &[1, 3, 6, 6]));
    let float = float.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let float_gap = float
        .iter()
        .zip(&f.output)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(float_gap > 1e-3, "float and INT8 agree to {float_gap}");
}

#[test]
fn ranges_from_calibration() {
    // onnxruntime widens the range to include 0, and a constant input gets scale 1.
    assert_eq!(
        Uint8::from_range(0.5, 2.0),
        Uint8 {
            scale: 2.0 / 255.0,
            zero_point: 0
        }
    );
    assert_eq!(Uint8::from_range(-1.0, -1.0).zero_point, 255);
    assert_eq!(
        Uint8::from_range(0.0, 0.0),
        Uint8 {
            scale: 1.0,
            zero_point: 0
        }
    );
    // Percentiles clip the outliers the minimum and maximum keep.
    let mut seen: Vec<Observed> = Vec::new();
    let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
    values[17] = 1000.0;
    let x = Tensor::from_vec(values, (1, 1, 100, 100), &Device::Cpu).unwrap();
    let w = Tensor::ones((1, 1, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let params = Conv2dParams {
        stride: 1,
        padding: 0,
        dilation: 1,
        groups: 1,
    };
    observe(&mut seen, true, || {
        actyolo::ops::conv2d::conv2d(&x, &w, params).unwrap()
    });
    assert_eq!(seen[0].range(Calibration::MinMax), (0.0, 1000.0));
    let (lo, hi) = seen[0].range(Calibration::Percentile(99.9));
    assert!(lo < 0.002 && (0.998..1.0).contains(&hi), "{lo} {hi}");
}
