//! Training augmentation as ultralytics YOLOv5 v7.0 does it (`utils/augmentations.py` and
//! `LoadImagesAndLabels` in `utils/dataloaders.py`), as pure functions on an RGB image and
//! its boxes. All randomness comes from the `Rng` passed in, so the loader decides how
//! samples are seeded.
//!
//! While an image is being composed (mosaic, perspective, mixup) its boxes are
//! [`PixelBox`]es: class plus corners in pixels, ultralytics' `[cls, x1, y1, x2, y2]` rows.
//! [`to_labels`] turns them into normalised [`Label`]s (centre and size), on which the
//! flips work, as in ultralytics.
//!
//! Resampling follows OpenCV 5's 8-bit arithmetic: `warpAffine`/`warpPerspective` with
//! float32 bilinear interpolation and a constant border of 114 grey, `resize` with
//! `INTER_AREA` when shrinking validation images, and the HSV conversions of `cvtColor`.

use std::sync::LazyLock;

use image::RgbImage;
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

use crate::data::labels::Label;
use crate::data::letterbox::resize_linear;

/// The grey ultralytics fills borders with.
pub const FILL: u8 = 114;

/// A reproducible random source: the same `(seed, stream)` always gives the same numbers,
/// and different streams are independent (ChaCha's 64-bit stream id). Callers pack what a
/// stream is for into `stream`, e.g. `(epoch << 32) | index`.
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Python's `random.uniform(low, high)`.
fn uniform(rng: &mut impl Rng, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.random::<f64>()
}

/// Rounds half to even like `f32::round_ties_even`, for values in [0, 2^22] such as
/// pixel values: adding 2^23 leaves no fraction bits, so the FPU rounds (to even). This
/// avoids a libm call per pixel where the CPU baseline has no rounding instruction.
fn round_pixel(v: f32) -> f32 {
    const SHIFT: f32 = 8_388_608.0;
    (v + SHIFT) - SHIFT
}

/// A box in pixels with its class: ultralytics' `[cls, x1, y1, x2, y2]` label row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelBox {
    pub class: usize,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl PixelBox {
    /// ultralytics' `xywhn2xyxy`: a normalised label on an image of `w`×`h` pixels placed
    /// at offset (`pad_w`, `pad_h`).
    pub fn from_label(label: &Label, w: f32, h: f32, pad_w: f32, pad_h: f32) -> PixelBox {
        PixelBox {
            class: label.class,
            x1: w * (label.cx - label.w / 2.0) + pad_w,
            y1: h * (label.cy - label.h / 2.0) + pad_h,
            x2: w * (label.cx + label.w / 2.0) + pad_w,
            y2: h * (label.cy + label.h / 2.0) + pad_h,
        }
    }

    fn corners(&self) -> [f64; 4] {
        [self.x1, self.y1, self.x2, self.y2].map(f64::from)
    }
}

/// An image with its boxes in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub image: RgbImage,
    pub boxes: Vec<PixelBox>,
}

/// ultralytics' margin that keeps clipped boxes strictly inside the image.
const CLIP_EPS: f32 = 1e-3;

/// ultralytics' `xyxy2xywhn(..., clip=True, eps=1e-3)`: boxes clipped to the `w`×`h` image
/// (less 0.001 pixel), then normalised centre and size.
pub fn to_labels(boxes: &[PixelBox], w: u32, h: u32) -> Vec<Label> {
    let (w, h) = (w as f32, h as f32);
    boxes
        .iter()
        .map(|b| {
            let (x1, x2) = (b.x1.clamp(0.0, w - CLIP_EPS), b.x2.clamp(0.0, w - CLIP_EPS));
            let (y1, y2) = (b.y1.clamp(0.0, h - CLIP_EPS), b.y2.clamp(0.0, h - CLIP_EPS));
            Label {
                class: b.class,
                cx: (x1 + x2) / 2.0 / w,
                cy: (y1 + y2) / 2.0 / h,
                w: (x2 - x1) / w,
                h: (y2 - y1) / h,
            }
        })
        .collect()
}

