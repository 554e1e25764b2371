//! The report as a document (headings, paragraphs, tables, figures), written out as
//! Markdown and as self-contained HTML.

use std::path::{Path, PathBuf};

use super::diagnostics::Section;
use super::figures::{FigureRef, Plots};
use super::table::{ActRow, Delta, Table, POINTS, SAME_SPEED_PCT};
use super::verdict::{p_value, verdict_lines};
use super::ReportError;
use crate::experiment::record::{Experiment, RunRecord, RunStatus};
use crate::experiment::stats::Summary;

/// The report's content, rendered to both Markdown and HTML.
pub(super) struct Document {
    pub(super) title: String,
    /// The folder the report is in; image links are relative to it.
    pub(super) dir: PathBuf,
    pub(super) blocks: Vec<Block>,
}

pub(super) const TEXT_COLUMNS: usize = 2;

const DIAGNOSTICS_METHOD: &str = "Each run records, after every epoch, how each Conv's activation behaves on a fixed probe batch \
of validation images (the EMA model in inference): the fraction of channels that are dead (output ≤ 0, or at the \
function's lower limit, for every probe pixel), the fraction of outputs saturated (within 1% of a finite limit of the \
function where its slope is below 0.01), the pre-activation's mean and std, and the mean norm of the Conv weights' \
gradient over the epoch's steps; learnable activations add their parameters. Every run's numbers are in its \
diagnostics.csv.";

pub(super) enum Block {
    Heading(String),
    Paragraph(String),
    List(Vec<String>),
    /// The first [`TEXT_COLUMNS`] columns are text, the others right-aligned numbers.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Figure(FigureRef),
}

pub(super) fn document(
    exp: &Experiment,
    table: &Table,
    plots: &Plots,
    diagnostics: &Plots,
    section: &Section,
    dir: &Path,
) -> Document {
    let mut blocks = vec![
        Block::Heading("Verdict".into()),
        Block::List(verdict_lines(exp, table)),
    ];
    blocks.extend([
        Block::Heading("Results".into()),
        results_table(table),
        Block::Paragraph(results_note(table)),
    ]);
    if table.rows.iter().any(|row| row.int8_map().n > 0) {
        blocks.extend([
            Block::Heading("INT8 robustness".into()),
            int8_table(table),
            Block::Paragraph(INT8_NOTE.into()),
        ]);
    }
    blocks.push(Block::Heading("Method".into()));
    blocks.extend(method(exp, table).into_iter().map(Block::Paragraph));
    blocks.push(Block::Heading("Plots".into()));
    blocks.extend(plots.figures.iter().cloned().map(Block::Figure));
    blocks.extend(plots.notes.iter().cloned().map(Block::Paragraph));
    blocks.push(Block::Heading("Diagnostics".into()));
    blocks.push(Block::Paragraph(DIAGNOSTICS_METHOD.into()));
    if let Some(cost) = &section.cost {
        blocks.push(Block::Paragraph(cost.clone()));
    }
    if section.sentences.is_empty() {
        blocks.push(Block::Paragraph(if section.cost.is_some() {
            "No diagnostic stands out.".into()
        } else {
            "No run has recorded diagnostics yet.".into()
        }));
    } else {
        blocks.push(Block::List(section.sentences.clone()));
    }
    blocks.extend(diagnostics.figures.iter().cloned().map(Block::Figure));
    blocks.extend(diagnostics.notes.iter().cloned().map(Block::Paragraph));
    blocks.push(Block::Heading("Runs".into()));
    blocks.push(runs_table(table));
    let problems = run_problems(table);
    if !problems.is_empty() {
        blocks.push(Block::List(problems));
    }
    Document {
        title: format!("Activation comparison: {}", exp.name),
        dir: dir.into(),
        blocks,
    }
}

pub(super) fn results_table(table: &Table) -> Block {
    let header = [
        "activation",
        "runs",
        "mAP50-95 (%)",
        "Δ mAP50-95 [95% CI]",
        "p",
        "mAP50 (%)",
        "Δ mAP50 [95% CI]",
        "p",
        "params",
        "GFLOPs",
        "latency (ms)",
        "vs baseline",
        "s/epoch",
        "best epoch",
    ];
    Block::Table {
        header: header.map(String::from).to_vec(),
        rows: table.rows.iter().map(results_row).collect(),
    }
}

