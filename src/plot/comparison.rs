//! Plots that compare activations over seeds: mAP50-95 against epoch, the best-epoch mAPs
//! per activation, and mAP50-95 against inference latency. Each is written as PNG and SVG,
//! and an activation keeps its colour (from its place in the list) in every plot.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::chart::MeshStyle;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{
    self, padded, span, tick_label, to_pixels, DrawFailure, DrawResult, Figure, FontError, Pen,
    PlotArea,
};
use crate::util::stats::{summarize, Summary};

#[derive(Debug, thiserror::Error)]
pub enum ComparePlotError {
    #[error(transparent)]
    Draw(#[from] DrawFailure),
    #[error(transparent)]
    Font(#[from] FontError),
}

/// One activation's results, mAPs as fractions (as training reports them).
pub struct ActResults {
    /// The name in keys and on axes (`SiLU`).
    pub name: String,
    /// mAP50-95 against epoch, one curve per run; empty curves are skipped.
    pub curves: Vec<Vec<(usize, f64)>>,
    /// The best epoch's mAP50 and mAP50-95 of each finished run.
    pub map50: Vec<f64>,
    pub map: Vec<f64>,
    pub latency_ms: Option<f64>,
}

/// The plots show mAP in percent.
const PERCENT: f64 = 100.0;
pub(super) const TEXT: style::TextSizes = style::LARGE;
pub(super) const CHART_SIZE: (u32, u32) = (900, 600);
const MAX_EPOCH_TICKS: usize = 10;
/// Half the length of an error bar's end caps, in pixels.
const CAP: i32 = 5;
const POINT_RADIUS: u32 = 5;
const SEED_DOT_RADIUS: u32 = 3;
/// How opaque a min–max band is.
const BAND_ALPHA: f64 = 0.2;

pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type AreaResult<T, DB> = Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// mAP50-95 against epoch: per activation the mean over its runs as a line and their
/// min–max as a shaded band, at each epoch over the runs that reached it (a run still
/// going shortens the band at the end). Writes `map_curves.png`/`.svg` into `dir`;
/// `None` when no run has a curve yet.
pub fn map_curves(
    acts: &[ActResults],
    dir: &Path,
) -> Result<Option<[PathBuf; 2]>, ComparePlotError> {
    let bands: Vec<EpochBand> = acts
        .iter()
        .enumerate()
        .filter_map(|(index, act)| EpochBand::new(act, style::series_color(index, acts.len())))
        .collect();
    if bands.is_empty() {
        return Ok(None);
    }
    save(&CurvesFigure { bands }, dir, "map_curves").map(Some)
}

/// The best-epoch mAP50 and mAP50-95 per activation, side by side: bars of the mean over
/// finished runs with ±1 std error bars and a dot per run. Writes `map_bars.png`/`.svg`;
/// `None` when no run has finished.
pub fn map_bars(acts: &[ActResults], dir: &Path) -> Result<Option<[PathBuf; 2]>, ComparePlotError> {
    if acts.iter().all(|act| act.map.is_empty()) {
        return Ok(None);
    }
    save(&BarsFigure { acts }, dir, "map_bars").map(Some)
}

/// Mean mAP50-95 against latency, one labelled point per activation with a ±1 std error
/// bar. Writes `map_vs_latency.png`/`.svg`; `None` when no activation has both a finished
/// run and a measured latency.
pub fn map_vs_latency(
    acts: &[ActResults],
    dir: &Path,
) -> Result<Option<[PathBuf; 2]>, ComparePlotError> {
    let points: Vec<LatencyPoint> = acts
        .iter()
        .enumerate()
        .filter_map(|(index, act)| LatencyPoint::new(act, style::series_color(index, acts.len())))
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    save(&LatencyFigure { points }, dir, "map_vs_latency").map(Some)
}

pub(super) fn save(
    figure: &impl Figure,
    dir: &Path,
    stem: &str,
) -> Result<[PathBuf; 2], ComparePlotError> {
    style::register_fonts()?;
    Ok(style::save_png_and_svg(figure, dir, stem)?)
}

/// One activation's curves reduced to their mean and range per epoch, in percent.
struct EpochBand {
    name: String,
    color: RGBColor,
    runs: usize,
    /// (epoch, mean, min, max), by epoch.
    points: Vec<(f64, f64, f64, f64)>,
}

impl EpochBand {
    fn new(act: &ActResults, color: RGBColor) -> Option<Self> {
        let curves: Vec<&Vec<(usize, f64)>> = act
            .curves
            .iter()
            .filter(|curve| !curve.is_empty())
            .collect();
        let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for &(epoch, map) in curves.iter().copied().flatten() {
            by_epoch.entry(epoch).or_default().push(map * PERCENT);
        }
        let points: Vec<_> = by_epoch
            .into_iter()
            .map(|(epoch, values)| {
                let (min, max) = span(values.iter().copied());
                (epoch as f64, summarize(&values).mean, min, max)
            })
            .collect();
        (!points.is_empty()).then(|| EpochBand {
            name: act.name.clone(),
            color,
            runs: curves.len(),
            points,
        })
    }

    fn mean_line(&self) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .map(|&(epoch, mean, _, _)| (epoch, mean))
            .collect()
    }

    /// The band's outline: along the maxima, then back along the minima.
    fn outline(&self) -> Vec<(f64, f64)> {
        let upper = self.points.iter().map(|&(epoch, _, _, max)| (epoch, max));
        let lower = self
            .points
            .iter()
            .rev()
            .map(|&(epoch, _, min, _)| (epoch, min));
        upper.chain(lower).collect()
    }
}

struct CurvesFigure {
    bands: Vec<EpochBand>,
}

impl Figure for CurvesFigure {
    fn size(&self) -> (u32, u32) {
        CHART_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        let all = || self.bands.iter().flat_map(|band| &band.points);
        let epochs = span(all().map(|point| point.0));
        let (x_lo, x_hi) = padded(epochs);
        let (y_lo, y_hi) = padded(span(all().flat_map(|&(_, _, min, max)| [min, max])));
        let title = "mAP50-95 per epoch: mean over seeds, band from min to max";
        let mut chart = build_chart(root, title, x_lo..x_hi, y_lo..y_hi, 64)?;
        // Epochs are whole numbers: no more ticks than epochs keeps the ticks on them.
        let x_ticks = ((epochs.1 - epochs.0).round() as usize + 1).min(MAX_EPOCH_TICKS);
        styled_mesh(&mut chart)
            .x_desc("epoch")
            .y_desc("mAP50-95 (%)")
            .x_labels(x_ticks)
            .x_label_formatter(&|epoch| format!("{epoch:.0}"))
            .draw()?;
        let plot = chart.plotting_area();
        for band in self.bands.iter().filter(|band| band.runs >= 2) {
            plot.draw(&Polygon::new(
                band.outline(),
                band.color.mix(BAND_ALPHA).filled(),
            ))?;
        }
        let canvas = plot.strip_coord_spec();
        for band in &self.bands {
            style::draw_path(
                &canvas,
                &to_pixels(plot, &band.mean_line()),
                band.color,
                pen,
            )?;
        }
        for band in &self.bands {
            let runs = if band.runs == 1 {
                "1 run".to_string()
            } else {
                format!("{} runs", band.runs)
            };
            add_key_entry(&mut chart, &format!("{} ({runs})", band.name), band.color)?;
        }
        draw_key(&mut chart)
    }
}

struct BarsFigure<'a> {
    acts: &'a [ActResults],
}

