//! The experiment report: `summary.csv`, `report.md` and a self-contained `report.html`
//! (a verdict, the table, the method, the plots, the runs), rebuilt from an [`Experiment`]
//! whenever a run ends.
//!
//! Only finished runs count in the statistics; runs still going are shown as in progress,
//! diverged and failed ones are listed with their message. The first activation is the
//! baseline every other one is tested against.

use std::path::{Path, PathBuf};

use super::record::{ActCost, EpochPoint, Experiment, RunRecord, RunStatus};
use super::stats::{summarize, welch, Summary, Welch};
use crate::act::curves::{plot_activations, short_name, CurveError, PlotOptions};
use crate::act::ActSpec;
use crate::plot::comparison::{map_bars, map_curves, map_vs_latency, ActResults, ComparePlotError};

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
    #[error("creating the report folder {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::util::fs::FileError),
    #[error("reading {} to embed it in the HTML report: {error}", path.display())]
    ReadPlot {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] ComparePlotError),
    /// Boxed: a plot error can carry a candle error, which is large.
    #[error("drawing the activation curves into {}: {error}", path.display())]
    ActivationPlot {
        path: PathBuf,
        error: Box<CurveError>,
    },
}

/// A difference is significant when p is below this.
const ALPHA: f64 = 0.05;
/// Latencies within this many percent of the baseline's count as the same speed.
const SAME_SPEED_PCT: f64 = 3.0;
/// mAP points per unit of mAP.
const POINTS: f64 = 100.0;
/// The x range of the activation curves, as `actyolo acts plot` draws them.
const ACT_PLOT_RANGE: (f64, f64) = (-6.0, 6.0);

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
    let plots = draw_plots(&table, dir)?;
    let csv = write_file(dir.join("summary.csv"), &summary_csv(&table))?;
    let document = document(exp, &table, &plots, dir);
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

/// The verdict in plain words, one line each: the best activation and whether any
/// difference is significant, how many runs finished when not all did, then each
/// activation against the baseline.
pub fn verdict(exp: &Experiment) -> Vec<String> {
    if exp.acts.is_empty() {
        return vec!["Nothing to compare: the experiment names no activations.".into()];
    }
    verdict_lines(exp, &Table::new(exp))
}

fn verdict_lines(exp: &Experiment, table: &Table) -> Vec<String> {
    let mut lines = vec![headline(table)];
    lines.extend(progress_line(exp));
    let baseline = table.baseline();
    lines.extend(
        table.rows[1..]
            .iter()
            .filter_map(|row| Some(comparison_line(row, row.vs_baseline.as_ref()?, baseline))),
    );
    lines
}

/// What the report says about one activation.
struct ActRow<'a> {
    /// As written in `--acts`.
    act: &'a str,
    /// `None` when `act` does not parse (then it is shown as written).
    spec: Option<ActSpec>,
    /// Short, for prose and plots: `SiLU`, `LeakyReLU(negative_slope=0.2)`.
    name: String,
    /// Canonical, for the table: `nn.SiLU()`.
    label: String,
    runs: Vec<&'a RunRecord>,
    /// The best epoch of each finished run.
    best: Vec<EpochPoint>,
    cost: Option<&'a ActCost>,
    /// `None` for the baseline.
    vs_baseline: Option<VsBaseline>,
}

impl<'a> ActRow<'a> {
    fn new(exp: &'a Experiment, act: &'a str) -> Self {
        let spec = ActSpec::parse(act).ok();
        let cost = exp.costs.iter().find(|cost| cost.act == act);
        let runs: Vec<&RunRecord> = exp.runs.iter().filter(|run| run.act == act).collect();
        let best: Vec<EpochPoint> = runs
            .iter()
            .filter(|run| run.status == RunStatus::Finished)
            .filter_map(|run| run.best)
            .collect();
        ActRow {
            act,
            name: spec.as_ref().map_or_else(|| act.to_string(), short_name),
            label: cost
                .map(|cost| cost.label.clone())
                .or_else(|| spec.as_ref().map(ActSpec::to_string))
                .unwrap_or_else(|| act.to_string()),
            spec,
            runs,
            best,
            cost,
            vs_baseline: None,
        }
    }

    fn map50_values(&self) -> Vec<f64> {
        self.best.iter().map(|point| point.map50).collect()
    }

    fn map_values(&self) -> Vec<f64> {
        self.best.iter().map(|point| point.map).collect()
    }

    fn map50(&self) -> Summary {
        summarize(&self.map50_values())
    }