/// The resize of ultralytics' `load_image`: the long side becomes `imgsz` (each side
/// rounded up). Bilinear when training or enlarging; `INTER_AREA` when shrinking for
/// validation, which averages instead of skipping pixels.
pub fn resize_long_side(image: &RgbImage, imgsz: u32, augment: bool) -> RgbImage {
    let (w0, h0) = image.dimensions();
    let r = f64::from(imgsz) / f64::from(w0.max(h0));
    if r == 1.0 {
        return image.clone();
    }
    let (w, h) = (
        (f64::from(w0) * r).ceil() as u32,
        (f64::from(h0) * r).ceil() as u32,
    );
    if augment || r > 1.0 {
        resize_linear(image, w, h)
    } else {
        resize_area(image, w, h)
    }
}

/// One destination pixel's source pixels and weights along an axis, as OpenCV's
/// `computeResizeAreaTab`: whole source pixels weigh 1, cut ones their covered fraction.
fn area_taps(src: u32, dst: u32) -> Vec<Vec<(usize, f32)>> {
    let scale = f64::from(src) / f64::from(dst);
    (0..dst)
        .map(|d| {
            let start = f64::from(d) * scale;
            let end = start + scale;
            let cell = scale.min(f64::from(src) - start);
            let last = (end.floor() as u32).min(src - 1);
            let first = (start.ceil() as u32).min(last);
            let mut taps = Vec::new();
            if f64::from(first) - start > 1e-3 {
                taps.push((
                    first as usize - 1,
                    ((f64::from(first) - start) / cell) as f32,
                ));
            }
            taps.extend((first..last).map(|s| (s as usize, (1.0 / cell) as f32)));
            if end - f64::from(last) > 1e-3 {
                taps.push((
                    last as usize,
                    ((end - f64::from(last)).min(1.0).min(cell) / cell) as f32,
                ));
            }
            taps
        })
        .collect()
}

/// `cv2.resize(..., interpolation=cv2.INTER_AREA)` for shrinking.
fn resize_area(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (xs, ys) = (
        area_taps(image.width(), width),
        area_taps(image.height(), height),
    );
    let src_row = image.width() as usize * 3;
    let raw = image.as_raw();
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y_taps in &ys {
        for x_taps in &xs {
            let mut sum = [0f32; 3];
            for &(sy, wy) in y_taps {
                for &(sx, wx) in x_taps {
                    let pixel = &raw[sy * src_row + sx * 3..][..3];
                    (0..3).for_each(|c| sum[c] += f32::from(pixel[c]) * wx * wy);
                }
            }
            out.extend(sum.map(|v| round_pixel(v.clamp(0.0, 255.0)) as u8));
        }
    }
    RgbImage::from_raw(width, height, out)
        .unwrap_or_else(|| unreachable!("the buffer holds width x height RGB pixels"))
}

/// ultralytics' `mosaic_border`: `-imgsz // 2` (Python's floor division).
pub fn mosaic_border(imgsz: u32) -> i64 {
    (-i64::from(imgsz)).div_euclid(2)
}

/// The mosaic centre (x, y), each uniform in [imgsz/2, 3·imgsz/2) and truncated, as
/// `int(random.uniform(-border, 2 * s + border))`.
pub fn mosaic_centre(imgsz: u32, rng: &mut impl Rng) -> (i64, i64) {
    let border = mosaic_border(imgsz) as f64;
    let s = f64::from(imgsz);
    let y = uniform(rng, -border, 2.0 * s + border) as i64;
    let x = uniform(rng, -border, 2.0 * s + border) as i64;
    (x, y)
}

/// One image of a mosaic, already resized so its long side is imgsz, with its labels.
#[derive(Debug, Clone, Copy)]
pub struct MosaicTile<'a> {
    pub image: &'a RgbImage,
    pub labels: &'a [Label],
}