impl BarsFigure<'_> {
    const WIDTH: u32 = 1300;
    const HEADER: u32 = 50;
    const ROW: u32 = 56;
    /// Below the rows: the x axis, its labels and its name.
    const FOOTER: u32 = 110;
}

impl Figure for BarsFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (
            Self::WIDTH,
            Self::HEADER + Self::ROW * self.acts.len() as u32 + Self::FOOTER,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        let title = "Best-epoch mAP per activation: mean ± std over seeds, a dot per seed";
        let body = root
            .margin(10, 0, 0, 0)
            .titled(title, style::title_text(TEXT.title))?;
        let panels = body.split_evenly((1, 2));
        draw_bar_panel(
            &panels[0],
            "mAP50 (%)",
            &BarRow::all(self.acts, |act| &act.map50),
            pen,
        )?;
        draw_bar_panel(
            &panels[1],
            "mAP50-95 (%)",
            &BarRow::all(self.acts, |act| &act.map),
            pen,
        )
    }
}

/// One activation's bar: its runs' values in percent and their summary.
struct BarRow<'a> {
    name: &'a str,
    color: RGBColor,
    values: Vec<f64>,
    summary: Summary,
}

impl<'a> BarRow<'a> {
    /// A row per activation of the metric `values` picks.
    fn all(acts: &'a [ActResults], values: fn(&ActResults) -> &Vec<f64>) -> Vec<Self> {
        let row = |(index, act): (usize, &'a ActResults)| {
            let values: Vec<f64> = values(act).iter().map(|value| value * PERCENT).collect();
            BarRow {
                name: &act.name,
                color: style::series_color(index, acts.len()),
                summary: summarize(&values),
                values,
            }
        };
        acts.iter().enumerate().map(row).collect()
    }

