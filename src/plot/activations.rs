//! Activation curves and their derivatives: one chart per activation (PNG and SVG) and
//! an overview grid, drawn from sampled points.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{
    self, tick_label, to_pixels, DrawFailure, DrawResult, Figure, FontError, Pen, PlotArea,
    TextSizes,
};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("creating the output folder {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Draw(#[from] DrawFailure),
    #[error(transparent)]
    Font(#[from] FontError),
}

const CHART_SIZE: (u32, u32) = (800, 600);
const PANEL_SIZE: (u32, u32) = (320, 250);
const OVERVIEW_COLUMNS: usize = 5;
/// Height of the band holding the line key, under a title.
const KEY_HEIGHT: u32 = 28;

/// Writes `<stem>.png` and `<stem>.svg` per curve and `overview.png`/`.svg` into `out`;
/// returns every file written.
pub fn plot_curves(
    curves: &[Curve],
    range: (f64, f64),
    out: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    style::register_fonts()?;
    std::fs::create_dir_all(out).map_err(|error| PlotError::CreateDir {
        path: out.to_path_buf(),
        error,
    })?;
    let mut written = Vec::new();
    for curve in curves {
        written.extend(save(&SingleChart(curve), out, &curve.stem)?);
    }
    let overview = Overview { curves, range };
    written.extend(save(&overview, out, "overview")?);
    Ok(written)
}

/// One activation sampled over the x range: f(x) and f'(x).
pub struct Curve {
    /// The chart's title (the full spec).
    pub title: String,
    /// The name in the overview's panel.
    pub short_name: String,
    /// The file name, without extension.
    pub stem: String,
    pub value: Vec<(f64, f64)>,
    pub derivative: Vec<(f64, f64)>,
}

impl Curve {
    /// The y range of both lines, with 0 (for the x axis line) and a 5% margin; overflowed
    /// samples are ignored.
    fn y_range(&self) -> (f64, f64) {
        let (lo, hi) = self
            .value
            .iter()
            .chain(&self.derivative)
            .map(|&(_, y)| y)
            .filter(|y| y.is_finite())
            .fold((0.0_f64, 0.0_f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        // A constant zero (an empty range) still gets a visible band.
        let margin = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
        (lo - margin, hi + margin)
    }
}

/// The two lines of every chart.
#[derive(Clone, Copy)]
enum Line {
    Value,
    Derivative,
}

impl Line {
    const BOTH: [Line; 2] = [Line::Value, Line::Derivative];

    fn label(self) -> &'static str {
        match self {
            Line::Value => "f(x)",
            Line::Derivative => "f'(x)",
        }
    }

    fn points(self, curve: &Curve) -> &[(f64, f64)] {
        match self {
            Line::Value => &curve.value,
            Line::Derivative => &curve.derivative,
        }
    }

    /// Draws a polyline given in pixels: solid for the value, dashed for the derivative,
    /// so the two differ in grey scale too.
    fn draw<DB: DrawingBackend>(
        self,
        area: &DrawingArea<DB, Shift>,
        pixels: &[(i32, i32)],
        pen: Pen,
    ) -> DrawResult<DB> {
        let color = match self {
            Line::Value => style::PRIMARY,
            Line::Derivative => style::SECONDARY,
        };
        for ((dx, dy), shape) in pen.passes(color) {
            let points: Vec<(i32, i32)> = pixels.iter().map(|&(x, y)| (x + dx, y + dy)).collect();
            match self {
                Line::Value => area.draw(&PathElement::new(points, shape))?,
                Line::Derivative => {
                    let (dash, gap) = style::DASH;
                    area.draw(&DashedPathElement::new(points, dash, gap, shape))?
                }
            }
        }
        Ok(())
    }
}

/// What differs between a chart on its own and a panel of the overview.
struct Look {
    text: TextSizes,
    /// Whether the chart carries its own line key and the axis names "x" and "y".
    standalone: bool,
    margin: u32,
    x_label_area: u32,
    y_label_area: u32,
    ticks: usize,
}

const STANDALONE: Look = Look {
    text: style::LARGE,
    standalone: true,
    margin: 16,
    x_label_area: 50,
    y_label_area: 64,
    ticks: 11,
};
const PANEL: Look = Look {
    text: style::SMALL,
    standalone: false,
    margin: 6,
    x_label_area: 22,
    y_label_area: 36,
    ticks: 5,
};

struct SingleChart<'a>(&'a Curve);

impl Figure for SingleChart<'_> {
    fn size(&self) -> (u32, u32) {
        CHART_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        draw_chart(root, &self.0.title, self.0, &STANDALONE, pen)
    }
}

struct Overview<'a> {
    curves: &'a [Curve],
    range: (f64, f64),
}

impl Overview<'_> {
    fn rows(&self) -> usize {
        self.curves.len().div_ceil(OVERVIEW_COLUMNS)
    }

    fn columns(&self) -> usize {
        self.curves.len().min(OVERVIEW_COLUMNS)
    }

    fn header_height() -> u32 {
        (style::LARGE.title * 2.0) as u32 + KEY_HEIGHT
    }
}