/// ultralytics' `load_mosaic` without the final perspective: a 2·imgsz square of grey 114
/// with the four tiles meeting at `centre` (top-left, top-right, bottom-left,
/// bottom-right), each cropped where it leaves the canvas; boxes are shifted with their
/// tile and clipped to the canvas.
pub fn mosaic4(tiles: [MosaicTile; 4], imgsz: u32, (xc, yc): (i64, i64)) -> LabelledImage {
    let side = 2 * i64::from(imgsz);
    let mut canvas = RgbImage::from_pixel(side as u32, side as u32, image::Rgb([FILL; 3]));
    let mut boxes = Vec::new();
    for (position, tile) in tiles.iter().enumerate() {
        let (w, h) = (
            i64::from(tile.image.width()),
            i64::from(tile.image.height()),
        );
        // Canvas rectangle (a) and the matching tile rectangle (b).
        let (x1a, y1a, x2a, y2a) = match position {
            0 => ((xc - w).max(0), (yc - h).max(0), xc, yc),
            1 => (xc, (yc - h).max(0), (xc + w).min(side), yc),
            2 => ((xc - w).max(0), yc, xc, (yc + h).min(side)),
            _ => (xc, yc, (xc + w).min(side), (yc + h).min(side)),
        };
        let (x1b, y1b) = match position {
            0 => (w - (x2a - x1a), h - (y2a - y1a)),
            1 => (0, h - (y2a - y1a)),
            2 => (w - (x2a - x1a), 0),
            _ => (0, 0),
        };
        copy_rect(
            tile.image,
            (x1b, y1b),
            &mut canvas,
            (x1a, y1a),
            (x2a - x1a, y2a - y1a),
        );
        let (pad_w, pad_h) = ((x1a - x1b) as f32, (y1a - y1b) as f32);
        boxes.extend(
            tile.labels
                .iter()
                .map(|label| PixelBox::from_label(label, w as f32, h as f32, pad_w, pad_h)),
        );
    }
    let limit = side as f32;
    for b in &mut boxes {
        for v in [&mut b.x1, &mut b.y1, &mut b.x2, &mut b.y2] {
            *v = v.clamp(0.0, limit);
        }
    }
    LabelledImage {
        image: canvas,
        boxes,
    }
}

/// Copies a `size` rectangle from `src` at `from` to `dst` at `to`; empty when a side is ≤ 0.
fn copy_rect(
    src: &RgbImage,
    from: (i64, i64),
    dst: &mut RgbImage,
    to: (i64, i64),
    (w, h): (i64, i64),
) {
    if w <= 0 || h <= 0 {
        return;
    }
    let (src_row, dst_row) = (src.width() as usize * 3, dst.width() as usize * 3);
    let len = w as usize * 3;
    let dst_raw: &mut [u8] = dst;
    for row in 0..h as usize {
        let s = (from.1 as usize + row) * src_row + from.0 as usize * 3;
        let d = (to.1 as usize + row) * dst_row + to.0 as usize * 3;
        dst_raw[d..d + len].copy_from_slice(&src.as_raw()[s..s + len]);
    }
}

/// The geometric augmentation ranges (hyp `degrees`, `translate`, `scale`, `shear`,
/// `perspective`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarpRanges {
    pub degrees: f64,
    pub translate: f64,
    pub scale: f64,
    pub shear: f64,
    pub perspective: f64,
}

/// The augmentation hyperparameters of ultralytics' `hyp.*.yaml` files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    pub hsv_h: f64,
    pub hsv_s: f64,
    pub hsv_v: f64,
    pub degrees: f64,
    pub translate: f64,
    pub scale: f64,
    pub shear: f64,
    pub perspective: f64,
    pub flipud: f64,
    pub fliplr: f64,
    pub mosaic: f64,
    pub mixup: f64,
    pub copy_paste: f64,
    /// yolov7's paste-in augmentation probability: accepted, and ignored (not implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paste_in: Option<f64>,
}

impl From<&Augmentation> for WarpRanges {
    fn from(hyp: &Augmentation) -> Self {
        WarpRanges {
            degrees: hyp.degrees,
            translate: hyp.translate,
            scale: hyp.scale,
            shear: hyp.shear,
            perspective: hyp.perspective,
        }
    }
}

type Matrix = [[f64; 3]; 3];

const IDENTITY: Matrix = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

fn matmul(a: &Matrix, b: &Matrix) -> Matrix {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    m
}

