//! The one look shared by every plot: palette, font, line widths.

use std::sync::OnceLock;

use plotters::style::{register_font, Color, FontStyle, IntoFont, RGBColor, ShapeStyle, TextStyle, WHITE};

/// Plotters looks fonts up by family name; with `ab_glyph` only registered ones exist.
pub const FONT: &str = "sans-serif";

pub const BACKGROUND: RGBColor = WHITE;
pub const TEXT: RGBColor = RGBColor(30, 30, 30);
/// Colourblind-safe blue and orange (Okabe–Ito) for a function and its derivative.
pub const PRIMARY: RGBColor = RGBColor(0, 114, 178);
pub const SECONDARY: RGBColor = RGBColor(230, 159, 0);
pub const GRID_MAJOR: RGBColor = RGBColor(215, 215, 215);
pub const GRID_MINOR: RGBColor = RGBColor(238, 238, 238);
pub const ZERO_AXIS: RGBColor = RGBColor(110, 110, 110);

pub const LINE_WIDTH: u32 = 2;
/// Dash and gap lengths in pixels for secondary (dashed) lines.
pub const DASH: (u32, u32) = (7, 4);

/// Font sizes in pixels for one scale of chart. Keep them even: plotters' `ab_glyph`
/// renderer truncates half a size when placing glyphs, so at odd sizes dots and minus
/// signs land a pixel off the digits.
#[derive(Debug, Clone, Copy)]
pub struct TextSizes {
    pub title: f64,
    pub label: f64,
    pub tick: f64,
}

/// A chart that has a figure to itself.
pub const LARGE: TextSizes = TextSizes { title: 22.0, label: 18.0, tick: 14.0 };
/// A panel in a grid of charts.
pub const SMALL: TextSizes = TextSizes { title: 14.0, label: 12.0, tick: 12.0 };

pub fn text(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&TEXT)
}

pub fn title_text(size: f64) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().color(&TEXT)
}

/// How a backend draws lines [`LINE_WIDTH`] wide. Vector backends stroke them. Plotters'
/// bitmap backend builds thick lines from polygons rounded to whole pixels, so their width
/// wobbles with the angle and thins after a join; a one-pixel line stamped at every offset
/// of a `LINE_WIDTH` square is even everywhere.
#[derive(Debug, Clone, Copy)]
pub enum Pen {
    Stroke,
    Stamp,
}

impl Pen {
    /// The passes (pixel offset and style) that draw one line in `color`.
    pub fn passes(self, color: RGBColor) -> Vec<((i32, i32), ShapeStyle)> {
        match self {
            Pen::Stroke => vec![((0, 0), color.stroke_width(LINE_WIDTH))],
            Pen::Stamp => {
                let width = LINE_WIDTH as i32;
                let offsets = (0..width).flat_map(|dx| (0..width).map(move |dy| (dx, dy)));
                offsets.map(|offset| (offset, color.stroke_width(1))).collect()
            }
        }
    }
}

pub fn zero_axis_line() -> ShapeStyle {
    ZERO_AXIS.stroke_width(1)
}

#[derive(Debug, thiserror::Error)]
#[error("the embedded DejaVu Sans font could not be loaded")]
pub struct FontError;

/// Registers the embedded DejaVu Sans (regular and bold) as [`FONT`], once; call before
/// drawing any text, so that plots never depend on the system's fonts.
pub fn register_fonts() -> Result<(), FontError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(FontError)
    }
}

/// A chart's plotting area in data coordinates.
pub type PlotArea<DB> = plotters::prelude::DrawingArea<DB, plotters::coord::cartesian::Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// The points in pixels relative to the plotting area, without repeats of a pixel.
pub fn to_pixels<DB: plotters::prelude::DrawingBackend>(plot: &PlotArea<DB>, points: &[(f64, f64)]) -> Vec<(i32, i32)> {
    let (left, top) = plot.get_base_pixel();
    let mut pixels: Vec<(i32, i32)> = points.iter().map(|point| plot.map_coordinate(point)).map(|(x, y)| (x - left, y - top)).collect();
    pixels.dedup();
    pixels
}
