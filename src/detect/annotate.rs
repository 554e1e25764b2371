//! Boxes and labels drawn on the image, in the manner of ultralytics' `Annotator`: its
//! 20-colour palette, a line width that grows with the image, and a filled label above
//! the box (inside it when there is no room above). The text is DejaVu Sans from the
//! binary, never a system font.

use ab_glyph::{FontRef, InvalidFont, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

use super::class_name;
use crate::eval::Detection;
use crate::plot::palette::class_color;

/// Label text height (ascent to descent) per pixel of line width: about the size of
/// OpenCV's Hershey font at ultralytics' `fontScale = lw / 3`.
const TEXT_PX_PER_LINE_WIDTH: f32 = 8.0;

/// White on dark colours, near-black on light ones (ultralytics always uses white, which
/// is hard to read on its pale pinks and yellows).
fn text_color(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0.map(f32::from);
    if 0.299 * r + 0.587 * g + 0.114 * b > 150.0 {
        Rgb([20, 20, 20])
    } else {
        Rgb([255, 255, 255])
    }
}

/// ultralytics' `max(round(sum(im.shape) / 2 * 0.003), 2)`, where the shape includes the 3
/// channels.
pub fn line_width(width: u32, height: u32) -> u32 {
    let half_sum = f64::from(width + height + 3) / 2.0;
    ((half_sum * 0.003).round_ties_even() as u32).max(2)
}

pub struct Annotator {
    font: FontRef<'static>,
}

impl Annotator {
    pub fn new() -> Result<Annotator, InvalidFont> {
        Ok(Annotator {
            font: FontRef::try_from_slice(dejavu::sans::regular())?,
        })
    }

    /// Draws each detection's box and "name conf" label, the best last so that it is on
    /// top (detect.py walks the detections in reverse).
    pub fn draw(&self, image: &mut RgbImage, detections: &[Detection], names: &[String]) {
        let lw = line_width(image.width(), image.height());
        for detection in detections.iter().rev() {
            let color = class_color(detection.class);
            // detect.py truncates the (already rounded) corners with int().
            let [x1, y1, x2, y2] = detection.bbox.map(|v| v as i32);
            draw_thick_box(image, [x1, y1, x2, y2], color, lw);
            let label = format!(
                "{} {:.2}",
                class_name(names, detection.class),
                detection.conf
            );
            self.draw_label(image, (x1, y1), &label, color, lw);
        }
    }

    /// A filled label with its top-left corner at the box's, above the box when it fits;
    /// moved left where it would run off the image (ultralytics lets it be cut).
    fn draw_label(
        &self,
        image: &mut RgbImage,
        (x, y): (i32, i32),
        text: &str,
        color: Rgb<u8>,
        lw: u32,
    ) {
        let scale = PxScale::from(TEXT_PX_PER_LINE_WIDTH * lw as f32);
        let (text_w, text_h) = text_size(scale, &self.font, text);
        let (label_w, label_h) = (text_w + 2, text_h + 3);
        let x = x.min(image.width() as i32 - label_w as i32).max(0);
        let outside = y - label_h as i32 >= 0;
        let top = if outside { y - label_h as i32 } else { y };
        draw_filled_rect_mut(image, Rect::at(x, top).of_size(label_w, label_h), color);
        draw_text_mut(
            image,
            text_color(color),
            x + 1,
            top + 2,
            scale,
            &self.font,
            text,
        );
    }
}

/// A rectangle outline `lw` pixels thick, centred on the box edges as OpenCV draws it.
fn draw_thick_box(image: &mut RgbImage, [x1, y1, x2, y2]: [i32; 4], color: Rgb<u8>, lw: u32) {
    let lw = lw as i32;
    for inset in -(lw / 2)..lw - lw / 2 {
        let (left, top, right, bottom) = (x1 + inset, y1 + inset, x2 - inset, y2 - inset);
        if left <= right && top <= bottom {
            let rect =
                Rect::at(left, top).of_size((right - left + 1) as u32, (bottom - top + 1) as u32);
            draw_hollow_rect_mut(image, rect, color);
        }
    }
}