    fn map(&self) -> Summary {
        summarize(&self.map_values())
    }

    fn count(&self, status: fn(&RunStatus) -> bool) -> usize {
        self.runs.iter().filter(|run| status(&run.status)).count()
    }

    fn finished(&self) -> usize {
        self.best.len()
    }

    fn running(&self) -> usize {
        self.count(|status| *status == RunStatus::Running)
    }

    fn stopped(&self) -> usize {
        self.count(|status| {
            matches!(
                status,
                RunStatus::Diverged { .. } | RunStatus::Failed { .. }
            )
        })
    }

    /// The mean over the runs that timed any epoch, whatever became of them.
    fn seconds_per_epoch(&self) -> Option<f64> {
        let seconds: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|run| run.seconds_per_epoch())
            .collect();
        (!seconds.is_empty()).then(|| summarize(&seconds).mean)
    }

    fn best_epochs(&self, separator: &str) -> String {
        self.best
            .iter()
            .map(|point| point.epoch.to_string())
            .collect::<Vec<_>>()
            .join(separator)
    }

    fn latency_ms(&self) -> Option<f64> {
        self.cost
            .map(|cost| cost.latency_ms)
            .filter(|ms| ms.is_finite() && *ms > 0.0)
    }
}

/// One activation against the baseline.
struct VsBaseline {
    map: Option<Delta>,
    map50: Option<Delta>,
    /// Latency relative to the baseline's, in percent (+18 is 18% slower).
    latency_pct: Option<f64>,
}

/// The difference of a metric's means in mAP points, and its test when both sides have at
/// least two finished runs.
struct Delta {
    points: f64,
    test: Option<Welch>,
}

impl Delta {
    /// `None` unless both sides have a finished run.
    fn new(values: &[f64], baseline: &[f64]) -> Option<Self> {
        if values.is_empty() || baseline.is_empty() {
            return None;
        }
        let in_points = |values: &[f64]| {
            values
                .iter()
                .map(|value| value * POINTS)
                .collect::<Vec<_>>()
        };
        let (values, baseline) = (in_points(values), in_points(baseline));
        let points = summarize(&values).mean - summarize(&baseline).mean;
        Some(Delta {
            points,
            test: welch(&values, &baseline),
        })
    }

    fn significant(&self) -> bool {
        self.test.is_some_and(|test| test.p < ALPHA)
    }
}

/// Every activation's row, the baseline first.
struct Table<'a> {
    rows: Vec<ActRow<'a>>,
}

impl<'a> Table<'a> {
    /// `exp.acts` must not be empty.
    fn new(exp: &'a Experiment) -> Self {
        let mut rows: Vec<ActRow> = exp.acts.iter().map(|act| ActRow::new(exp, act)).collect();
        let (baseline, others) = rows.split_at_mut(1);
        for row in others {
            row.vs_baseline = Some(VsBaseline {
                map: Delta::new(&row.map_values(), &baseline[0].map_values()),
                map50: Delta::new(&row.map50_values(), &baseline[0].map50_values()),
                latency_pct: row
                    .latency_ms()
                    .zip(baseline[0].latency_ms())
                    .map(|(ms, base)| (ms / base - 1.0) * 100.0),
            });
        }
        Table { rows }
    }

    fn baseline(&self) -> &ActRow<'a> {
        &self.rows[0]
    }
}

// ---- verdict ----

fn headline(table: &Table) -> String {
    let finished = table.rows.iter().filter(|row| row.finished() > 0);
    let Some(best) = finished.max_by(|a, b| a.map().mean.total_cmp(&b.map().mean)) else {
        return "No run has finished yet.".into();
    };
    let best_line = format!(
        "Best by mean mAP50-95: {} ({:.2}%).",
        best.name,
        best.map().mean * POINTS
    );
    format!("{best_line} {}", significance_summary(table))
}

/// Which activations differ significantly from the baseline, if any could be tested.
fn significance_summary(table: &Table) -> String {
    let base = &table.baseline().name;
    let deltas: Vec<(&str, &Delta)> = table.rows[1..]
        .iter()
        .filter_map(|row| Some((row.name.as_str(), row.vs_baseline.as_ref()?.map.as_ref()?)))
        .collect();
    if deltas.iter().all(|(_, delta)| delta.test.is_none()) {
        return "No significance test yet: that needs two finished seeds per activation.".into();
    }
    let significant: Vec<String> = deltas
        .iter()
        .filter(|(_, delta)| delta.significant())
        .map(|(name, delta)| {
            format!(
                "{name} ({})",
                if delta.points > 0.0 {
                    "better"
                } else {
                    "worse"
                }
            )
        })
        .collect();
    if significant.is_empty() {
        format!("No mAP50-95 difference from {base} is significant at 5%.")
    } else {
        format!(
            "Significantly different mAP50-95 from {base} at 5%: {}.",
            significant.join(", ")
        )
    }
}