/// One draw of ultralytics' `random_perspective`: the 3×3 matrix from input to output
/// pixels, the scale it drew, and the output size.
#[derive(Debug, Clone, PartialEq)]
pub struct Warp {
    pub matrix: Matrix,
    pub scale: f64,
    pub width: u32,
    pub height: u32,
    /// A true perspective (projective) warp; otherwise affine.
    pub projective: bool,
}

impl Warp {
    /// Draws the transform for a `width`×`height` input; the output is `2·border` larger
    /// on each axis (after a mosaic the border is −imgsz/2, which crops the 2·imgsz canvas
    /// back to imgsz). The matrix is `T·S·R·P·C`: centre the image, perspective, rotate
    /// and scale, shear, translate, in that order.
    pub fn random(
        ranges: &WarpRanges,
        (width, height): (u32, u32),
        border: i64,
        rng: &mut impl Rng,
    ) -> Warp {
        let out_w = i64::from(width) + 2 * border;
        let out_h = i64::from(height) + 2 * border;
        let mut centre = IDENTITY;
        centre[0][2] = -f64::from(width) / 2.0;
        centre[1][2] = -f64::from(height) / 2.0;

        let mut perspective = IDENTITY;
        perspective[2][0] = uniform(rng, -ranges.perspective, ranges.perspective);
        perspective[2][1] = uniform(rng, -ranges.perspective, ranges.perspective);

        let angle = uniform(rng, -ranges.degrees, ranges.degrees);
        let scale = uniform(rng, 1.0 - ranges.scale, 1.0 + ranges.scale);
        let rotation = rotation_matrix(angle, scale);

        let mut shear = IDENTITY;
        shear[0][1] =
            (uniform(rng, -ranges.shear, ranges.shear) * std::f64::consts::PI / 180.0).tan();
        shear[1][0] =
            (uniform(rng, -ranges.shear, ranges.shear) * std::f64::consts::PI / 180.0).tan();

        let mut translation = IDENTITY;
        translation[0][2] =
            uniform(rng, 0.5 - ranges.translate, 0.5 + ranges.translate) * out_w as f64;
        translation[1][2] =
            uniform(rng, 0.5 - ranges.translate, 0.5 + ranges.translate) * out_h as f64;

        let matrix = [&shear, &rotation, &perspective, &centre]
            .into_iter()
            .fold(translation, |m, next| matmul(&m, next));
        Warp {
            matrix,
            scale,
            width: out_w.max(1) as u32,
            height: out_h.max(1) as u32,
            projective: ranges.perspective != 0.0,
        }
    }

    /// Whether warping would change nothing (ultralytics then skips it).
    pub fn is_identity(&self, input: (u32, u32)) -> bool {
        self.matrix == IDENTITY && (self.width, self.height) == input
    }

    /// Maps a point from input to output pixels.
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.matrix;
        let (u, v) = (
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        );
        if self.projective {
            let w = m[2][0] * x + m[2][1] * y + m[2][2];
            (u / w, v / w)
        } else {
            (u, v)
        }
    }

    /// The warped image, sampled as OpenCV 5's `warpAffine`/`warpPerspective` with bilinear
    /// interpolation and a constant border of [`FILL`] (identical to OpenCV on all but a
    /// few values in 10^5, which differ by one grey level).
    pub fn warp_image(&self, image: &RgbImage) -> RgbImage {
        let inverse = if self.projective {
            invert_projective(&self.matrix)
        } else {
            invert_affine(&self.matrix)
        };
        let inverse = inverse.map(|row| row.map(|v| v as f32));
        let mut out = RgbImage::new(self.width, self.height);
        for (x, y, pixel) in out.enumerate_pixels_mut() {
            let (sx, sy) = source_position(&inverse, x, y, self.projective);
            pixel.0 = sample_bilinear(image, sx, sy);
        }
        out
    }

    /// The warped boxes: the four corners of each box transformed, their extent clipped to
    /// the output, and only boxes that survive [`box_candidate`] kept.
    pub fn warp_boxes(&self, boxes: &[PixelBox]) -> Vec<PixelBox> {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let warped = boxes.iter().filter_map(|b| {
            let [x1, y1, x2, y2] = b.corners();
            let corners = [(x1, y1), (x2, y2), (x1, y2), (x2, y1)].map(|(x, y)| self.apply(x, y));
            let xs = corners.map(|c| c.0);
            let ys = corners.map(|c| c.1);
            let min = |v: [f64; 4]| v.into_iter().fold(f64::INFINITY, f64::min);
            let max = |v: [f64; 4]| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
            let new = [
                min(xs).clamp(0.0, w),
                min(ys).clamp(0.0, h),
                max(xs).clamp(0.0, w),
                max(ys).clamp(0.0, h),
            ];
            let before = [x1, y1, x2, y2].map(|v| v * self.scale);
            box_candidate(before, new).then_some(PixelBox {
                class: b.class,
                x1: new[0] as f32,
                y1: new[1] as f32,
                x2: new[2] as f32,
                y2: new[3] as f32,
            })
        });
        warped.collect()
    }
}