    /// How far right the bar, its error bar and its dots reach.
    fn extent(&self) -> f64 {
        let error_bar = self.summary.mean + self.summary.std.unwrap_or(0.0);
        self.values.iter().copied().fold(error_bar, f64::max)
    }

    fn value_label(&self) -> String {
        match self.summary.std {
            Some(std) => format!("{:.1} ± {std:.1}", self.summary.mean),
            None => format!("{:.1}", self.summary.mean),
        }
    }
}

/// Horizontal bars, the first activation on top, each named left of the axis.
fn draw_bar_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    axis: &str,
    rows: &[BarRow],
    pen: Pen,
) -> DrawResult<DB> {
    let name_font = style::text(TEXT.tick);
    let mut name_width = 0;
    for row in rows {
        name_width = name_width.max(area.estimate_text_size(row.name, &name_font)?.0);
    }
    let extent = rows
        .iter()
        .filter(|row| row.summary.n > 0)
        .map(BarRow::extent)
        .fold(0.0, f64::max);
    // Room right of the longest bar for its value label.
    let x_max = if extent > 0.0 { extent * 1.3 } else { 1.0 };
    let y_range = -0.5..rows.len() as f64 - 0.5;
    let mut chart = build_chart(area, axis, 0.0..x_max, y_range, name_width + 16)?;
    styled_mesh(&mut chart)
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(axis)
        .draw()?;
    let plot = chart.plotting_area();
    for (index, row) in rows.iter().enumerate() {
        let y = (rows.len() - 1 - index) as f64;
        draw_row_name(area, plot, row.name, y)?;
        draw_bar(plot, row, y, pen)?;
    }
    Ok(())
}

/// `name` right-aligned just left of the plot, level with `y`.
fn draw_row_name<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    plot: &PlotArea<DB>,
    name: &str,
    y: f64,
) -> DrawResult<DB> {
    let (x0, y0) = area.get_base_pixel();
    let (x, row_y) = plot.map_coordinate(&(0.0, y));
    let font = style::text(TEXT.tick).pos(Pos::new(HPos::Right, VPos::Center));
    area.draw_text(name, &font, (x - x0 - 8, row_y - y0))
}

fn draw_bar<DB: DrawingBackend>(
    plot: &PlotArea<DB>,
    row: &BarRow,
    y: f64,
    pen: Pen,
) -> DrawResult<DB> {
    let Summary { n, mean, std } = row.summary;
    if n == 0 {
        return plot.draw(
            &(EmptyElement::at((0.0, y)) + Text::new("no finished run", (8, 0), label_font())),
        );
    }
    const HALF_HEIGHT: f64 = 0.3;
    plot.draw(&Rectangle::new(
        [(0.0, y - HALF_HEIGHT), (mean, y + HALF_HEIGHT)],
        row.color.mix(0.85).filled(),
    ))?;
    if let Some(std) = std {
        draw_error_bar(plot, (mean - std, y), (mean + std, y), pen)?;
    }
    // Hollow, so that dots on top of each other and of the error bar stay apart.
    for &value in &row.values {
        plot.draw(&Circle::new(
            (value, y),
            SEED_DOT_RADIUS,
            style::BACKGROUND.filled(),
        ))?;
        plot.draw(&Circle::new(
            (value, y),
            SEED_DOT_RADIUS,
            style::TEXT.stroke_width(1),
        ))?;
    }
    plot.draw(
        &(EmptyElement::at((row.extent(), y))
            + Text::new(row.value_label(), (10, 0), label_font())),
    )
}

/// Text beside a bar or point: left-aligned, vertically centred on it.
fn label_font() -> TextStyle<'static> {
    style::text(TEXT.tick).pos(Pos::new(HPos::Left, VPos::Center))
}

/// An error bar between two points of the plot, in the text colour, with an end cap
/// across the bar at each end.
fn draw_error_bar<DB: DrawingBackend>(
    plot: &PlotArea<DB>,
    from: (f64, f64),
    to: (f64, f64),
    pen: Pen,
) -> DrawResult<DB> {
    let canvas = plot.strip_coord_spec();
    let ends = to_pixels(plot, &[from, to]);
    style::draw_path(&canvas, &ends, style::TEXT, pen)?;
    let vertical = from.0 == to.0;
    for &(x, y) in &ends {
        let cap = if vertical {
            [(x - CAP, y), (x + CAP, y)]
        } else {
            [(x, y - CAP), (x, y + CAP)]
        };
        style::draw_path(&canvas, &cap, style::TEXT, pen)?;
    }
    Ok(())
}

