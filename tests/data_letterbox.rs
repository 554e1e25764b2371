//! letterbox against ultralytics' (with OpenCV's INTER_LINEAR resize), on the fixtures made by
//! tools/gen_letterbox_fixtures.py: shape, ratio and padding exactly, and every pixel
//! exactly too (tolerance 0: the resize reproduces OpenCV 5.0's fixed-point arithmetic).

use actyolo::data::{image_to_tensor, letterbox};
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn to_image(tensor: &Tensor) -> RgbImage {
    let (h, w, _) = tensor.dims3().unwrap();
    let bytes = tensor.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    RgbImage::from_raw(w as u32, h as u32, bytes).unwrap()
}

#[test]
fn letterbox_matches_ultralytics() {
    let tensors =
        candle_core::safetensors::load(format!("{FIXTURES}/letterbox.safetensors"), &Device::Cpu)
            .unwrap();
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/letterbox.json")).unwrap(),
    )
    .unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let number = |v: &Value| v.as_u64().unwrap() as u32;
        let new_shape = (number(&case["new_shape"][0]), number(&case["new_shape"][1]));
        let source = to_image(&tensors[&format!("{name}.src")]);
        let want = to_image(&tensors[&format!("{name}.out")]);

        let boxed = letterbox(
            &source,
            new_shape,
            number(&case["stride"]),
            case["auto"].as_bool().unwrap(),
            case["scaleup"].as_bool().unwrap(),
        )
        .unwrap();

        assert_eq!(boxed.image.dimensions(), want.dimensions(), "{name}: shape");
        // serde_json's default float parsing can be one ulp off Python's repr.
        let ratio = case["ratio"].as_f64().unwrap();
        assert!(
            (boxed.ratio - ratio).abs() <= 1e-12,
            "{name}: ratio {} vs {ratio}",
            boxed.ratio
        );
        assert_eq!(
            boxed.pad,
            (
                case["pad"][0].as_f64().unwrap(),
                case["pad"][1].as_f64().unwrap()
            ),
            "{name}: padding"
        );
        let diffs: Vec<i32> = boxed
            .image
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let differing = diffs.iter().filter(|&&d| d > 0).count();
        let max = diffs.iter().copied().max().unwrap_or(0);
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} values differ, by up to {max}",
            diffs.len()
        );
    }
}

#[test]
fn empty_images_and_targets_are_errors() {
    assert!(letterbox(&RgbImage::new(0, 10), (64, 64), 32, true, true).is_err());
    assert!(letterbox(&RgbImage::new(10, 10), (0, 64), 32, true, true).is_err());
    assert!(letterbox(&RgbImage::new(10, 10), (64, 64), 0, true, true).is_err());
}

#[test]
fn a_thin_image_keeps_one_pixel() {
    let boxed = letterbox(&RgbImage::new(2000, 1), (64, 64), 32, true, true).unwrap();
    assert_eq!(boxed.image.dimensions(), (64, 32));
}

#[test]
fn tensor_is_chw_in_0_1() {
    let mut image = RgbImage::new(3, 2);
    image.put_pixel(2, 1, image::Rgb([255, 51, 0]));
    let t = image_to_tensor(&image, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[1, 3, 2, 3]);
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Channel planes of 6 pixels each; pixel (x=2, y=1) is the last of each plane.
    assert_eq!((v[5], v[11], v[17]), (1.0, 0.2, 0.0));
}