/// OpenCV's `getRotationMatrix2D(center=(0, 0), angle, scale)` as a 3×3 matrix.
fn rotation_matrix(degrees: f64, scale: f64) -> Matrix {
    let radians = degrees.to_radians();
    let (alpha, beta) = (scale * radians.cos(), scale * radians.sin());
    [[alpha, beta, 0.0], [-beta, alpha, 0.0], [0.0, 0.0, 1.0]]
}

/// OpenCV's `invertAffineTransform` (the inverse of the top two rows).
fn invert_affine(m: &Matrix) -> Matrix {
    let d = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (a11, a22, a12, a21) = (m[1][1] * d, m[0][0] * d, -m[0][1] * d, -m[1][0] * d);
    let b1 = -a11 * m[0][2] - a12 * m[1][2];
    let b2 = -a21 * m[0][2] - a22 * m[1][2];
    [[a11, a12, b1], [a21, a22, b2], [0.0, 0.0, 1.0]]
}

/// The inverse of a 3×3 matrix (adjugate over determinant); zero when singular, which
/// then samples only the border.
fn invert_projective(m: &Matrix) -> Matrix {
    let cofactor =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adjugate = [
        [
            cofactor(1, 2, 1, 2),
            -cofactor(0, 2, 1, 2),
            cofactor(0, 1, 1, 2),
        ],
        [
            -cofactor(1, 2, 0, 2),
            cofactor(0, 2, 0, 2),
            -cofactor(0, 1, 0, 2),
        ],
        [
            cofactor(1, 2, 0, 1),
            -cofactor(0, 2, 0, 1),
            cofactor(0, 1, 0, 1),
        ],
    ];
    let det = m[0][0] * adjugate[0][0] + m[0][1] * adjugate[1][0] + m[0][2] * adjugate[2][0];
    let scale = if det != 0.0 { 1.0 / det } else { 0.0 };
    adjugate.map(|row| row.map(|v| v * scale))
}

/// The source position of output pixel (x, y), in float32 as OpenCV 5's warp kernels
/// compute it (the row term first, then the column term).
fn source_position(inverse: &[[f32; 3]; 3], x: u32, y: u32, projective: bool) -> (f32, f32) {
    let (x, y) = (x as f32, y as f32);
    let project = |row: &[f32; 3]| row[0] * x + (row[1] * y + row[2]);
    let (sx, sy) = (project(&inverse[0]), project(&inverse[1]));
    if projective {
        let w = project(&inverse[2]);
        let w = if w != 0.0 { 1.0 / w } else { 0.0 };
        (sx * w, sy * w)
    } else {
        (sx, sy)
    }
}

