//! `summary.csv`: one row per activation, numbers unrounded.

use super::table::{ActRow, Delta, Table};
use crate::experiment::stats::Summary;

pub(super) const CSV_HEADER: [&str; 43] = [
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
    // The mAP50-95 comparison's details: which test the delta columns and the verdict
    // use (paired or welch), its Holm-adjusted p, the exact Wilcoxon p of the paired
    // differences, and Welch's test of all finished runs.
    "delta_map50_95_test",
    "delta_map50_95_p_holm",
    "delta_map50_95_wilcoxon_p",
    "delta_map50_95_welch_ci_low",
    "delta_map50_95_welch_ci_high",
    "delta_map50_95_welch_p",
    // Under simulated INT8 quantization of the best weights: mAP50-95 and its drop from
    // float (fractions), each compared with the baseline's (points, the same tests).
    "int8_map50_95_mean",
    "int8_map50_95_std",
    "delta_int8_map50_95_pts",
    "delta_int8_map50_95_ci_low",
    "delta_int8_map50_95_ci_high",
    "delta_int8_map50_95_p",
    "delta_int8_map50_95_p_holm",
    "int8_drop_mean",
    "int8_drop_std",
    "delta_int8_drop_pts",
    "delta_int8_drop_ci_low",
    "delta_int8_drop_ci_high",
    "delta_int8_drop_p",
    "delta_int8_drop_p_holm",
];

/// One row per activation. mAPs are fractions as in results.csv, differences are in mAP
/// points (×100); an unknown value is an empty cell.
pub(super) fn summary_csv(table: &Table) -> String {
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

pub(super) fn csv_cells(row: &ActRow) -> Vec<String> {
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
    let map = vs.and_then(|vs| vs.map.as_ref());
    let test = map.and_then(|delta| delta.test);
    let welch = map.and_then(|delta| delta.welch);
    cells.push(test.map(|t| t.kind.id().to_string()).unwrap_or_default());
    cells.extend(
        [
            test.map(|t| t.adjusted_p),
            map.and_then(|delta| delta.wilcoxon_p),
            welch.map(|w| w.ci95.0),
            welch.map(|w| w.ci95.1),
            welch.map(|w| w.p),
        ]
        .map(number_cell),
    );
    for (summary, delta) in [
        (row.int8_map(), vs.and_then(|vs| vs.int8_map.as_ref())),
        (row.int8_drop(), vs.and_then(|vs| vs.int8_drop.as_ref())),
    ] {
        cells.extend(summary_cells(&summary));
        cells.extend(delta_cells(delta));
        cells.push(number_cell(
            delta.and_then(|d| d.test).map(|t| t.adjusted_p),
        ));
    }
    cells
}

pub(super) fn summary_cells(summary: &Summary) -> [String; 2] {
    [
        number_cell((summary.n > 0).then_some(summary.mean)),
        number_cell(summary.std),
    ]
}

/// Points, CI low, CI high, p.
pub(super) fn delta_cells(delta: Option<&Delta>) -> [String; 4] {
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
pub(super) fn number_cell(value: Option<f64>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// Quoted when it holds a comma, quote or newline (specs such as `nn.Softplus(beta=2, threshold=10)` do).
pub(super) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

// ---- plots ----