pub(super) fn results_row(row: &ActRow) -> Vec<String> {
    let vs = row.vs_baseline.as_ref();
    let mut cells = vec![row.label.clone(), runs_text(row), mean_std_text(&row.map())];
    cells.extend(delta_texts(vs.and_then(|vs| vs.map.as_ref())));
    cells.push(mean_std_text(&row.map50()));
    cells.extend(delta_texts(vs.and_then(|vs| vs.map50.as_ref())));
    cells.push(
        row.cost
            .map(|cost| group_thousands(cost.params))
            .unwrap_or_default(),
    );
    // Two decimals: at the demo's 128 px yolov5n is 0.17 GFLOPs.
    cells.push(fixed(row.cost.map(|cost| cost.gflops), 2));
    cells.push(fixed(row.latency_ms(), 1));
    cells.push(
        vs.and_then(|vs| vs.latency_pct)
            .map(|pct| format!("{pct:+.0}%"))
            .unwrap_or_default(),
    );
    cells.push(fixed(row.seconds_per_epoch(), 1));
    cells.push(row.best_epochs(", "));
    cells
}

const INT8_NOTE: &str = "Each finished run's best weights, fused, under simulated INT8 post-training quantization \
(as `actyolo val --int8` with its defaults): weights int8 per output channel, every convolution's input uint8 per \
tensor, ranges calibrated with MinMax on the first 128 training images, the scheme of onnxruntime's quantize_static \
in QDQ format. Drop: float mAP50-95 minus INT8 mAP50-95, in points; Δ and p as in the results table (paired over \
shared seeds, Holm-adjusted).";

pub(super) fn int8_table(table: &Table) -> Block {
    let header = [
        "activation",
        "runs",
        "INT8 mAP50-95 (%)",
        "Δ INT8 mAP50-95 [95% CI]",
        "p",
        "drop (points)",
        "Δ drop [95% CI]",
        "p",
    ];
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let vs = row.vs_baseline.as_ref();
            let mut cells = vec![
                row.label.clone(),
                row.int8_map().n.to_string(),
                mean_std_text(&row.int8_map()),
            ];
            cells.extend(delta_texts(vs.and_then(|vs| vs.int8_map.as_ref())));
            cells.push(mean_std_text(&row.int8_drop()));
            cells.extend(delta_texts(vs.and_then(|vs| vs.int8_drop.as_ref())));
            cells
        })
        .collect();
    Block::Table {
        header: header.map(String::from).to_vec(),
        rows,
    }
}

pub(super) fn results_note(table: &Table) -> String {
    format!(
        "mAP in % (mean ± std over finished seeds); Δ in mAP points against the baseline {} with the 95% \
         confidence interval and the p-value of the paired t-test over the seeds both finished (Welch's t-test \
         where fewer than two are shared), Holm-adjusted across the activations; empty where not known yet.",
        table.baseline().name
    )
}

/// "3 finished, 1 running, 1 diverged/failed".
pub(super) fn runs_text(row: &ActRow) -> String {
    let mut parts = vec![format!("{} finished", row.finished())];
    if row.running() > 0 {
        parts.push(format!("{} running", row.running()));
    }
    if row.stopped() > 0 {
        parts.push(format!("{} diverged/failed", row.stopped()));
    }
    parts.join(", ")
}

pub(super) fn mean_std_text(summary: &Summary) -> String {
    match (summary.n, summary.std) {
        (0, _) => String::new(),
        (_, Some(std)) => format!("{:.2} ± {:.2}", summary.mean * POINTS, std * POINTS),
        (_, None) => format!("{:.2}", summary.mean * POINTS),
    }
}

