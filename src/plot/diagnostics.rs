//! Plots of the activation diagnostics: dead channels per Conv and epoch as a heatmap,
//! weight-gradient norms per Conv at the first and last epoch, and learned activation
//! parameters against epoch. Each is written as PNG and SVG.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::comparison::{
    add_key_entry, build_chart, draw_key, save, styled_mesh, ComparePlotError, CHART_SIZE,
};
use super::style::{self, padded, span, to_pixels, DrawResult, Figure, Pen};

/// Dead-channel fractions of one activation: `values[module][epoch]`, NaN where a module
/// has no value at that epoch.
pub struct DeadHeatmap<'a> {
    pub title: String,
    pub modules: &'a [String],
    pub epochs: &'a [usize],
    pub values: &'a [Vec<f64>],
}

/// Writes `<dir>/<stem>.png` and `.svg`.
pub fn dead_heatmap(
    map: &DeadHeatmap,
    dir: &Path,
    stem: &str,
) -> Result<[PathBuf; 2], ComparePlotError> {
    save(map, dir, stem)
}

impl DeadHeatmap<'_> {
    const ROW: u32 = 14;
    const LEFT: u32 = 170;
    const TOP: u32 = 60;
    const BOTTOM: u32 = 70;
    const SCALE_WIDTH: u32 = 90;
}

/// White (0) to dark red (1).
fn heat(fraction: f64) -> RGBColor {
    let t = fraction.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 165.0), mix(255.0, 15.0), mix(255.0, 21.0))
}

impl Figure for DeadHeatmap<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.modules.len().max(1) as u32;
        (900, Self::TOP + Self::ROW * rows + Self::BOTTOM)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, _: Pen) -> DrawResult<DB> {
        let (width, _) = self.size();
        let text = style::text(12.0);
        root.draw(&Text::new(
            self.title.clone(),
            (16, 16),
            style::title_text(18.0),
        ))?;
        let cols = self.epochs.len().max(1) as i32;
        let left = Self::LEFT as i32;
        let right = (width - Self::SCALE_WIDTH) as i32;
        let cell_w = ((right - left) / cols).max(1);
        let top = Self::TOP as i32;
        let row_h = Self::ROW as i32;
        for (r, (module, row)) in self.modules.iter().zip(self.values).enumerate() {
            let y = top + r as i32 * row_h;
            root.draw(&Text::new(module.clone(), (8, y + 1), text.clone()))?;
            for (c, &v) in row.iter().enumerate() {
                let x = left + c as i32 * cell_w;
                let color = if v.is_finite() {
                    heat(v)
                } else {
                    style::GRID_MINOR
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell_w, y + row_h)],
                    color.filled(),
                ))?;
            }
        }
        let bottom = top + self.modules.len() as i32 * row_h;
        root.draw(&Rectangle::new(
            [(left, top), (left + cols * cell_w, bottom)],
            style::ZERO_AXIS.stroke_width(1),
        ))?;
        // Epoch labels: at most ten.
        let step = (self.epochs.len() / 10).max(1);
        for (c, epoch) in self.epochs.iter().enumerate().step_by(step) {
            let x = left + c as i32 * cell_w + cell_w / 2 - 6;
            root.draw(&Text::new(epoch.to_string(), (x, bottom + 6), text.clone()))?;
        }
        root.draw(&Text::new(
            "epoch",
            (left + cols * cell_w / 2 - 20, bottom + 28),
            style::text(14.0),
        ))?;
        // The colour scale, 0 to 100%.
        let scale_x = right + 30;
        let steps = 20;
        let scale_h = (bottom - top).max(100) / steps;
        for i in 0..steps {
            let y = top + (steps - 1 - i) * scale_h;
            root.draw(&Rectangle::new(
                [(scale_x, y), (scale_x + 16, y + scale_h)],
                heat((i as f64 + 0.5) / steps as f64).filled(),
            ))?;
        }
        root.draw(&Text::new("100%", (scale_x + 20, top), text.clone()))?;
        root.draw(&Text::new(
            "0%",
            (scale_x + 20, top + steps * scale_h - 12),
            text.clone(),
        ))?;
        Ok(())
    }
}

/// One line in a panel: its name in the key, its colour and its (x, y) points.
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub values: Vec<(f64, f64)>,
}

/// Panels side by side that share their axes' names, each with lines and a key.
pub struct LinePanels {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    /// Draw y on a log10 scale (values ≤ 0 are dropped).
    pub log_y: bool,
    /// x is a whole number (an epoch, an index): ticks on whole numbers only.
    pub whole_x: bool,
    pub panels: Vec<(String, Vec<Series>)>,
}

/// Writes `<dir>/<stem>.png` and `.svg`; `None` when no panel has a point.
pub fn line_panels(
    figure: &LinePanels,
    dir: &Path,
    stem: &str,
) -> Result<Option<[PathBuf; 2]>, ComparePlotError> {
    let any = figure
        .panels
        .iter()
        .any(|(_, series)| series.iter().any(|s| !s.values.is_empty()));
    if !any {
        return Ok(None);
    }
    save(figure, dir, stem).map(Some)
}

impl LinePanels {
    fn points(&self, s: &Series) -> Vec<(f64, f64)> {
        s.values
            .iter()
            .filter(|&&(_, y)| y.is_finite() && (!self.log_y || y > 0.0))
            .map(|&(x, y)| (x, if self.log_y { y.log10() } else { y }))
            .collect()
    }
}

impl Figure for LinePanels {
    fn size(&self) -> (u32, u32) {
        let (w, h) = CHART_SIZE;
        (w * self.panels.len().max(1) as u32 * 3 / 4, h * 3 / 4)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, pen: Pen) -> DrawResult<DB> {
        let body = root.titled(&self.title, style::title_text(18.0))?;
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        for ((caption, series), area) in self.panels.iter().zip(&areas) {
            let all: Vec<(f64, f64)> = series.iter().flat_map(|s| self.points(s)).collect();
            if all.is_empty() {
                continue;
            }
            let (x_lo, x_hi) = padded(span(all.iter().map(|p| p.0)));
            let (y_lo, y_hi) = padded(span(all.iter().map(|p| p.1)));
            let mut chart = build_chart(area, caption, x_lo..x_hi, y_lo..y_hi, 64)?;
            let log = self.log_y;
            let y_format = move |y: &f64| {
                if log {
                    format!("{:.0e}", 10f64.powf(*y))
                } else {
                    style::tick_label(y)
                }
            };
            let whole = |x: &f64| format!("{x:.0}");
            let mut mesh = styled_mesh(&mut chart);
            mesh.x_desc(&self.x_desc)
                .y_desc(&self.y_desc)
                .y_label_formatter(&y_format);
            if self.whole_x {
                let (lo, hi) = span(all.iter().map(|p| p.0));
                mesh.x_labels(((hi - lo).round() as usize + 1).min(10))
                    .x_label_formatter(&whole);
            }
            mesh.draw()?;
            let plot = chart.plotting_area();
            let canvas = plot.strip_coord_spec();
            for s in series {
                style::draw_path(&canvas, &to_pixels(plot, &self.points(s)), s.color, pen)?;
            }
            for s in series.iter().filter(|s| !s.values.is_empty()) {
                add_key_entry(&mut chart, &s.name, s.color)?;
            }
            draw_key(&mut chart)?;
        }
        Ok(())
    }
}