impl Figure for Overview<'_> {
    fn size(&self) -> (u32, u32) {
        let (w, h) = PANEL_SIZE;
        (
            w * self.columns() as u32,
            Self::header_height() + h * self.rows() as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        let (lo, hi) = self.range;
        let (header, grid) = root.split_vertically(Self::header_height());
        let title = format!("Activations f(x) and derivatives f'(x) on [{lo}, {hi}]");
        let key = draw_title(&header, &title, style::LARGE.title)?;
        draw_key(&key, style::LARGE.label, pen)?;
        for (panel, curve) in grid
            .split_evenly((self.rows(), self.columns()))
            .iter()
            .zip(self.curves)
        {
            draw_chart(panel, &curve.short_name, curve, &PANEL, pen)?;
        }
        Ok(())
    }
}

/// Draws `figure` to `<dir>/<stem>.png` and `<dir>/<stem>.svg`.
fn save(figure: &impl Figure, dir: &Path, stem: &str) -> Result<[PathBuf; 2], PlotError> {
    Ok(style::save_png_and_svg(figure, dir, stem)?)
}

/// The shared chart: title, key (standalone only), grid, zero axes, f(x) and f'(x).
fn draw_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    curve: &Curve,
    look: &Look,
    pen: Pen,
) -> DrawResult<DB> {
    let mut body = draw_title(area, title, look.text.title)?;
    if look.standalone {
        let (key, rest) = body.split_vertically(KEY_HEIGHT);
        draw_key(&key, look.text.label, pen)?;
        body = rest;
    }
    let x = curve.value[0].0..curve.value[curve.value.len() - 1].0;
    let (y_lo, y_hi) = curve.y_range();
    let mut chart = ChartBuilder::on(&body)
        .margin(look.margin)
        // Room for half of the last x label.
        .margin_right(2 * look.margin)
        .x_label_area_size(look.x_label_area)
        .y_label_area_size(look.y_label_area)
        .build_cartesian_2d(x, y_lo..y_hi)?;
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(style::GRID_MAJOR)
        .light_line_style(style::GRID_MINOR)
        .max_light_lines(1)
        .axis_style(style::ZERO_AXIS)
        .label_style(style::text(look.text.tick))
        .axis_desc_style(style::text(look.text.label))
        .x_labels(look.ticks)
        .y_labels(look.ticks)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label);
    if look.standalone {
        mesh.x_desc("x").y_desc("y");
    }
    mesh.draw()?;
    let plot = chart.plotting_area();
    draw_zero_axes(plot)?;
    let canvas = plot.strip_coord_spec();
    for line in Line::BOTH {
        for run in pixel_runs(plot, line.points(curve)) {
            line.draw(&canvas, &run, pen)?;
        }
    }
    Ok(())
}

/// Thin lines at x = 0 and y = 0, where they fall inside the chart.
fn draw_zero_axes<DB: DrawingBackend>(plot: &PlotArea<DB>) -> DrawResult<DB> {
    let (x, y) = (plot.get_x_range(), plot.get_y_range());
    if x.contains(&0.0) {
        plot.draw(&PathElement::new(
            vec![(0.0, y.start), (0.0, y.end)],
            style::zero_axis_line(),
        ))?;
    }
    if y.contains(&0.0) {
        plot.draw(&PathElement::new(
            vec![(x.start, 0.0), (x.end, 0.0)],
            style::zero_axis_line(),
        ))?;
    }
    Ok(())
}

/// The samples as polylines in pixels relative to the plotting area, split where values
/// overflowed (so gaps stay gaps), without repeats of the same pixel.
fn pixel_runs<DB: DrawingBackend>(
    plot: &PlotArea<DB>,
    points: &[(f64, f64)],
) -> Vec<Vec<(i32, i32)>> {
    points
        .split(|(_, y)| !y.is_finite())
        .filter(|run| !run.is_empty())
        .map(|run| to_pixels(plot, run))
        .collect()
}

/// Draws `title` centred at the top of `area`, shrunk to fit its width; returns the rest.
fn draw_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    size: f64,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let room = area.dim_in_pixel().0.saturating_sub(8);
    let mut size = size;
    // Titles are user specs of any length; shrinking beats clipping.
    while size > 8.0 && area.estimate_text_size(title, &style::title_text(size))?.0 > room {
        size -= 2.0; // even sizes only, see `style::TextSizes`
    }
    area.margin(6, 0, 0, 0)
        .titled(title, style::title_text(size))
}

/// The line key, centred in `band`: a sample of each line followed by its label.
fn draw_key<DB: DrawingBackend>(
    band: &DrawingArea<DB, Shift>,
    size: f64,
    pen: Pen,
) -> DrawResult<DB> {
    const SAMPLE: i32 = 36;
    const GAP: i32 = 8;
    const SPACING: i32 = 28;
    let font = style::text(size);
    let mut widths = Vec::new();
    for line in Line::BOTH {
        widths.push(band.estimate_text_size(line.label(), &font)?.0 as i32);
    }
    let total: i32 = widths.iter().map(|w| SAMPLE + GAP + w).sum::<i32>() + SPACING;
    let (w, h) = band.dim_in_pixel();
    let (mut x, y) = ((w as i32 - total) / 2, h as i32 / 2);
    for (line, width) in Line::BOTH.into_iter().zip(widths) {
        line.draw(band, &[(x, y), (x + SAMPLE, y)], pen)?;
        let label_pos = (x + SAMPLE + GAP, y);
        band.draw_text(
            line.label(),
            &font.pos(Pos::new(HPos::Left, VPos::Center)),
            label_pos,
        )?;
        x += SAMPLE + GAP + width + SPACING;
    }
    Ok(())
}