/// The difference with its interval, and the p-value.
pub(super) fn delta_texts(delta: Option<&Delta>) -> [String; 2] {
    let Some(delta) = delta else {
        return [String::new(), String::new()];
    };
    match delta.test {
        Some(test) => [
            format!(
                "{:+.2} [{:+.2}, {:+.2}]",
                delta.points, test.ci95.0, test.ci95.1
            ),
            p_value(test.adjusted_p),
        ],
        None => [format!("{:+.2}", delta.points), String::new()],
    }
}

pub(super) fn fixed(value: Option<f64>, decimals: usize) -> String {
    value
        .map(|value| format!("{value:.decimals$}"))
        .unwrap_or_default()
}

/// 1872157 → "1,872,157".
pub(super) fn group_thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

pub(super) fn method(exp: &Experiment, table: &Table) -> Vec<String> {
    let seeds: Vec<String> = exp.seeds.iter().map(u64::to_string).collect();
    let latency = match exp.costs.first() {
        Some(cost) => format!(
            "Latency: CPU inference of the fused model, batch 1 at {} px, the median of {} runs; within ±{SAME_SPEED_PCT}% of the baseline counts as the same speed.",
            exp.imgsz, cost.latency_runs
        ),
        None => "Size and latency have not been measured yet.".into(),
    };
    vec![
        format!(
            "Each activation trains the model {} on {} at image size {} for {} epochs with batch size {}, once per seed ({}). \
             Only the activation of every Conv differs; the baseline is the first, {}.",
            exp.cfg, exp.data, exp.imgsz, exp.epochs, exp.batch, seeds.join(", "), table.baseline().label
        ),
        "Metric: mAP50 and mAP50-95 in ultralytics' convention (val.py, 101-point interpolated AP, as results.csv) \
         of each run's best-fitness epoch, fitness = 0.1·mAP50 + 0.9·mAP50-95, the epoch ultralytics keeps as best.pt."
            .into(),
        "Statistics: mean and sample standard deviation over the finished seeds. Runs of one seed share initial \
         weights, data order and augmentation, so each activation is compared with the baseline by the paired t-test \
         of the per-seed differences (two-sided, with the 95% confidence interval of the mean difference; ± is its \
         half-width), over the seeds both finished; with fewer than two shared seeds, by Welch's unequal-variance \
         t-test of all finished runs. The p-values are Holm-adjusted across the activations compared with the \
         baseline; significant means adjusted p < 0.05. summary.csv adds the exact Wilcoxon signed-rank p of the \
         paired differences and Welch's test as secondary columns. Diverged and failed runs are left out; runs \
         still going are not counted yet."
            .into(),
        latency,
    ]
}

pub(super) fn runs_table(table: &Table) -> Block {
    let header = [
        "activation",
        "status",
        "seed",
        "epochs",
        "best epoch",
        "mAP50 (%)",
        "mAP50-95 (%)",
        "s/epoch",
    ];
    let rows = table
        .rows
        .iter()
        .flat_map(|row| row.runs.iter().map(move |run| run_row(&row.name, run)))
        .collect();
    Block::Table {
        header: header.map(String::from).to_vec(),
        rows,
    }
}

pub(super) fn run_row(name: &str, run: &RunRecord) -> Vec<String> {
    let best = run.best.as_ref();
    vec![
        name.to_string(),
        status_text(&run.status).into(),
        run.seed.to_string(),
        run.curve.len().to_string(),
        best.map(|point| point.epoch.to_string())
            .unwrap_or_default(),
        fixed(best.map(|point| point.map50 * POINTS), 2),
        fixed(best.map(|point| point.map * POINTS), 2),
        fixed(run.seconds_per_epoch(), 1),
    ]
}

pub(super) fn status_text(status: &RunStatus) -> &'static str {
    match status {
        RunStatus::Pending => "pending",
        RunStatus::Running => "running",
        RunStatus::Finished => "finished",
        RunStatus::Diverged { .. } => "diverged",
        RunStatus::Failed { .. } => "failed",
        RunStatus::Screened { .. } => "screened out",
    }
}

