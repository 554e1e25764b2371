//! The report's plots: mAP bars, curves, mAP against latency, and the activation curves.

use std::path::{Path, PathBuf};

use super::table::{ActRow, Table};
use super::ReportError;
use crate::act::curves::{plot_activations, PlotOptions};
use crate::act::ActSpec;
use crate::experiment::record::{RunRecord, RunStatus};
use crate::plot::comparison::{map_bars, map_curves, map_vs_latency, ActResults};

/// The x range of the activation curves, as `actyolo acts plot` draws them.
pub(super) const ACT_PLOT_RANGE: (f64, f64) = (-6.0, 6.0);

/// The plots drawn (for the document) and why the others were not.
#[derive(Default)]
pub(super) struct Plots {
    pub(super) figures: Vec<FigureRef>,
    pub(super) notes: Vec<String>,
    pub(super) files: Vec<PathBuf>,
}

#[derive(Clone)]
pub(super) struct FigureRef {
    pub(super) caption: String,
    pub(super) png: PathBuf,
    pub(super) svg: PathBuf,
}

pub(super) fn draw_plots(table: &Table, dir: &Path) -> Result<Plots, ReportError> {
    let results: Vec<ActResults> = table.rows.iter().map(act_results).collect();
    let mut plots = Plots::default();
    let curves = "mAP50-95 against epoch: the mean over each activation's seeds, the band from their minimum to maximum (finished and running runs).";
    plots.add(
        curves,
        map_curves(&results, dir)?,
        "No run has a validated epoch yet: no curves.",
    );
    let bars = "Best-epoch mAP50 and mAP50-95 per activation: mean over finished seeds, ±1 std error bars, one dot per seed.";
    plots.add(
        bars,
        map_bars(&results, dir)?,
        "No run has finished yet: no bar chart.",
    );
    let latency = "Mean mAP50-95 against CPU latency (batch 1, fused model), ±1 std over seeds.";
    let no_latency = if table.rows.iter().any(|row| row.latency_ms().is_some()) {
        "No activation with a measured latency has a finished run yet: no latency plot."
    } else {
        "Size and latency have not been measured yet: no latency plot."
    };
    plots.add(latency, map_vs_latency(&results, dir)?, no_latency);
    draw_activation_curves(table, dir, &mut plots)?;
    Ok(plots)
}

impl Plots {
    /// A plot function's result: its files and figure, or the note why it drew nothing.
    pub(super) fn add(&mut self, caption: &str, drawn: Option<[PathBuf; 2]>, missing: &str) {
        match drawn {
            Some([png, svg]) => {
                self.files.extend([png.clone(), svg.clone()]);
                self.figures.push(FigureRef {
                    caption: caption.into(),
                    png,
                    svg,
                });
            }
            None if missing.is_empty() => {}
            None => self.notes.push(missing.into()),
        }
    }
}

/// The plot's view of one activation: finished and running runs' curves (a diverged run's
/// would drag the band), finished runs' best mAPs.
pub(super) fn act_results(row: &ActRow) -> ActResults {
    let counted =
        |run: &&&RunRecord| matches!(run.status, RunStatus::Finished | RunStatus::Running);
    ActResults {
        name: row.name.clone(),
        curves: row
            .runs
            .iter()
            .filter(counted)
            .map(|run| {
                run.curve
                    .iter()
                    .map(|point| (point.epoch, point.map))
                    .collect()
            })
            .collect(),
        map50: row.map50_values(),
        map: row.map_values(),
        latency_ms: row.latency_ms(),
    }
}

/// The compared activations' curves and derivatives under `dir/activations/`; those that
/// do not parse or are not pointwise (FReLU, Softmax) are left out.
pub(super) fn draw_activation_curves(
    table: &Table,
    dir: &Path,
    plots: &mut Plots,
) -> Result<(), ReportError> {
    let specs: Vec<ActSpec> = table
        .rows
        .iter()
        .filter_map(|row| row.spec.clone())
        .filter(|spec| spec.def().pointwise)
        .collect();
    if specs.is_empty() {
        plots
            .notes
            .push("None of the activations is pointwise: no activation curves.".into());
        return Ok(());
    }
    let out = dir.join("activations");
    let written = plot_activations(
        &specs,
        &PlotOptions {
            range: ACT_PLOT_RANGE,
            out: out.clone(),
        },
    )
    .map_err(|error| ReportError::ActivationPlot {
        path: out.clone(),
        error: Box::new(error),
    })?;
    plots.files.extend(written);
    plots.figures.push(FigureRef {
        caption: "The compared activations f(x) and their derivatives f'(x) (pointwise ones only)."
            .into(),
        png: out.join("overview.png"),
        svg: out.join("overview.svg"),
    });
    Ok(())
}

// ---- the document ----
