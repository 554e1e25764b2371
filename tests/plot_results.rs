//! results.png from results.csv files in ultralytics' YOLOv5 v7.0 format.

use std::path::{Path, PathBuf};

use actyolo::plot::results::{plot_results, plot_results_multi, ResultsPlotError};

const COLUMNS: [&str; 14] = [
    "epoch",
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
];

/// A fresh folder of its own for each test, under the system's temp folder; removed when
/// the test passes and kept, to look at, when it fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "actyolo-plot-results-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One line as ultralytics writes it: each field right-aligned in 20 characters.
fn csv_line<T: std::fmt::Display>(fields: impl IntoIterator<Item = T>) -> String {
    let fields: Vec<String> = fields.into_iter().map(|f| format!("{f:>20}")).collect();
    fields.join(",") + "\n"
}

/// Made-up but plausible values for `epochs` epochs: falling losses, rising metrics, each
/// column its own, with a little noise so that the smoothed line differs from the data.
fn results_csv(columns: &[&str], epochs: usize, seed: f64) -> String {
    let mut text = csv_line(columns);
    for epoch in 0..epochs {
        let t = epoch as f64;
        let values = columns.iter().enumerate().map(|(c, &name)| {
            let c = c as f64;
            let noise = 0.004 * (seed + 1.7 * t + c).sin();
            match name {
                "epoch" => t,
                n if n.ends_with("loss") => 0.01 * c + 0.08 * (-t / (6.0 + seed + c)).exp() + noise,
                n if n.starts_with("metrics/") => {
                    (0.9 - 0.05 * c) * (1.0 - (-t / (4.0 + seed)).exp()) + 5.0 * noise
                }
                _ => 0.01 * (1.0 - t / epochs as f64),
            }
        });
        text += &csv_line(values.map(|v| format!("{v:.5}")));
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// The PNG signature, then width and height from the IHDR chunk that must come first.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (word(16), word(20))
}

#[test]
fn plots_one_run_and_skips_a_half_written_last_line() {
    let dir = TempDir::new("one");
    let mut text = results_csv(&COLUMNS, 12, 0.0);
    // Still being written: no newline yet, 3 of 14 fields. Read as a row, it would fail.
    text += "                  12,             0.02312,            0.0";
    let csv = write(&dir, "exp/results.csv", &text);
    let out = dir.join("exp/results.png");
    plot_results(&csv, &out).unwrap();
    assert_eq!(png_size(&out), (1600, 800));
}

#[test]
fn plots_several_runs_into_shared_panels() {
    let dir = TempDir::new("multi");
    let runs: Vec<(String, PathBuf)> = ["SiLU", "nn.LeakyReLU(0.1)", "Mish"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let csv = write(
                &dir,
                &format!("run{i}/results.csv"),
                &results_csv(&COLUMNS, 30, i as f64),
            );
            (name.to_string(), csv)
        })
        .collect();
    let out = dir.join("compare/results.png");
    plot_results_multi(&runs, &out).unwrap();
    assert_eq!(png_size(&out), (1600, 800));
}

/// More runs than named colours, with labels long enough to wrap the key onto two rows.
#[test]
fn plots_many_runs_with_a_wrapped_key() {
    let dir = TempDir::new("many");
    let runs: Vec<(String, PathBuf)> = (0..10)
        .map(|i| {
            let csv = write(
                &dir,
                &format!("run{i}/results.csv"),
                &results_csv(&COLUMNS, 8, i as f64),
            );
            (format!("nn.Softplus(beta={i}, threshold=20)"), csv)
        })
        .collect();
    let out = dir.join("results.png");
    plot_results_multi(&runs, &out).unwrap();
    assert_eq!(png_size(&out), (1600, 800));
}

#[test]
fn missing_columns_leave_their_panels_empty() {
    let dir = TempDir::new("missing");
    let columns = ["epoch", "train/box_loss", "metrics/mAP_0.5", "val/box_loss"];
    let csv = write(&dir, "exp/results.csv", &results_csv(&columns, 5, 0.0));
    let out = dir.join("results.png");
    plot_results(&csv, &out).unwrap();
    assert_eq!(png_size(&out), (1600, 800));
}

/// Documented choice: a header without rows is an error, not an empty figure.
#[test]
fn a_header_without_rows_is_an_error_naming_the_file() {
    let dir = TempDir::new("header");
    let csv = write(&dir, "results.csv", &csv_line(COLUMNS));
    let out = dir.join("results.png");
    let error = plot_results(&csv, &out).unwrap_err();
    assert!(
        matches!(error, ResultsPlotError::NoEpochs { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&csv.display().to_string()) && message.contains("no complete epoch row"),
        "{message}"
    );
    assert!(!out.exists());
}

#[test]
fn a_bad_value_before_the_last_line_names_the_file_line_and_column() {
    let dir = TempDir::new("bad");
    let mut lines: Vec<String> = results_csv(&COLUMNS, 4, 0.0)
        .lines()
        .map(String::from)
        .collect();
    let mut fields: Vec<String> = lines[2].split(',').map(String::from).collect();
    fields[5] = format!("{:>20}", "oops");
    lines[2] = fields.join(",");
    let text = lines.join("\n") + "\n";
    let csv = write(&dir, "results.csv", &text);
    let error = plot_results(&csv, &dir.join("results.png"))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&csv.display().to_string()), "{error}");
    assert!(
        error.contains("line 3, column `metrics/recall`: `oops` is not a number"),
        "{error}"
    );
}

#[test]
fn a_short_row_before_the_last_line_is_an_error() {
    let dir = TempDir::new("short");
    let mut text = results_csv(&COLUMNS, 3, 0.0);
    text.insert_str(csv_line(COLUMNS).len(), "   0,   0.1\n");
    let csv = write(&dir, "results.csv", &text);
    let error = plot_results(&csv, &dir.join("results.png"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("line 2: 2 fields, but the header has 14"),
        "{error}"
    );
}

#[test]
fn files_that_cannot_be_plotted_are_named() {
    let dir = TempDir::new("unplottable");
    let out = dir.join("results.png");
    let missing = dir.join("nope/results.csv");
    let error = plot_results(&missing, &out).unwrap_err();
    assert!(
        matches!(error, ResultsPlotError::Read { .. }) && error.to_string().contains("nope"),
        "{error}"
    );
    let no_epoch = write(&dir, "a.csv", &results_csv(&COLUMNS[1..], 3, 0.0));
    assert!(matches!(
        plot_results(&no_epoch, &out),
        Err(ResultsPlotError::NoEpochColumn { .. })
    ));
    let unrelated = write(&dir, "b.csv", &results_csv(&["epoch", "x/lr0"], 3, 0.0));
    assert!(matches!(
        plot_results(&unrelated, &out),
        Err(ResultsPlotError::NoPlottedColumns { .. })
    ));
    let empty = write(&dir, "c.csv", "");
    assert!(matches!(
        plot_results(&empty, &out),
        Err(ResultsPlotError::NoHeader { .. })
    ));
    assert!(matches!(
        plot_results_multi(&[], &out),
        Err(ResultsPlotError::NoRuns)
    ));
}
