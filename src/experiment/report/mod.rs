//! The experiment report: `summary.csv`, `report.md` and a self-contained `report.html`
//! (a verdict, the table, the method, the plots, the runs), rebuilt from an [`Experiment`]
//! whenever a run ends.
//!
//! Only finished runs count in the statistics; runs still going are shown as in progress,
//! diverged and failed ones are listed with their message. The first activation is the
//! baseline every other one is tested against.

use std::path::{Path, PathBuf};

mod csv;
mod diagnostics;
mod document;
mod figures;
mod table;
mod verdict;

pub use verdict::verdict;

use super::record::Experiment;
use crate::act::curves::CurveError;
use crate::plot::comparison::ComparePlotError;
use csv::summary_csv;
use diagnostics::diagnostics_section;
use document::document;
use figures::{draw_plots, Plots};
use table::Table;

#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub csv: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// Every plot written, PNG and SVG, the activation curves included.
    pub plots: Vec<PathBuf>,
}

/// Each message names the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("nothing to report: the experiment names no activations")]
    NoActivations,
    #[error("creating the report folder {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::util::fs::FileError),
    #[error("reading {} to embed it in the HTML report", path.display())]
    ReadPlot {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] ComparePlotError),
    /// Boxed: a plot error can carry a candle error, which is large.
    #[error("drawing the activation curves into {}", path.display())]
    ActivationPlot {
        path: PathBuf,
        #[source]
        error: Box<CurveError>,
    },
}

/// Writes `summary.csv`, `report.md`, `report.html` and the plots into `dir` (created if
/// missing), replacing earlier versions.
pub fn write_report(exp: &Experiment, dir: &Path) -> Result<ReportFiles, ReportError> {
    if exp.acts.is_empty() {
        return Err(ReportError::NoActivations);
    }
    std::fs::create_dir_all(dir).map_err(|error| ReportError::CreateDir {
        path: dir.into(),
        error,
    })?;
    let table = Table::new(exp);
    let mut plots = draw_plots(&table, dir)?;
    let mut diagnostics = Plots::default();
    let section = diagnostics_section(&table, dir, &mut diagnostics)?;
    plots.files.extend(diagnostics.files.iter().cloned());
    let csv = write_file(dir.join("summary.csv"), &summary_csv(&table))?;
    let document = document(exp, &table, &plots, &diagnostics, &section, dir);
    let markdown = write_file(dir.join("report.md"), &document.to_markdown())?;
    let html = write_file(dir.join("report.html"), &document.to_html()?)?;
    Ok(ReportFiles {
        csv,
        markdown,
        html,
        plots: plots.files,
    })
}

fn write_file(path: PathBuf, text: &str) -> Result<PathBuf, ReportError> {
    crate::util::fs::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}