/// Said only while runs are pending or running, or when some stopped early.
fn progress_line(exp: &Experiment) -> Option<String> {
    let count =
        |wanted: fn(&RunStatus) -> bool| exp.runs.iter().filter(|run| wanted(&run.status)).count();
    let finished = count(|status| *status == RunStatus::Finished);
    let open = count(|status| matches!(status, RunStatus::Pending | RunStatus::Running));
    let diverged = count(|status| matches!(status, RunStatus::Diverged { .. }));
    let failed = count(|status| matches!(status, RunStatus::Failed { .. }));
    let mut parts = Vec::new();
    if open > 0 {
        parts.push(format!(
            "{finished} of {} runs finished; numbers are provisional.",
            exp.runs.len()
        ));
    }
    let stopped: Vec<String> = [(diverged, "diverged"), (failed, "failed")]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .map(|(count, what)| format!("{} {what}", runs_count(count)))
        .collect();
    if !stopped.is_empty() {
        parts.push(format!(
            "Left out of the statistics: {} (see Runs).",
            stopped.join(" and ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// "1 run", "3 runs".
fn runs_count(count: usize) -> String {
    if count == 1 {
        "1 run".into()
    } else {
        format!("{count} runs")
    }
}

fn comparison_line(row: &ActRow, vs: &VsBaseline, baseline: &ActRow) -> String {
    let speed = speed_text(vs.latency_pct);
    match &vs.map {
        None if row.finished() == 0 && row.stopped() > 0 && row.stopped() == row.runs.len() => {
            format!(
                "{}: every run diverged or failed (see Runs); {speed}.",
                row.name
            )
        }
        None if row.finished() == 0 => format!("{}: no finished run yet; {speed}.", row.name),
        None => format!(
            "{}: no comparison yet, the baseline {} has no finished run; {speed}.",
            row.name, baseline.name
        ),
        Some(delta) => format!(
            "{}: {}, {speed}.",
            row.name,
            delta_text(delta, row, baseline)
        ),
    }
}

/// "+1.20 ± 0.41 mAP50-95 points vs SiLU (p=0.03, significant at 5%, 3 seeds each)".
fn delta_text(delta: &Delta, row: &ActRow, baseline: &ActRow) -> String {
    let seeds = seeds_text(row.finished(), baseline.finished());
    let Some(test) = delta.test else {
        return format!(
            "{:+.2} mAP50-95 points vs {} ({seeds}: no significance test; run more --seeds)",
            delta.points, baseline.name
        );
    };
    let half_width = (test.ci95.1 - test.ci95.0) / 2.0;
    let verdict = if delta.significant() {
        "significant at 5%"
    } else {
        "not significant"
    };
    format!(
        "{:+.2} ± {half_width:.2} mAP50-95 points vs {} ({}, {verdict}, {seeds})",
        delta.points,
        baseline.name,
        p_statement(test.p)
    )
}

fn seeds_text(ours: usize, baseline: usize) -> String {
    match (ours, baseline) {
        (1, 1) => "one seed each".into(),
        (a, b) if a == b => format!("{a} seeds each"),
        (a, b) => format!("{a} vs {b} seeds"),
    }
}

fn speed_text(latency_pct: Option<f64>) -> String {
    match latency_pct {
        None => "latency not measured yet".into(),
        Some(pct) if pct.abs() <= SAME_SPEED_PCT => {
            format!("same speed (within {SAME_SPEED_PCT}%)")
        }
        Some(pct) if pct > 0.0 => format!("{pct:.0}% slower"),
        Some(pct) => format!("{:.0}% faster", -pct),
    }
}

/// "p=0.03", "p=0.002" or "p<0.001".
fn p_statement(p: f64) -> String {
    let value = p_value(p);
    if value.starts_with('<') {
        format!("p{value}")
    } else {
        format!("p={value}")
    }
}

/// Two decimals, three below 0.01, and only "<0.001" below 0.001.
fn p_value(p: f64) -> String {
    match p {
        p if p < 0.001 => "<0.001".into(),
        p if p < 0.01 => format!("{p:.3}"),
        p => format!("{p:.2}"),
    }
}

// ---- summary.csv ----

const CSV_HEADER: [&str; 23] = [
    "act",
    "label",
    "runs_finished",
    "runs_in_progress",
    "runs_diverged_or_failed",
    "map50_mean",
    "map50_std",
    "map50_95_mean",
    "map50_95_std",
    "delta_map50_95_pts",
    "delta_map50_95_ci_low",
    "delta_map50_95_ci_high",
    "delta_map50_95_p",
    "delta_map50_pts",
    "delta_map50_ci_low",
    "delta_map50_ci_high",
    "delta_map50_p",
    "params",
    "gflops",
    "latency_ms",
    "latency_vs_baseline_pct",
    "seconds_per_epoch",
    "best_epochs",
];

/// One row per activation. mAPs are fractions as in results.csv, differences are in mAP
/// points (×100); an unknown value is an empty cell.
fn summary_csv(table: &Table) -> String {
    let mut text = CSV_HEADER.join(",") + "\n";
    for row in &table.rows {
        let cells = csv_cells(row);
        text += &cells
            .iter()
            .map(|cell| csv_field(cell))
            .collect::<Vec<_>>()
            .join(",");
        text.push('\n');
    }
    text
}

fn csv_cells(row: &ActRow) -> Vec<String> {
    let vs = row.vs_baseline.as_ref();
    let mut cells = vec![row.act.to_string(), row.label.clone()];
    cells.extend([row.finished(), row.running(), row.stopped()].map(|count| count.to_string()));
    cells.extend(
        summary_cells(&row.map50())
            .into_iter()
            .chain(summary_cells(&row.map())),
    );
    cells.extend(delta_cells(vs.and_then(|vs| vs.map.as_ref())));
    cells.extend(delta_cells(vs.and_then(|vs| vs.map50.as_ref())));
    cells.push(
        row.cost
            .map(|cost| cost.params.to_string())
            .unwrap_or_default(),
    );
    let numbers = [
        row.cost.map(|cost| cost.gflops),
        row.latency_ms(),
        vs.and_then(|vs| vs.latency_pct),
        row.seconds_per_epoch(),
    ];
    cells.extend(numbers.map(number_cell));
    cells.push(row.best_epochs(" "));
    cells
}

fn summary_cells(summary: &Summary) -> [String; 2] {
    [
        number_cell((summary.n > 0).then_some(summary.mean)),
        number_cell(summary.std),
    ]
}

/// Points, CI low, CI high, p.
fn delta_cells(delta: Option<&Delta>) -> [String; 4] {
    let test = delta.and_then(|delta| delta.test);
    [
        delta.map(|delta| delta.points),
        test.map(|t| t.ci95.0),
        test.map(|t| t.ci95.1),
        test.map(|t| t.p),
    ]
    .map(number_cell)
}

/// Full precision (the shortest text that reads back to the same f64).
fn number_cell(value: Option<f64>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// Quoted when it holds a comma, quote or newline (specs such as `nn.Softplus(beta=2, threshold=10)` do).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

// ---- plots ----

/// The plots drawn (for the document) and why the others were not.
struct Plots {
    figures: Vec<FigureRef>,
    notes: Vec<String>,
    files: Vec<PathBuf>,
}

#[derive(Clone)]
struct FigureRef {
    caption: String,
    png: PathBuf,
    svg: PathBuf,
}

fn draw_plots(table: &Table, dir: &Path) -> Result<Plots, ReportError> {
    let results: Vec<ActResults> = table.rows.iter().map(act_results).collect();
    let mut plots = Plots {
        figures: Vec::new(),
        notes: Vec::new(),
        files: Vec::new(),
    };
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
    fn add(&mut self, caption: &str, drawn: Option<[PathBuf; 2]>, missing: &str) {
        match drawn {
            Some([png, svg]) => {
                self.files.extend([png.clone(), svg.clone()]);
                self.figures.push(FigureRef {
                    caption: caption.into(),
                    png,
                    svg,
                });
            }
            None => self.notes.push(missing.into()),
        }
    }
}

/// The plot's view of one activation: finished and running runs' curves (a diverged run's
/// would drag the band), finished runs' best mAPs.
fn act_results(row: &ActRow) -> ActResults {
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
fn draw_activation_curves(table: &Table, dir: &Path, plots: &mut Plots) -> Result<(), ReportError> {
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

/// The report's content, rendered to both Markdown and HTML.
struct Document {
    title: String,
    /// The folder the report is in; image links are relative to it.
    dir: PathBuf,
    blocks: Vec<Block>,
}

const TEXT_COLUMNS: usize = 2;

enum Block {
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

fn document(exp: &Experiment, table: &Table, plots: &Plots, dir: &Path) -> Document {
    let mut blocks = vec![
        Block::Heading("Verdict".into()),
        Block::List(verdict_lines(exp, table)),
    ];
    blocks.extend([
        Block::Heading("Results".into()),
        results_table(table),
        Block::Paragraph(results_note(table)),
    ]);
    blocks.push(Block::Heading("Method".into()));
    blocks.extend(method(exp, table).into_iter().map(Block::Paragraph));
    blocks.push(Block::Heading("Plots".into()));
    blocks.extend(plots.figures.iter().cloned().map(Block::Figure));
    blocks.extend(plots.notes.iter().cloned().map(Block::Paragraph));
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

fn results_table(table: &Table) -> Block {
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

fn results_row(row: &ActRow) -> Vec<String> {
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

fn results_note(table: &Table) -> String {
    format!(
        "mAP in % (mean ± std over finished seeds); Δ in mAP points against the baseline {} with the 95% \
         confidence interval and the p-value of Welch's t-test; empty where not known yet.",
        table.baseline().name
    )
}

/// "3 finished, 1 running, 1 diverged/failed".
fn runs_text(row: &ActRow) -> String {
    let mut parts = vec![format!("{} finished", row.finished())];
    if row.running() > 0 {
        parts.push(format!("{} running", row.running()));
    }
    if row.stopped() > 0 {
        parts.push(format!("{} diverged/failed", row.stopped()));
    }
    parts.join(", ")
}

fn mean_std_text(summary: &Summary) -> String {
    match (summary.n, summary.std) {
        (0, _) => String::new(),
        (_, Some(std)) => format!("{:.2} ± {:.2}", summary.mean * POINTS, std * POINTS),
        (_, None) => format!("{:.2}", summary.mean * POINTS),
    }
}

/// The difference with its interval, and the p-value.
fn delta_texts(delta: Option<&Delta>) -> [String; 2] {
    let Some(delta) = delta else {
        return [String::new(), String::new()];
    };
    match delta.test {
        Some(test) => [
            format!(
                "{:+.2} [{:+.2}, {:+.2}]",
                delta.points, test.ci95.0, test.ci95.1
            ),
            p_value(test.p),
        ],
        None => [format!("{:+.2}", delta.points), String::new()],
    }
}

fn fixed(value: Option<f64>, decimals: usize) -> String {
    value
        .map(|value| format!("{value:.decimals$}"))
        .unwrap_or_default()
}

/// 1872157 → "1,872,157".
fn group_thousands(value: usize) -> String {
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

fn method(exp: &Experiment, table: &Table) -> Vec<String> {
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
        "Statistics: mean and sample standard deviation over the finished seeds. Each activation is compared with the \
         baseline by Welch's unequal-variance t-test, two-sided, with the 95% confidence interval of the difference \
         (± is its half-width; Welch–Satterthwaite degrees of freedom). Significant means p < 0.05, with no correction \
         for the several comparisons. Diverged and failed runs are left out; runs still going are not counted yet."
            .into(),
        latency,
    ]
}

fn runs_table(table: &Table) -> Block {
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

fn run_row(name: &str, run: &RunRecord) -> Vec<String> {
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

fn status_text(status: &RunStatus) -> &'static str {
    match status {
        RunStatus::Pending => "pending",
        RunStatus::Running => "running",
        RunStatus::Finished => "finished",
        RunStatus::Diverged { .. } => "diverged",
        RunStatus::Failed { .. } => "failed",
    }
}

/// "Mish, seed 2, diverged: <message>" for every run that stopped early.
fn run_problems(table: &Table) -> Vec<String> {
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
    fn to_markdown(&self) -> String {
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
    fn to_html(&self) -> Result<String, ReportError> {
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

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
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

const HTML_STYLE: &str = "
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

fn html_list(items: &[String]) -> String {
    let items: String = items
        .iter()
        .map(|item| format!("<li>{}</li>\n", escape_html(item)))
        .collect();
    format!("<ul>\n{items}</ul>\n")
}

fn html_table(header: &[String], rows: &[Vec<String>]) -> String {
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
fn html_figure(caption: &str, svg: &Path) -> Result<String, ReportError> {
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

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
