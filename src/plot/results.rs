//! `results.png` from a training run's `results.csv`, as ultralytics' `plot_results` draws
//! it: ten panels (losses, precision, recall, mAPs) against epoch, each with a smoothed
//! dotted line; several runs can share the panels to be compared.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::style::{self, padded, span, to_pixels, DrawResult, FontError, Pen, TextSizes};

/// Each message names the file (and line) at fault and why.
#[derive(Debug, thiserror::Error)]
pub enum ResultsPlotError {
    #[error("nothing to plot: no runs given")]
    NoRuns,
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: the file is empty; expected a header line of column names", path.display())]
    NoHeader { path: PathBuf },
    #[error("{}: the header has no `epoch` column", path.display())]
    NoEpochColumn { path: PathBuf },
    #[error("{}: the header has none of the plotted columns ({})", path.display(), PANELS.join(", "))]
    NoPlottedColumns { path: PathBuf },
    #[error("{}: no complete epoch row after the header, so nothing to plot yet", path.display())]
    NoEpochs { path: PathBuf },
    #[error("{} line {line}: {found} fields, but the header has {expected}", path.display())]
    FieldCount {
        path: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("{} line {line}, column `{column}`: `{text}` is not a number", path.display())]
    NotANumber {
        path: PathBuf,
        line: usize,
        column: String,
        text: String,
    },
    #[error("creating the output folder {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("drawing {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error(transparent)]
    Font(#[from] FontError),
}

/// The panels in grid order, as ultralytics: train losses, precision and recall on top,
/// val losses and the mAPs below. YOLOv5's columns, then ultralytics 8's.
const PANELS: [&str; 10] = [
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
];
const PANELS_V8: [&str; 10] = [
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "metrics/precision(B)",
    "metrics/recall(B)",
    "val/box_loss",
    "val/cls_loss",
    "val/dfl_loss",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
];
const GRID: (usize, usize) = (2, 5);
const FIGURE_SIZE: (u32, u32) = (1600, 800);
const TEXT: TextSizes = TextSizes {
    title: 16.0,
    label: 16.0,
    tick: 12.0,
};

/// Ultralytics smooths with `gaussian_filter1d(y, sigma=3)`.
const SMOOTH_SIGMA: f64 = 3.0;
/// With fewer points the filter spans the whole run and the smoothed line is just its mean.
const SMOOTH_MIN_POINTS: usize = 2 * SMOOTH_SIGMA as usize + 1;

const MARKER_RADIUS: u32 = 3;
/// Dash and gap in pixels: with the two-pixel pen, a row of dots like matplotlib's `:`.
const DOTS: (u32, u32) = (1, 4);
const MAX_X_TICKS: usize = 6;
const Y_TICKS: usize = 6;

/// Draws `results.png` for one run from its `results.csv` into `out` (a 1600×800 PNG; its
/// folder is created), with a key naming the run after the csv's folder (`exp3` for
/// `runs/train/exp3/results.csv`) and the smoothed line `smooth`, as ultralytics labels
/// them. Columns missing from the csv leave their panel blank.
/// A csv with a header but no complete row yet is an error ([`ResultsPlotError::NoEpochs`]):
/// an empty figure would look like a run that learned nothing.
pub fn plot_results(csv: &Path, out: &Path) -> Result<(), ResultsPlotError> {
    let run = Run::load(run_label(csv), csv)?;
    save(&[run], out)
}

/// Draws several runs, each `(label, results.csv)`, into the same panels of one figure with
/// a key of the labels; a panel is drawn when any run has its column.
pub fn plot_results_multi(runs: &[(String, PathBuf)], out: &Path) -> Result<(), ResultsPlotError> {
    if runs.is_empty() {
        return Err(ResultsPlotError::NoRuns);
    }
    let runs = runs
        .iter()
        .map(|(label, csv)| Run::load(label.clone(), csv))
        .collect::<Result<Vec<_>, _>>()?;
    save(&runs, out)
}

/// A run's name: the folder holding its csv, else the csv's own stem.
fn run_label(csv: &Path) -> String {
    let folder = csv.parent().and_then(Path::file_name);
    let name = folder
        .or_else(|| csv.file_stem())
        .unwrap_or(csv.as_os_str());
    name.to_string_lossy().into_owned()
}

/// A results.csv read into columns: the header's names and, per column, one value per
/// complete row.
struct ResultsTable {
    names: Vec<String>,
    columns: Vec<Vec<f64>>,
}

impl ResultsTable {
    fn read(path: &Path) -> Result<Self, ResultsPlotError> {
        let text = std::fs::read_to_string(path).map_err(|error| ResultsPlotError::Read {
            path: path.into(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Fields are trimmed, as ultralytics right-aligns them in 20 characters. A row ends
    /// with its newline, so a last line without one that does not parse is a row still
    /// being written (or cut off by a crash) and is skipped.
    fn parse(path: &Path, text: &str) -> Result<Self, ResultsPlotError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(ResultsPlotError::NoHeader { path: path.into() });
        };
        let names: Vec<String> = header
            .split(',')
            .map(|name| name.trim().to_string())
            .collect();
        let mut columns = vec![Vec::new(); names.len()];
        let rows: Vec<(usize, &str)> = lines.collect();
        let unfinished_tail = !text.ends_with('\n');
        for (k, &(index, line)) in rows.iter().enumerate() {
            match parse_row(line, &names, path, index + 1) {
                Ok(values) => columns
                    .iter_mut()
                    .zip(values)
                    .for_each(|(column, value)| column.push(value)),
                Err(_) if unfinished_tail && k + 1 == rows.len() => {}
                Err(error) => return Err(error),
            }
        }
        if columns.first().is_none_or(Vec::is_empty) {
            return Err(ResultsPlotError::NoEpochs { path: path.into() });
        }
        Ok(ResultsTable { names, columns })
    }

    fn column(&self, name: &str) -> Option<&[f64]> {
        let index = self.names.iter().position(|n| n == name)?;
        Some(&self.columns[index])
    }
}

/// One row's values, one per header name; `line_number` is 1-based, for the error.
fn parse_row(
    line: &str,
    names: &[String],
    path: &Path,
    line_number: usize,
) -> Result<Vec<f64>, ResultsPlotError> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != names.len() {
        return Err(ResultsPlotError::FieldCount {
            path: path.into(),
            line: line_number,
            found: fields.len(),
            expected: names.len(),
        });
    }
    let parse = |(text, name): (&str, &String)| {
        text.parse().map_err(|_| ResultsPlotError::NotANumber {
            path: path.into(),
            line: line_number,
            column: name.clone(),
            text: text.to_string(),
        })
    };
    fields.into_iter().zip(names).map(parse).collect()
}

/// One column against epoch, and its smoothed line when there are enough points.
struct Curve {
    points: Vec<(f64, f64)>,
    smooth: Option<Vec<(f64, f64)>>,
}

impl Curve {
    /// `None` when no value is finite. Non-finite values (a diverged loss) are left out
    /// so that they cannot blow up the axes.
    fn new(epochs: &[f64], values: &[f64]) -> Option<Self> {
        let points: Vec<(f64, f64)> = epochs
            .iter()
            .copied()
            .zip(values.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if points.is_empty() {
            return None;
        }
        let smooth = (points.len() >= SMOOTH_MIN_POINTS).then(|| {
            let ys: Vec<f64> = points.iter().map(|&(_, y)| y).collect();
            let smoothed = gaussian_filter1d(&ys, SMOOTH_SIGMA);
            points.iter().map(|&(x, _)| x).zip(smoothed).collect()
        });
        Some(Curve { points, smooth })
    }

    fn all_points(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.points.iter().chain(self.smooth.iter().flatten())
    }
}

/// scipy's `gaussian_filter1d` with its defaults: the kernel truncated at 4 sigma, and the
/// edges extended by reflection (`d c b a | a b c d | d c b a`, repeated for short inputs).
fn gaussian_filter1d(values: &[f64], sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as isize;
    let kernel: Vec<(isize, f64)> = (-radius..=radius)
        .map(|offset| (offset, (-0.5 * (offset as f64 / sigma).powi(2)).exp()))
        .collect();
    let total: f64 = kernel.iter().map(|&(_, weight)| weight).sum();
    let len = values.len() as isize;
    (0..len)
        .map(|i| {
            kernel
                .iter()
                .map(|&(offset, weight)| weight * values[reflect(i + offset, len)])
                .sum::<f64>()
                / total
        })
        .collect()
}

/// The index that `index` reflects to in `0..len`, as in scipy's `reflect` mode.
fn reflect(index: isize, len: isize) -> usize {
    let period = 2 * len;
    let folded = index.rem_euclid(period);
    (if folded < len {
        folded
    } else {
        period - 1 - folded
    }) as usize
}

/// One run's curves, in its panels' order; `None` where its csv lacks the column.
struct Run {
    label: String,
    /// [`PANELS`], or [`PANELS_V8`] for a results.csv of ultralytics 8's layout.
    titles: &'static [&'static str; 10],
    panels: Vec<Option<Curve>>,
}

impl Run {
    fn load(label: String, csv: &Path) -> Result<Self, ResultsPlotError> {
        let table = ResultsTable::read(csv)?;
        let epochs = table
            .column("epoch")
            .ok_or_else(|| ResultsPlotError::NoEpochColumn { path: csv.into() })?;
        let titles = match table.column("train/dfl_loss") {
            Some(_) => &PANELS_V8,
            None => &PANELS,
        };
        if titles.iter().all(|name| table.column(name).is_none()) {
            return Err(ResultsPlotError::NoPlottedColumns { path: csv.into() });
        }
        let panels = titles
            .iter()
            .map(|name| {
                table
                    .column(name)
                    .and_then(|values| Curve::new(epochs, values))
            })
            .collect();
        Ok(Run {
            label,
            titles,
            panels,
        })
    }
}

/// The colours of one run's data line (with markers) and smoothed line.
#[derive(Clone, Copy)]
struct RunColors {
    data: RGBColor,
    smooth: RGBColor,
}

/// A single run is blue with an orange smoothed line, as ultralytics; with several, each
/// run's smoothed line takes the run's colour.
fn run_colors(count: usize) -> Vec<RunColors> {
    if count == 1 {
        return vec![RunColors {
            data: style::PRIMARY,
            smooth: style::SECONDARY,
        }];
    }
    (0..count)
        .map(|i| RunColors {
            data: style::series_color(i, count),
            smooth: style::series_color(i, count),
        })
        .collect()
}

/// How a line is drawn: data with a marker at every epoch, smoothed lines dotted.
#[derive(Clone, Copy)]
enum Stroke {
    Markers,
    Dotted,
}

struct KeyEntry {
    label: String,
    color: RGBColor,
    stroke: Stroke,
}

/// The key: each run, then the smoothed line if any panel has one (in grey for several
/// runs, as it takes each run's colour).
fn key_entries(runs: &[Run], colors: &[RunColors]) -> Vec<KeyEntry> {
    let mut entries: Vec<KeyEntry> = runs
        .iter()
        .zip(colors)
        .map(|(run, colors)| KeyEntry {
            label: run.label.clone(),
            color: colors.data,
            stroke: Stroke::Markers,
        })
        .collect();
    let smoothed = runs
        .iter()
        .flat_map(|run| run.panels.iter().flatten())
        .any(|curve| curve.smooth.is_some());
    if smoothed {
        let color = if runs.len() == 1 {
            colors[0].smooth
        } else {
            style::ZERO_AXIS
        };
        entries.push(KeyEntry {
            label: "smooth".into(),
            color,
            stroke: Stroke::Dotted,
        });
    }
    entries
}

/// The one drawing both entry points share: fonts, folder, figure, PNG.
fn save(runs: &[Run], out: &Path) -> Result<(), ResultsPlotError> {
    style::register_fonts()?;
    if let Some(dir) = out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| ResultsPlotError::CreateDir {
            path: dir.into(),
            error,
        })?;
    }
    let root = BitMapBackend::new(out, FIGURE_SIZE).into_drawing_area();
    root.fill(&style::BACKGROUND)
        .and_then(|()| draw_figure(&root, runs, Pen::Stamp))
        .and_then(|()| root.present())
        .map_err(|e| ResultsPlotError::Draw {
            path: out.into(),
            message: e.to_string(),
        })
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[Run],
    pen: Pen,
) -> DrawResult<DB> {
    let colors = run_colors(runs.len());
    let key = KeyLayout::new(root, key_entries(runs, &colors))?;
    let (header, grid) = root.split_vertically(key.height());
    key.draw(&header, pen)?;
    let titles = runs.first().map_or(&PANELS, |run| run.titles);
    for (index, (panel, title)) in grid.split_evenly(GRID).iter().zip(titles).enumerate() {
        let lines: Vec<(&Curve, RunColors)> = runs
            .iter()
            .zip(&colors)
            .filter_map(|(run, &colors)| Some((run.panels[index].as_ref()?, colors)))
            .collect();
        if !lines.is_empty() {
            draw_panel(panel, title, &lines, pen)?;
        }
    }
    Ok(())
}

