//! Activation curves and their derivatives: one chart per activation (PNG and SVG) and
//! an overview grid. The values come from [`evaluate`], i.e. from the real modules.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{
    self, tick_label, to_pixels, DrawResult, Figure, FontError, Pen, PlotArea, TextSizes,
};
use crate::act::evaluate::evaluate;
use crate::act::zoo::ACTIVATIONS;
use crate::act::ActSpec;

pub struct PlotOptions {
    pub range: (f64, f64),
    pub out: PathBuf,
}

/// Each message names what failed and why; causes are part of the message, not a chain.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: no activations given")]
    NoSpecs,
    #[error("x range [{lo}, {hi}]: the minimum must be less than the maximum, both finite in f32")]
    BadRange { lo: f64, hi: f64 },
    #[error(
        "{spec} is not a pointwise activation (each output depends on other inputs), \
         so it cannot be drawn as a curve"
    )]
    NotPointwise { spec: String },
    #[error("evaluating {spec}: {error}")]
    Eval {
        spec: String,
        error: candle_core::Error,
    },
    #[error("creating the output folder {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("drawing {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error(transparent)]
    Font(#[from] FontError),
}

/// Points per curve: enough for smooth curves and sharp kinks at chart width.
const SAMPLES: usize = 801;
const CHART_SIZE: (u32, u32) = (800, 600);
const PANEL_SIZE: (u32, u32) = (320, 250);
const OVERVIEW_COLUMNS: usize = 5;
/// Height of the band holding the line key, under a title.
const KEY_HEIGHT: u32 = 28;

/// Every pointwise activation at its defaults, plus GELU's tanh approximation right after GELU.
pub fn default_plot_specs() -> Vec<ActSpec> {
    ACTIVATIONS
        .iter()
        .filter(|def| def.pointwise)
        .flat_map(|&def| {
            let spec = ActSpec::of(def);
            let tanh_gelu = (def.name == "GELU")
                .then(|| ActSpec::parse("nn.GELU(approximate='tanh')"))
                .and_then(Result::ok);
            std::iter::once(spec).chain(tanh_gelu)
        })
        .collect()
}

/// Writes `<slug>.png` and `<slug>.svg` per activation and `overview.png`/`.svg` into
/// `opts.out`; returns every file written.
pub fn plot_activations(specs: &[ActSpec], opts: &PlotOptions) -> Result<Vec<PathBuf>, PlotError> {
    let specs = validate(specs, opts.range)?;
    style::register_fonts()?;
    std::fs::create_dir_all(&opts.out).map_err(|error| PlotError::CreateDir {
        path: opts.out.clone(),
        error,
    })?;
    let curves = specs
        .into_iter()
        .map(|spec| Curve::sample(spec, opts.range))
        .collect::<Result<Vec<_>, _>>()?;
    let mut written = Vec::new();
    for curve in &curves {
        written.extend(save(&SingleChart(curve), &opts.out, &slug(curve.spec))?);
    }
    let overview = Overview {
        curves: &curves,
        range: opts.range,
    };
    written.extend(save(&overview, &opts.out, "overview")?);
    Ok(written)
}

/// Checks everything before drawing anything; drops repeated specs, keeping the first.
fn validate(specs: &[ActSpec], (lo, hi): (f64, f64)) -> Result<Vec<&ActSpec>, PlotError> {
    // Activations run in f32, so the range must survive the conversion.
    let (lo32, hi32) = (lo as f32, hi as f32);
    if !(lo32 < hi32 && lo32.is_finite() && hi32.is_finite()) {
        return Err(PlotError::BadRange { lo, hi });
    }
    if specs.is_empty() {
        return Err(PlotError::NoSpecs);
    }
    let mut unique: Vec<&ActSpec> = Vec::new();
    for spec in specs {
        if !spec.def().pointwise {
            return Err(PlotError::NotPointwise {
                spec: spec.to_string(),
            });
        }
        if !unique.contains(&spec) {
            unique.push(spec);
        }
    }
    Ok(unique)
}

/// A short name for `spec`, for panel titles and keys: the class name (`SiLU`), plus the
/// arguments when they are not the defaults (`LeakyReLU(negative_slope=0.2)`).
pub fn short_name(spec: &ActSpec) -> String {
    if *spec == ActSpec::of(spec.def()) {
        return spec.def().name.to_string();
    }
    let full = spec.to_string();
    full.strip_prefix("nn.").unwrap_or(&full).to_string()
}

/// A file stem for `spec`: its canonical string in lower case without the `nn.` prefix,
/// each run of characters other than [a-z0-9.-] turned into one `_`.
fn slug(spec: &ActSpec) -> String {
    let full = spec.to_string().to_lowercase();
    let text = full.strip_prefix("nn.").unwrap_or(&full);
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
            slug.push(c);
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    slug.trim_matches('_').to_string()
}

/// One activation sampled over the x range.
struct Curve<'a> {
    spec: &'a ActSpec,
    value: Vec<(f64, f64)>,
    derivative: Vec<(f64, f64)>,
}

impl<'a> Curve<'a> {
    fn sample(spec: &'a ActSpec, (lo, hi): (f64, f64)) -> Result<Self, PlotError> {
        let step = (hi - lo) / (SAMPLES - 1) as f64;
        let xs: Vec<f64> = (0..SAMPLES).map(|i| lo + step * i as f64).collect();
        let e = evaluate(spec, &xs).map_err(|error| PlotError::Eval {
            spec: spec.to_string(),
            error,
        })?;
        let pairs = |ys: &[f64]| e.x.iter().copied().zip(ys.iter().copied()).collect();
        Ok(Curve {
            spec,
            value: pairs(&e.y),
            derivative: pairs(&e.dydx),
        })
    }

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

    fn points<'c>(self, curve: &'c Curve) -> &'c [(f64, f64)] {
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

struct SingleChart<'a>(&'a Curve<'a>);

impl Figure for SingleChart<'_> {
    fn size(&self) -> (u32, u32) {
        CHART_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        draw_chart(root, &self.0.spec.to_string(), self.0, &STANDALONE, pen)
    }
}

struct Overview<'a> {
    curves: &'a [Curve<'a>],
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
            draw_chart(panel, &short_name(curve.spec), curve, &PANEL, pen)?;
        }
        Ok(())
    }
}

/// Draws `figure` to `<dir>/<stem>.png` and `<dir>/<stem>.svg`.
fn save(figure: &impl Figure, dir: &Path, stem: &str) -> Result<[PathBuf; 2], PlotError> {
    style::save_png_and_svg(figure, dir, stem).map_err(|failure| PlotError::Draw {
        path: failure.path,
        message: failure.message,
    })
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