/// Bilinear sampling at (`sx`, `sy`) in float32, rounded to 8 bits; source pixels outside
/// the image read as [`FILL`].
fn sample_bilinear(image: &RgbImage, sx: f32, sy: f32) -> [u8; 3] {
    let (x0, y0) = (sx.floor(), sy.floor());
    let (ax, ay) = (sx - x0, sy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let tap = |x: i64, y: i64| {
        let pixel = if (0..w).contains(&x) && (0..h).contains(&y) {
            image.get_pixel(x as u32, y as u32).0
        } else {
            [FILL; 3]
        };
        pixel.map(f32::from)
    };
    let (p00, p01, p10, p11) = (
        tap(x0, y0),
        tap(x0 + 1, y0),
        tap(x0, y0 + 1),
        tap(x0 + 1, y0 + 1),
    );
    std::array::from_fn(|c| {
        let top = p00[c] + ax * (p01[c] - p00[c]);
        let bottom = p10[c] + ax * (p11[c] - p10[c]);
        round_pixel((top + ay * (bottom - top)).clamp(0.0, 255.0)) as u8
    })
}

/// YOLOv5's `box_candidates`: a warped box is kept when it is more than 2 pixels wide and
/// high, keeps more than 10% of its (scaled) area, and its aspect ratio stays below 100.
/// Boxes are `[x1, y1, x2, y2]`; `before` is the original scaled by the warp's scale.
pub fn box_candidate(before: [f64; 4], after: [f64; 4]) -> bool {
    const WH_THR: f64 = 2.0;
    const AR_THR: f64 = 100.0;
    const AREA_THR: f64 = 0.1;
    const EPS: f64 = 1e-16;
    let (w1, h1) = (before[2] - before[0], before[3] - before[1]);
    let (w2, h2) = (after[2] - after[0], after[3] - after[1]);
    let aspect = (w2 / (h2 + EPS)).max(h2 / (w2 + EPS));
    w2 > WH_THR && h2 > WH_THR && w2 * h2 / (w1 * h1 + EPS) > AREA_THR && aspect < AR_THR
}

/// ultralytics' `random_perspective`: draws a [`Warp`], applies it to the image (unless it
/// changes nothing) and to the boxes.
pub fn random_perspective(
    input: LabelledImage,
    ranges: &WarpRanges,
    border: i64,
    rng: &mut impl Rng,
) -> LabelledImage {
    let size = input.image.dimensions();
    let warp = Warp::random(ranges, size, border, rng);
    let image = if warp.is_identity(size) {
        input.image
    } else {
        warp.warp_image(&input.image)
    };
    let boxes = if input.boxes.is_empty() {
        Vec::new()
    } else {
        warp.warp_boxes(&input.boxes)
    };
    LabelledImage { image, boxes }
}

/// ultralytics' `mixup`: the two images blended by a Beta(32, 32) ratio (truncated to
/// 8 bits), and both sets of boxes.
pub fn mixup(first: LabelledImage, second: LabelledImage, rng: &mut impl Rng) -> LabelledImage {
    let ratio: f64 = Beta::new(32.0, 32.0)
        .map(|beta| beta.sample(rng))
        .unwrap_or(0.5);
    let mut image = first.image;
    for (a, &b) in image.iter_mut().zip(second.image.iter()) {
        *a = (f64::from(*a) * ratio + f64::from(b) * (1.0 - ratio)) as u8;
    }
    let mut boxes = first.boxes;
    boxes.extend(second.boxes);
    LabelledImage { image, boxes }
}

/// ultralytics' `augment_hsv`: random gains 1 ± `gains` for hue, saturation and value,
/// drawn only when some gain is non-zero.
pub fn augment_hsv(image: &mut RgbImage, gains: [f64; 3], rng: &mut impl Rng) {
    if gains.iter().any(|&g| g != 0.0) {
        let factors = gains.map(|g| uniform(rng, -1.0, 1.0) * g + 1.0);
        apply_hsv_gains(image, factors);
    }
}

/// Multiplies hue (mod 180), saturation and value (clipped to 255) by `factors` through
/// 8-bit lookup tables, in OpenCV's HSV (hue in [0, 180)).
pub fn apply_hsv_gains(image: &mut RgbImage, factors: [f64; 3]) {
    let lut = |factor: f64, hue: bool| -> [u8; 256] {
        std::array::from_fn(|x| {
            let v = x as f64 * factor;
            (if hue {
                v.rem_euclid(180.0)
            } else {
                v.clamp(0.0, 255.0)
            }) as u8
        })
    };
    let (hue, sat, val) = (
        lut(factors[0], true),
        lut(factors[1], false),
        lut(factors[2], false),
    );
    for pixel in image.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(pixel.0);
        pixel.0 = hsv_to_rgb([hue[h as usize], sat[s as usize], val[v as usize]]);
    }
}