/// One activation in the latency plot, mAP in percent.
struct LatencyPoint {
    name: String,
    color: RGBColor,
    latency_ms: f64,
    map: Summary,
}

impl LatencyPoint {
    fn new(act: &ActResults, color: RGBColor) -> Option<Self> {
        let latency_ms = act.latency_ms.filter(|ms| ms.is_finite())?;
        let values: Vec<f64> = act.map.iter().map(|map| map * PERCENT).collect();
        (!values.is_empty()).then(|| LatencyPoint {
            name: act.name.clone(),
            color,
            latency_ms,
            map: summarize(&values),
        })
    }

    /// The lowest and highest mAP the point's error bar reaches.
    fn map_range(&self) -> (f64, f64) {
        let std = self.map.std.unwrap_or(0.0);
        (self.map.mean - std, self.map.mean + std)
    }
}

struct LatencyFigure {
    points: Vec<LatencyPoint>,
}

impl Figure for LatencyFigure {
    fn size(&self) -> (u32, u32) {
        CHART_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        let (x_lo, x_hi) = span(self.points.iter().map(|point| point.latency_ms));
        // Extra room on the right for the last point's name.
        let x_range = padded((x_lo, x_hi + 0.15 * (x_hi - x_lo)));
        let y_range = padded(span(
            self.points
                .iter()
                .flat_map(|point| <[f64; 2]>::from(point.map_range())),
        ));
        let title = "mAP50-95 against CPU latency (batch 1): mean ± std over seeds";
        let mut chart = build_chart(root, title, x_range.0..x_range.1, y_range.0..y_range.1, 64)?;
        styled_mesh(&mut chart)
            .x_desc("latency (ms)")
            .y_desc("mAP50-95 (%)")
            .draw()?;
        let plot = chart.plotting_area();
        for point in &self.points {
            let centre = (point.latency_ms, point.map.mean);
            if point.map.std.is_some() {
                let (lo, hi) = point.map_range();
                draw_error_bar(plot, (centre.0, lo), (centre.0, hi), pen)?;
            }
            plot.draw(&Circle::new(centre, POINT_RADIUS, point.color.filled()))?;
            plot.draw(
                &(EmptyElement::at(centre)
                    + Text::new(
                        point.name.clone(),
                        (2 * POINT_RADIUS as i32, 0),
                        label_font(),
                    )),
            )?;
        }
        Ok(())
    }
}

/// A chart with `title` above it, a margin all round and `y_label_width` pixels for the
/// y axis's labels.
pub(super) fn build_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: Range<f64>,
    y: Range<f64>,
    y_label_width: u32,
) -> AreaResult<Chart<'a, DB>, DB> {
    ChartBuilder::on(area)
        .caption(title, style::title_text(TEXT.title))
        .margin(16)
        // Room for half of the last x label.
        .margin_right(32)
        .x_label_area_size(50)
        .y_label_area_size(y_label_width)
        .build_cartesian_2d(x, y)
}

/// The mesh in the shared style, for the caller to name the axes and draw.
pub(super) fn styled_mesh<'a, 'b, DB: DrawingBackend>(
    chart: &'b mut Chart<'a, DB>,
) -> MeshStyle<'a, 'b, RangedCoordf64, RangedCoordf64, DB> {
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(style::GRID_MAJOR)
        .light_line_style(style::GRID_MINOR)
        .max_light_lines(1)
        .axis_style(style::ZERO_AXIS)
        .label_style(style::text(TEXT.tick))
        .axis_desc_style(style::text(TEXT.label))
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label);
    mesh
}

/// Adds `name` with a swatch of `color` to the chart's key; the lines themselves are drawn
/// with the pen, outside plotters' series.
pub(super) fn add_key_entry<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    name: &str,
    color: RGBColor,
) -> DrawResult<DB> {
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())?
        .label(name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 20, y + 3)], color.filled()));
    Ok(())
}

/// The key in the lower right, where rising mAP curves leave room.
pub(super) fn draw_key<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .margin(12)
        .label_font(style::text(TEXT.tick))
        .background_style(style::BACKGROUND.mix(0.85))
        .border_style(style::GRID_MAJOR)
        .draw()
}
