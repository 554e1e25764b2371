//! A training batch drawn as ultralytics' `plot_images` draws `train_batch0.jpg`.

use std::path::{Path, PathBuf};

use ab_glyph::{FontRef, PxScale};
use candle_core::Tensor;
use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

use super::palette::class_color;

#[derive(Debug, thiserror::Error)]
pub enum PlotBatchError {
    #[error("cannot read the batch tensors")]
    Tensor(#[source] candle_core::Error),
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font,
    #[error("{path}: cannot save")]
    Save {
        path: PathBuf,
        #[source]
        error: image::ImageError,
    },
}

impl From<candle_core::Error> for PlotBatchError {
    fn from(error: candle_core::Error) -> Self {
        PlotBatchError::Tensor(error)
    }
}

/// ultralytics' `plot_images` limits: at most 16 images, at most 1920 pixels a side.
const PLOT_MAX_IMAGES: usize = 16;
const PLOT_MAX_SIZE: f64 = 1920.0;

/// Writes a grid of a batch's first (up to 16) images with their boxes and class names,
/// as ultralytics' `plot_images` draws `train_batch0.jpg`: `images` (B, 3, H, W) in [0, 1],
/// `targets` (n, 6) rows of image index, class, cx, cy, w, h (normalised), `paths` the
/// images' files. The format follows `path`'s extension.
pub fn plot_batch(
    images: &Tensor,
    targets: &Tensor,
    paths: &[PathBuf],
    names: &[String],
    path: &Path,
) -> Result<(), PlotBatchError> {
    let (count, _, h, w) = images.dims4()?;
    let count = count.min(PLOT_MAX_IMAGES);
    let grid = (count as f64).sqrt().ceil() as u32;
    let (h, w) = (h as u32, w as u32);
    let mut canvas = tile_images(images, count, grid, (w, h))?;
    let scale = PLOT_MAX_SIZE / f64::from(grid) / f64::from(w.max(h));
    let (w, h) = if scale < 1.0 {
        (
            (scale * f64::from(w)).ceil() as u32,
            (scale * f64::from(h)).ceil() as u32,
        )
    } else {
        (w, h)
    };
    if scale < 1.0 {
        // A picture for people: any good filter will do.
        canvas = image::imageops::resize(&canvas, w * grid, h * grid, FilterType::Triangle);
    }
    let font =
        FontRef::try_from_slice(dejavu::sans::regular()).map_err(|_| PlotBatchError::Font)?;
    // ultralytics' int((h + w) * ns * 0.01), kept legible on small grids.
    let font_size = (f64::from((h + w) * grid) * 0.01).floor().max(12.0) as f32;
    let line_width = ((font_size / 10.0).round() as u32).max(1);
    let targets = targets.to_vec2::<f32>()?;
    for i in 0..count {
        let origin = (
            (w * (i as u32 / grid)) as i32,
            (h * (i as u32 % grid)) as i32,
        );
        draw_thick_rect(
            &mut canvas,
            [origin.0, origin.1, origin.0 + w as i32, origin.1 + h as i32],
            Rgb([255; 3]),
            2,
        );
        let file = paths
            .get(i)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().chars().take(40).collect::<String>())
            .unwrap_or_default();
        draw_text_mut(
            &mut canvas,
            Rgb([220; 3]),
            origin.0 + 5,
            origin.1 + 5,
            PxScale::from(font_size),
            &font,
            &file,
        );
        for target in targets.iter().filter(|t| t[0] as usize == i) {
            let class = target[1] as usize;
            let name = names
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string());
            let (cx, cy, bw, bh) = (
                target[2] * w as f32,
                target[3] * h as f32,
                target[4] * w as f32,
                target[5] * h as f32,
            );
            let corners =
                [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0].map(|v| v as i32);
            let corners = [
                corners[0] + origin.0,
                corners[1] + origin.1,
                corners[2] + origin.0,
                corners[3] + origin.1,
            ];
            draw_box_label(
                &mut canvas,
                corners,
                &name,
                class_color(class),
                line_width,
                (&font, font_size),
            );
        }
    }
    canvas.save(path).map_err(|error| PlotBatchError::Save {
        path: path.to_path_buf(),
        error,
    })
}

/// The first `count` images of a (B, 3, H, W) tensor in [0, 1], column by column on a white
/// `grid`×`grid` canvas (ultralytics' tile order).
fn tile_images(
    images: &Tensor,
    count: usize,
    grid: u32,
    (w, h): (u32, u32),
) -> Result<RgbImage, PlotBatchError> {
    let pixels = images
        .narrow(0, 0, count)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let plane = (w * h) as usize;
    let mut canvas = RgbImage::from_pixel(w * grid, h * grid, Rgb([255; 3]));
    for (i, chw) in pixels.chunks_exact(3 * plane).enumerate() {
        let (x0, y0) = (w * (i as u32 / grid), h * (i as u32 % grid));
        for (p, pixel) in
            (0..plane).map(|p| (p, [0, 1, 2].map(|c| (chw[c * plane + p] * 255.0) as u8)))
        {
            canvas.put_pixel(x0 + p as u32 % w, y0 + p as u32 / w, Rgb(pixel));
        }
    }
    Ok(canvas)
}

/// A rectangle outline `width` pixels thick, drawn inwards from its corners as PIL does.
fn draw_thick_rect(canvas: &mut RgbImage, [x1, y1, x2, y2]: [i32; 4], colour: Rgb<u8>, width: u32) {
    for inset in 0..width as i32 {
        let (w, h) = (x2 - x1 - 2 * inset + 1, y2 - y1 - 2 * inset + 1);
        if w > 0 && h > 0 {
            draw_hollow_rect_mut(
                canvas,
                Rect::at(x1 + inset, y1 + inset).of_size(w as u32, h as u32),
                colour,
            );
        }
    }
}

/// ultralytics' `box_label`: the box, and white text on a filled label above it (inside
/// it when there is no room above).
fn draw_box_label(
    canvas: &mut RgbImage,
    corners: [i32; 4],
    text: &str,
    colour: Rgb<u8>,
    line_width: u32,
    (font, size): (&FontRef, f32),
) {
    draw_thick_rect(canvas, corners, colour, line_width);
    let (text_w, text_h) = text_size(PxScale::from(size), font, text);
    let outside = corners[1] - text_h as i32 >= 0;
    let top = if outside {
        corners[1] - text_h as i32
    } else {
        corners[1]
    };
    draw_filled_rect_mut(
        canvas,
        Rect::at(corners[0], top).of_size(text_w + 1, text_h + 1),
        colour,
    );
    draw_text_mut(
        canvas,
        Rgb([255; 3]),
        corners[0],
        top,
        PxScale::from(size),
        font,
        text,
    );
}