/// OpenCV's `hsv_shift`: the HSV tables are in 12-bit fixed point.
const HSV_SHIFT: u32 = 12;

/// OpenCV's `sdiv_table` and `hdiv_table180`: 255/v and 180/(6·diff) in fixed point.
struct HsvDivisors {
    saturation: [i32; 256],
    hue: [i32; 256],
}

static HSV_DIVISORS: LazyLock<HsvDivisors> = LazyLock::new(|| {
    let table = |numerator: f64, per: f64| {
        std::array::from_fn(|i| {
            if i == 0 {
                0
            } else {
                (numerator / (per * i as f64)).round_ties_even() as i32
            }
        })
    };
    HsvDivisors {
        saturation: table(f64::from(255 << HSV_SHIFT), 1.0),
        hue: table(f64::from(180 << HSV_SHIFT), 6.0),
    }
});

/// OpenCV's 8-bit `COLOR_RGB2HSV` (hue in [0, 180)), in its fixed-point arithmetic.
pub fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let v = r.max(g).max(b);
    let diff = v - r.min(g).min(b);
    let round = 1 << (HSV_SHIFT - 1);
    let s = (diff * HSV_DIVISORS.saturation[v as usize] + round) >> HSV_SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * HSV_DIVISORS.hue[diff as usize] + round) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h as u8, s as u8, v as u8]
}

/// OpenCV's 8-bit `COLOR_HSV2RGB` (hue in [0, 180)): float sectors, rounded to 8 bits.
pub fn hsv_to_rgb([h, s, v]: [u8; 3]) -> [u8; 3] {
    let (s, v) = (f32::from(s) * (1.0 / 255.0), f32::from(v) * (1.0 / 255.0));
    let (r, g, b) = if s == 0.0 {
        (v, v, v)
    } else {
        let mut h = f32::from(h) * (6.0 / 180.0);
        h %= 6.0;
        // h >= 0, so truncation is the floor.
        let mut sector = h as i32;
        h -= sector as f32;
        if !(0..6).contains(&sector) {
            sector = 0;
            h = 0.0;
        }
        let tab = [
            v,
            v * (1.0 - s),
            v * (1.0 - s * h),
            v * (1.0 - s * (1.0 - h)),
        ];
        // OpenCV's (b, g, r) table indices per sector.
        const SECTORS: [[usize; 3]; 6] = [
            [1, 3, 0],
            [1, 0, 2],
            [3, 0, 1],
            [0, 2, 1],
            [0, 1, 3],
            [2, 1, 0],
        ];
        let [bi, gi, ri] = SECTORS[sector as usize];
        (tab[ri], tab[gi], tab[bi])
    };
    [r, g, b].map(|c| round_pixel((c * 255.0).clamp(0.0, 255.0)) as u8)
}

/// Mirrors the image left-right and its labels with it.
pub fn flip_lr(image: &mut RgbImage, labels: &mut [Label]) {
    image::imageops::flip_horizontal_in_place(image);
    labels
        .iter_mut()
        .for_each(|label| label.cx = 1.0 - label.cx);
}

/// Mirrors the image up-down and its labels with it.
pub fn flip_ud(image: &mut RgbImage, labels: &mut [Label]) {
    image::imageops::flip_vertical_in_place(image);
    labels
        .iter_mut()
        .for_each(|label| label.cy = 1.0 - label.cy);
}

/// ultralytics' flips: up-down with probability `p_ud`, then left-right with `p_lr`.
pub fn random_flips(
    image: &mut RgbImage,
    labels: &mut [Label],
    p_ud: f64,
    p_lr: f64,
    rng: &mut impl Rng,
) {
    if rng.random::<f64>() < p_ud {
        flip_ud(image, labels);
    }
    if rng.random::<f64>() < p_lr {
        flip_lr(image, labels);
    }
}
