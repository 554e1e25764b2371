//! The one look shared by every plot: palette, font, line widths.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::{
    BitMapBackend, DrawingArea, DrawingAreaErrorKind, DrawingBackend, IntoDrawingArea, PathElement,
    SVGBackend,
};
use plotters::style::{
    register_font, Color, FontStyle, HSLColor, IntoFont, RGBColor, ShapeStyle, TextStyle, WHITE,
};

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

/// Colourblind-safe Okabe–Ito colours for series (runs, activations), without its yellow,
/// which is too faint on white.
const SERIES_COLORS: [RGBColor; 7] = [
    PRIMARY,
    SECONDARY,
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// The colour of series `index` out of `count`: the Okabe–Ito colours while they last, else
/// evenly spaced hues for all.
pub fn series_color(index: usize, count: usize) -> RGBColor {
    if count <= SERIES_COLORS.len() {
        return SERIES_COLORS[index % SERIES_COLORS.len()];
    }
    let (r, g, b) = HSLColor(index as f64 / count as f64, 0.75, 0.42).rgb();
    RGBColor(r, g, b)
}

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
pub const LARGE: TextSizes = TextSizes {
    title: 22.0,
    label: 18.0,
    tick: 14.0,
};
/// A panel in a grid of charts.
pub const SMALL: TextSizes = TextSizes {
    title: 14.0,
    label: 12.0,
    tick: 12.0,
};

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
                offsets
                    .map(|offset| (offset, color.stroke_width(1)))
                    .collect()
            }
        }
    }
}

/// Draws a solid polyline given in pixels of `area`, in `pen`'s passes.
pub fn draw_path<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pixels: &[(i32, i32)],
    color: RGBColor,
    pen: Pen,
) -> DrawResult<DB> {
    for ((dx, dy), shape) in pen.passes(color) {
        let shifted: Vec<(i32, i32)> = pixels.iter().map(|&(x, y)| (x + dx, y + dy)).collect();
        area.draw(&PathElement::new(shifted, shape))?;
    }
    Ok(())
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
pub type PlotArea<DB> = plotters::prelude::DrawingArea<
    DB,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// The points in pixels relative to the plotting area, without repeats of a pixel.
pub fn to_pixels<DB: plotters::prelude::DrawingBackend>(
    plot: &PlotArea<DB>,
    points: &[(f64, f64)],
) -> Vec<(i32, i32)> {
    let (left, top) = plot.get_base_pixel();
    let mut pixels: Vec<(i32, i32)> = points
        .iter()
        .map(|point| plot.map_coordinate(point))
        .map(|(x, y)| (x - left, y - top))
        .collect();
    pixels.dedup();
    pixels
}

/// The smallest and largest of some values; (∞, −∞) for none.
pub fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Widens a span by matplotlib's 5% margin on each side, so that markers at the ends stay
/// inside; a single value gets a band around it.
pub fn padded((lo, hi): (f64, f64)) -> (f64, f64) {
    let margin = match hi - lo {
        spread if spread > 0.0 => 0.05 * spread,
        _ if hi != 0.0 => 0.05 * hi.abs(),
        _ => 0.5,
    };
    (lo - margin, hi + margin)
}

/// A tick value without trailing zeros (6, -2.5, 0.25); scientific when very large or small.
pub fn tick_label(value: &f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e5 || (magnitude > 0.0 && magnitude < 1e-3) {
        return format!("{value:e}");
    }
    let fixed = format!("{value:.4}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" { "0" } else { trimmed }.to_string()
}

pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure that can be drawn on any backend, so that its PNG and SVG come from one drawing.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB>;
}

/// A file plotters could not draw, and its reason.
#[derive(Debug, thiserror::Error)]
#[error("drawing {}", path.display())]
pub struct DrawFailure {
    pub path: PathBuf,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Draws `figure` to `<dir>/<stem>.png` and `<dir>/<stem>.svg` (the folder must exist);
/// returns both paths.
pub fn save_png_and_svg(
    figure: &impl Figure,
    dir: &Path,
    stem: &str,
) -> Result<[PathBuf; 2], DrawFailure> {
    let png = dir.join(format!("{stem}.png"));
    render(figure, BitMapBackend::new(&png, figure.size()), Pen::Stamp).map_err(|source| {
        DrawFailure {
            path: png.clone(),
            source,
        }
    })?;
    let svg = dir.join(format!("{stem}.svg"));
    render(figure, SVGBackend::new(&svg, figure.size()), Pen::Stroke).map_err(|source| {
        DrawFailure {
            path: svg.clone(),
            source,
        }
    })?;
    Ok([png, svg])
}

fn render<DB>(
    figure: &impl Figure,
    backend: DB,
    pen: Pen,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let root = backend.into_drawing_area();
    root.fill(&BACKGROUND)
        .and_then(|()| figure.draw(&root, pen))
        .and_then(|()| root.present())
        .map_err(|e| e.into())
}