/// One panel: its column name as title, grid, and each run's data and smoothed lines.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    lines: &[(&Curve, RunColors)],
    pen: Pen,
) -> DrawResult<DB> {
    let body = area
        .margin(8, 0, 0, 0)
        .titled(title, style::title_text(TEXT.title))?;
    let points = || lines.iter().flat_map(|(curve, _)| curve.all_points());
    let epochs = span(points().map(|&(x, _)| x));
    let (x_lo, x_hi) = padded(epochs);
    let (y_lo, y_hi) = padded(span(points().map(|&(_, y)| y)));
    let mut chart = ChartBuilder::on(&body)
        .margin(6)
        .margin_right(14)
        .x_label_area_size(22)
        .y_label_area_size(52)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    // Epochs are whole numbers: no more ticks than epochs keeps the ticks on them.
    let x_ticks = ((epochs.1 - epochs.0).round() as usize + 1).min(MAX_X_TICKS);
    chart
        .configure_mesh()
        .bold_line_style(style::GRID_MAJOR)
        .light_line_style(style::GRID_MINOR)
        .max_light_lines(1)
        .axis_style(style::ZERO_AXIS)
        .label_style(style::text(TEXT.tick))
        .x_labels(x_ticks)
        .y_labels(Y_TICKS)
        .x_label_formatter(&|epoch| format!("{epoch:.0}"))
        .draw()?;
    let plot = chart.plotting_area();
    let canvas = plot.strip_coord_spec();
    for (curve, colors) in lines {
        draw_line(
            &canvas,
            &to_pixels(plot, &curve.points),
            colors.data,
            Stroke::Markers,
            pen,
        )?;
        if let Some(smooth) = &curve.smooth {
            draw_line(
                &canvas,
                &to_pixels(plot, smooth),
                colors.smooth,
                Stroke::Dotted,
                pen,
            )?;
        }
    }
    Ok(())
}

