//! Letterboxing as ultralytics' `letterbox` (utils/augmentations.py): resize keeping the
//! aspect ratio, then pad with grey to the network's shape.
//!
//! The resize is OpenCV's `cv2.resize(..., interpolation=cv2.INTER_LINEAR)` on 8-bit images,
//! which ultralytics uses, rewritten here: the `image` crate's filters are not bilinear in
//! OpenCV's sense (its Triangle filter widens when shrinking). It is bit-exact with
//! OpenCV 5.0's SIMD path (the opencv-python wheels on x86-64); OpenCV's plain C++ path
//! rounds the vertical blend once instead of twice and can differ by one grey level.

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};

/// The grey ultralytics pads with.
pub const PAD_COLOR: Rgb<u8> = Rgb([114, 114, 114]);

/// A letterboxed image with the scale and padding that map it back to the original.
#[derive(Debug, Clone)]
pub struct Letterbox {
    pub image: RgbImage,
    /// new / old size, the same for width and height.
    pub ratio: f64,
    /// (pad_w, pad_h): the padding on each side, before rounding to whole pixels.
    pub pad: (f64, f64),
}

#[derive(Debug, thiserror::Error)]
pub enum LetterboxError {
    #[error("the image is empty ({width}x{height} pixels)")]
    EmptyImage { width: u32, height: u32 },
    #[error(
        "invalid letterbox target {height}x{width} with stride {stride}: all must be positive"
    )]
    Target {
        height: u32,
        width: u32,
        stride: u32,
    },
}

/// Letterboxes `image` into `new_shape` (height, width). With `auto` the padding only
/// reaches the next multiple of `stride` (the minimum rectangle, as detect.py uses);
/// without `scaleup` small images are not enlarged.
pub fn letterbox(
    image: &RgbImage,
    new_shape: (u32, u32),
    stride: u32,
    auto: bool,
    scaleup: bool,
) -> Result<Letterbox, LetterboxError> {
    let (w0, h0) = image.dimensions();
    if w0 == 0 || h0 == 0 {
        return Err(LetterboxError::EmptyImage {
            width: w0,
            height: h0,
        });
    }
    let (new_h, new_w) = new_shape;
    if new_h == 0 || new_w == 0 || stride == 0 {
        return Err(LetterboxError::Target {
            height: new_h,
            width: new_w,
            stride,
        });
    }
    let mut ratio = (f64::from(new_h) / f64::from(h0)).min(f64::from(new_w) / f64::from(w0));
    if !scaleup {
        ratio = ratio.min(1.0);
    }
    // Python's round() is half-to-even. At least one pixel, where ultralytics would fail
    // on an extremely thin image.
    let scaled = |side: u32| ((f64::from(side) * ratio).round_ties_even() as u32).max(1);
    let (unpad_w, unpad_h) = (scaled(w0), scaled(h0));
    let mut dw = i64::from(new_w) - i64::from(unpad_w);
    let mut dh = i64::from(new_h) - i64::from(unpad_h);
    if auto {
        dw = dw.rem_euclid(i64::from(stride));
        dh = dh.rem_euclid(i64::from(stride));
    }
    let (dw, dh) = (dw as f64 / 2.0, dh as f64 / 2.0);

    let resized = if (unpad_w, unpad_h) == (w0, h0) {
        image.clone()
    } else {
        resize_linear(image, unpad_w, unpad_h)
    };
    // An odd padding puts the extra pixel at the bottom and right, as ultralytics' ±0.1.
    let side = |pad: f64, sign: f64| (pad + sign * 0.1).round_ties_even().max(0.0) as u32;
    let (top, bottom, left, right) = (side(dh, -1.0), side(dh, 1.0), side(dw, -1.0), side(dw, 1.0));
    let mut padded =
        RgbImage::from_pixel(unpad_w + left + right, unpad_h + top + bottom, PAD_COLOR);
    image::imageops::replace(&mut padded, &resized, i64::from(left), i64::from(top));
    Ok(Letterbox {
        image: padded,
        ratio,
        pad: (dw, dh),
    })
}

/// OpenCV's fixed-point weights: 1/2048ths (INTER_RESIZE_COEF_BITS = 11).
const COEF_SCALE: f32 = 2048.0;

/// The two source pixels one destination pixel blends, and their weights in 1/2048ths.
#[derive(Debug, Clone, Copy)]
struct Taps {
    index: [usize; 2],
    weight: [i32; 2],
}

/// Bilinear taps with half-pixel centres along one axis, as OpenCV computes them: the
/// source coordinate in float32, indices clamped to the edge (which replicates it).
fn linear_taps(src: u32, dst: u32) -> Vec<Taps> {
    let scale = 1.0 / (f64::from(dst) / f64::from(src));
    let last = i64::from(src) - 1;
    (0..dst)
        .map(|d| {
            let x = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let floor = x.floor();
            let w1 = ((x - floor) * COEF_SCALE).round_ties_even() as i32;
            let i = floor as i64;
            Taps {
                index: [i.clamp(0, last) as usize, (i + 1).clamp(0, last) as usize],
                weight: [COEF_SCALE as i32 - w1, w1],
            }
        })
        .collect()
}

/// Resizes like `cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`.
/// An empty source has nothing to interpolate and gives a black image.
pub fn resize_linear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.width() == 0 || image.height() == 0 {
        return RgbImage::new(width, height);
    }
    let xs = linear_taps(image.width(), width);
    let ys = linear_taps(image.height(), height);
    let rows = horizontal_pass(image, &xs);
    let row_len = width as usize * 3;
    let mut out = Vec::with_capacity(height as usize * row_len);
    for y in &ys {
        let [r0, r1] = y.index.map(|i| &rows[i * row_len..(i + 1) * row_len]);
        out.extend(
            r0.iter()
                .zip(r1)
                .map(|(&a, &b)| vertical_blend(a, b, y.weight)),
        );
    }
    RgbImage::from_raw(width, height, out).expect("the buffer holds width x height RGB pixels")
}

/// Every source row resized horizontally, values scaled by 2048.
fn horizontal_pass(image: &RgbImage, xs: &[Taps]) -> Vec<i32> {
    let mut rows = Vec::with_capacity(image.height() as usize * xs.len() * 3);
    for row in image.as_raw().chunks_exact(image.width() as usize * 3) {
        for x in xs {
            let [i0, i1] = x.index.map(|i| i * 3);
            rows.extend((0..3).map(|c| {
                i32::from(row[i0 + c]) * x.weight[0] + i32::from(row[i1 + c]) * x.weight[1]
            }));
        }
    }
    rows
}

/// OpenCV's SIMD vertical blend: each product keeps its high 16 bits after a 4-bit
/// shift, and the sum is rounded at the end (+2 >> 2).
fn vertical_blend(a: i32, b: i32, [w0, w1]: [i32; 2]) -> u8 {
    let sum = ((w0 * (a >> 4)) >> 16) + ((w1 * (b >> 4)) >> 16);
    ((sum + 2) >> 2).clamp(0, 255) as u8
}

/// A (1, 3, H, W) float32 tensor in [0, 1] from an RGB image, as detect.py's
/// `im.float() / 255`.
pub fn image_to_tensor(image: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = image.dimensions();
    let plane = w as usize * h as usize;
    let mut chw = vec![0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for (c, &v) in pixel.0.iter().enumerate() {
            chw[c * plane + i] = f32::from(v) / 255.0;
        }
    }
    Tensor::from_vec(chw, (1, 3, h as usize, w as usize), device)
}