/// "Mish, seed 2, diverged: <message>" for every run that stopped early.
pub(super) fn run_problems(table: &Table) -> Vec<String> {
    let problem = |name: &str, run: &RunRecord| match &run.status {
        RunStatus::Diverged { message } | RunStatus::Failed { message } => Some(format!(
            "{name}, seed {}, {}: {}",
            run.seed,
            status_text(&run.status),
            message.replace(['\n', '\r'], " ")
        )),
        _ => None,
    };
    table
        .rows
        .iter()
        .flat_map(|row| row.runs.iter().filter_map(|run| problem(&row.name, run)))
        .collect()
}

impl Document {
    pub(super) fn to_markdown(&self) -> String {
        let mut text = format!("# {}\n", self.title);
        for block in &self.blocks {
            text.push('\n');
            text += &match block {
                Block::Heading(heading) => format!("## {heading}\n"),
                Block::Paragraph(paragraph) => format!("{paragraph}\n"),
                Block::List(items) => items.iter().map(|item| format!("- {item}\n")).collect(),
                Block::Table { header, rows } => markdown_table(header, rows),
                Block::Figure(figure) => {
                    format!("![{}]({})\n", figure.caption, self.relative(&figure.png))
                }
            };
        }
        text
    }

    /// A self-contained page: the plots' SVG is inlined, so it needs no other file.
    pub(super) fn to_html(&self) -> Result<String, ReportError> {
        let mut body = format!("<h1>{}</h1>\n", escape_html(&self.title));
        for block in &self.blocks {
            body += &match block {
                Block::Heading(heading) => format!("<h2>{}</h2>\n", escape_html(heading)),
                Block::Paragraph(paragraph) => format!("<p>{}</p>\n", escape_html(paragraph)),
                Block::List(items) => html_list(items),
                Block::Table { header, rows } => html_table(header, rows),
                Block::Figure(figure) => html_figure(&figure.caption, &figure.svg)?,
            };
        }
        Ok(format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
            escape_html(&self.title)
        ))
    }

    pub(super) fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }
}

pub(super) fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let line = |cells: &[String]| {
        format!(
            "| {} |\n",
            cells
                .iter()
                .map(|cell| cell.replace('|', "\\|"))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    let alignment: Vec<String> = (0..header.len())
        .map(|i| if i < TEXT_COLUMNS { ":---" } else { "---:" }.to_string())
        .collect();
    let mut text = line(header) + &line(&alignment);
    for row in rows {
        text += &line(row);
    }
    text
}

pub(super) const HTML_STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, sans-serif; color: #1e1e1e; max-width: 1300px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #d7d7d7; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; }
/* The first TEXT_COLUMNS (2) columns hold text. */
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.2em 0; } figcaption { font-size: 0.9em; color: #555; }
svg { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
";

pub(super) fn html_list(items: &[String]) -> String {
    let items: String = items
        .iter()
        .map(|item| format!("<li>{}</li>\n", escape_html(item)))
        .collect();
    format!("<ul>\n{items}</ul>\n")
}

pub(super) fn html_table(header: &[String], rows: &[Vec<String>]) -> String {
    let cells = |tag: &str, cells: &[String]| -> String {
        cells
            .iter()
            .map(|cell| format!("<{tag}>{}</{tag}>", escape_html(cell)))
            .collect()
    };
    let body: String = rows
        .iter()
        .map(|row| format!("<tr>{}</tr>\n", cells("td", row)))
        .collect();
    format!("<div class=\"wide\"><table>\n<thead><tr>{}</tr></thead>\n<tbody>\n{body}</tbody>\n</table></div>\n", cells("th", header))
}

/// The SVG file's `<svg>` element inline, with its caption.
pub(super) fn html_figure(caption: &str, svg: &Path) -> Result<String, ReportError> {
    let text = std::fs::read_to_string(svg).map_err(|error| ReportError::ReadPlot {
        path: svg.into(),
        error,
    })?;
    // Drop anything before the element, such as an XML declaration.
    let element = text
        .find("<svg")
        .map_or(text.as_str(), |start| &text[start..]);
    Ok(format!(
        "<figure>\n{element}\n<figcaption>{}</figcaption>\n</figure>\n",
        escape_html(caption)
    ))
}

pub(super) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