/// Draws a polyline given in pixels of `area`, in `pen`'s passes.
fn draw_line<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pixels: &[(i32, i32)],
    color: RGBColor,
    stroke: Stroke,
    pen: Pen,
) -> DrawResult<DB> {
    for ((dx, dy), shape) in pen.passes(color) {
        let shifted: Vec<(i32, i32)> = pixels.iter().map(|&(x, y)| (x + dx, y + dy)).collect();
        match stroke {
            Stroke::Markers => area.draw(&PathElement::new(shifted, shape))?,
            Stroke::Dotted => area.draw(&DashedPathElement::new(shifted, DOTS.0, DOTS.1, shape))?,
        }
    }
    if let Stroke::Markers = stroke {
        // Centred on the line, which the pen draws from each pixel towards the lower right.
        let centre = style::LINE_WIDTH as i32 / 2;
        for &(x, y) in pixels {
            area.draw(&Circle::new(
                (x + centre, y + centre),
                MARKER_RADIUS,
                color.filled(),
            ))?;
        }
    }
    Ok(())
}

/// The key above the panels, its entries wrapped onto as many centred rows as the
/// figure's width needs (comparisons can have many runs).
struct KeyLayout {
    /// Each row's entries with their widths in pixels.
    rows: Vec<Vec<(KeyEntry, i32)>>,
    width: i32,
}

