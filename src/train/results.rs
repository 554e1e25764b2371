//! results.csv: one row per epoch, in the layout of the model family's own trainer
//! (YOLOv5's train.py, or ultralytics 8), and its truncation on resume.

use std::path::Path;

use super::criterion::Criterion;
use crate::eval::val::ValOutcome;
use crate::util::format::format_general;
use crate::util::fs::{write_atomic, FileError};

/// results.csv as the model family's own trainer writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsLayout {
    /// YOLOv5's train.py: 0-based epochs, 20-wide `%20.5g` fields.
    Yolov5,
    /// ultralytics 8: 1-based epochs, a `time` column, `%.6g` fields, `(B)` metric names.
    Ultralytics8,
}

impl ResultsLayout {
    /// The number the first epoch has in the `epoch` column.
    pub fn first_epoch(self) -> usize {
        match self {
            ResultsLayout::Yolov5 => 0,
            ResultsLayout::Ultralytics8 => 1,
        }
    }

    /// The header's names, with the loss parts `parts`.
    fn columns(self, parts: [&str; 3]) -> Vec<String> {
        let losses = |split: &str| parts.map(|p| format!("{split}/{p}"));
        let (metrics, lr, lead): ([&str; 4], &str, &[&str]) = match self {
            ResultsLayout::Yolov5 => (
                [
                    "metrics/precision",
                    "metrics/recall",
                    "metrics/mAP_0.5",
                    "metrics/mAP_0.5:0.95",
                ],
                "x/lr",
                &["epoch"],
            ),
            ResultsLayout::Ultralytics8 => (
                [
                    "metrics/precision(B)",
                    "metrics/recall(B)",
                    "metrics/mAP50(B)",
                    "metrics/mAP50-95(B)",
                ],
                "lr/pg",
                &["epoch", "time"],
            ),
        };
        let mut columns: Vec<String> = lead.iter().map(|c| c.to_string()).collect();
        columns.extend(losses("train"));
        columns.extend(metrics.map(String::from));
        columns.extend(losses("val"));
        columns.extend((0..3).map(|i| format!("{lr}{i}")));
        columns
    }
}

/// One epoch's results.
pub struct ResultsRow<'a> {
    pub epoch: usize,
    /// Seconds since training started (this process's part of it).
    pub seconds: f64,
    pub train_loss: &'a [f32; 3],
    pub val: &'a ValOutcome,
    pub lrs: &'a [f64],
}

/// Drops rows after `last_epoch` from a CSV file whose first field is the epoch (results,
/// diagnostics): a run killed after writing a row but before saving its
/// checkpoint repeats that epoch on resume.
pub fn truncate_epochs(path: &Path, last_epoch: usize) -> Result<(), FileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FileError::new(path, "cannot read")(e)),
    };
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, line)| {
            *i == 0
                || line
                    .split(',')
                    .next()
                    .and_then(|e| e.trim().parse::<usize>().ok())
                    .is_some_and(|e| e <= last_epoch)
        })
        .map(|(_, line)| line)
        .collect();
    write_atomic(path, (kept.join("\n") + "\n").as_bytes())
}

/// Adds one results.csv row in the layout's format, rewriting the file atomically.
pub fn append_results(
    path: &Path,
    layout: ResultsLayout,
    loss: &Criterion,
    row: &ResultsRow,
) -> Result<(), FileError> {
    let columns = layout.columns(loss.part_names());
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match layout {
            ResultsLayout::Yolov5 => {
                let header: Vec<String> = columns.iter().map(|c| format!("{c:>20}")).collect();
                header.join(",") + "\n"
            }
            ResultsLayout::Ultralytics8 => columns.join(",") + "\n",
        },
        Err(e) => return Err(FileError::new(path, "cannot read")(e)),
    };
    let m = &row.val.metrics;
    let vl = row.val.loss.unwrap_or_default();
    let mut values = vec![(row.epoch + layout.first_epoch()) as f64];
    if layout == ResultsLayout::Ultralytics8 {
        values.push(row.seconds);
    }
    values.extend(row.train_loss.iter().map(|&v| v as f64));
    values.extend([m.mp, m.mr, m.map50, m.map]);
    values.extend(vl.iter().map(|&v| v as f64));
    values.extend(row.lrs.iter().take(3));
    let fields: Vec<String> = values
        .iter()
        .map(|&v| match layout {
            ResultsLayout::Yolov5 => format!("{:>20}", format_general(v, 5)),
            ResultsLayout::Ultralytics8 => format_general(v, 6),
        })
        .collect();
    text += &(fields.join(",") + "\n");
    write_atomic(path, text.as_bytes())
}