impl KeyLayout {
    const SAMPLE: i32 = 36;
    const GAP: i32 = 10;
    const SPACING: i32 = 28;
    const ROW_HEIGHT: i32 = 24;
    const PADDING: i32 = 10;

    fn new<DB: DrawingBackend>(
        area: &DrawingArea<DB, Shift>,
        entries: Vec<KeyEntry>,
    ) -> Result<Self, DrawingAreaErrorKind<DB::ErrorType>> {
        let width = area.dim_in_pixel().0 as i32 - 2 * Self::PADDING;
        let mut rows: Vec<Vec<(KeyEntry, i32)>> = Vec::new();
        let mut row_width = 0;
        for entry in entries {
            let text_width = area
                .estimate_text_size(&entry.label, &style::text(TEXT.label))?
                .0 as i32;
            let entry_width = Self::SAMPLE + Self::GAP + text_width;
            match rows.last_mut() {
                Some(row) if row_width + Self::SPACING + entry_width <= width => {
                    row.push((entry, entry_width));
                    row_width += Self::SPACING + entry_width;
                }
                _ => {
                    rows.push(vec![(entry, entry_width)]);
                    row_width = entry_width;
                }
            }
        }
        Ok(KeyLayout { rows, width })
    }

    fn height(&self) -> u32 {
        (self.rows.len() as i32 * Self::ROW_HEIGHT + 2 * Self::PADDING) as u32
    }

    fn draw<DB: DrawingBackend>(&self, band: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        let font = style::text(TEXT.label).pos(Pos::new(HPos::Left, VPos::Center));
        // Plotters centres a label's whole line box, descenders included, which leaves
        // lowercase letters sitting high of the sample line.
        let lower_label = (0.15 * TEXT.label).round() as i32;
        for (r, row) in self.rows.iter().enumerate() {
            let row_width =
                row.iter().map(|(_, w)| *w).sum::<i32>() + Self::SPACING * (row.len() as i32 - 1);
            let mut x = Self::PADDING + (self.width - row_width) / 2;
            let y = Self::PADDING + Self::ROW_HEIGHT * r as i32 + Self::ROW_HEIGHT / 2;
            for (entry, entry_width) in row {
                let sample = [(x, y), (x + Self::SAMPLE / 2, y), (x + Self::SAMPLE, y)];
                draw_line(band, &sample, entry.color, entry.stroke, pen)?;
                band.draw_text(
                    &entry.label,
                    &font,
                    (x + Self::SAMPLE + Self::GAP, y + lower_label),
                )?;
                x += entry_width + Self::SPACING;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from scipy.ndimage.gaussian_filter1d(y, 3) (scipy 1.16).
    #[test]
    fn smoothing_matches_scipy_including_inputs_shorter_than_the_kernel() {
        let short = gaussian_filter1d(&[0.0, 1.0, 0.0, 0.0, 5.0, 2.0, 3.0], 3.0);
        let scipy = [
            0.9121445294245609,
            1.0415172910797064,
            1.275744103382708,
            1.569489065213704,
            1.864740962273765,
            2.1021783214277017,
            2.2341857271978545,
        ];
        for (ours, theirs) in short.iter().zip(scipy) {
            assert!((ours - theirs).abs() < 1e-12, "{ours} vs {theirs}");
        }
        let losses = [
            0.1, 0.08, 0.07, 0.065, 0.06, 0.058, 0.055, 0.054, 0.052, 0.05, 0.049, 0.048, 0.047,
            0.046, 0.045, 0.044, 0.043, 0.042, 0.041, 0.04,
        ];
        let scipy = [
            0.07716125677539247,
            0.07549943333193745,
            0.07252168073219176,
            0.06878507945164092,
            0.06486363653452297,
            0.061191083399032745,
            0.05799745761714317,
            0.05533432143433095,
            0.05314427849502213,
            0.05132858312165942,
            0.04978987502833633,
            0.04844920198308098,
            0.04724859783689681,
            0.046149962241166076,
            0.04513410064947616,
            0.04420170125140467,
            0.043374252976498925,
            0.04269040098748099,
            0.04219725413291257,
            0.04193784201987254,
        ];
        for (ours, theirs) in gaussian_filter1d(&losses, 3.0).iter().zip(scipy) {
            assert!((ours - theirs).abs() < 1e-15, "{ours} vs {theirs}");
        }
    }
}
