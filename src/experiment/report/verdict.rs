//! The verdict in plain words: the headline, progress, and each activation against the
//! baseline.

use super::table::{ActRow, Delta, Table, VsBaseline, POINTS, SAME_SPEED_PCT};
use crate::experiment::record::{Experiment, RunStatus};

/// The verdict in plain words, one line each: the best activation and whether any
/// difference is significant, how many runs finished when not all did, then each
/// activation against the baseline.
pub fn verdict(exp: &Experiment) -> Vec<String> {
    if exp.acts.is_empty() {
        return vec!["Nothing to compare: the experiment names no activations.".into()];
    }
    verdict_lines(exp, &Table::new(exp))
}

pub(super) fn verdict_lines(exp: &Experiment, table: &Table) -> Vec<String> {
    let mut lines = vec![headline(table)];
    lines.extend(progress_line(exp));
    let baseline = table.baseline();
    lines.extend(
        table.rows[1..]
            .iter()
            .filter_map(|row| Some(comparison_line(row, row.vs_baseline.as_ref()?, baseline))),
    );
    lines.extend(int8_lines(table));
    lines
}

/// Under simulated INT8 quantization, once any finished run has been scored so: the best
/// activation, then each against the baseline with what quantization cost it.
pub(super) fn int8_lines(table: &Table) -> Vec<String> {
    let scored = table.rows.iter().filter(|row| row.int8_map().n > 0);
    let Some(best) = scored.max_by(|a, b| a.int8_map().mean.total_cmp(&b.int8_map().mean)) else {
        return Vec::new();
    };
    let baseline = table.baseline();
    let loses = |row: &ActRow| {
        let drop = row.int8_drop();
        (drop.n > 0).then(|| match drop.mean * POINTS {
            points if points >= 0.0 => {
                format!("{} loses {points:.2} points to quantization", row.name)
            }
            points => format!(
                "{} gains {:.2} points under quantization",
                row.name, -points
            ),
        })
    };
    let mut lines = vec![format!(
        "Under simulated INT8 post-training quantization (per-channel int8 weights, uint8 inputs, MinMax calibration): best by mean mAP50-95 {} ({:.2}%){}.",
        best.name,
        best.int8_map().mean * POINTS,
        loses(baseline).map_or(String::new(), |text| format!("; {text}"))
    )];
    for row in &table.rows[1..] {
        let Some(delta) = row.vs_baseline.as_ref().and_then(|vs| vs.int8_map.as_ref()) else {
            continue;
        };
        lines.push(format!(
            "{} in INT8: {}{}.",
            row.name,
            delta_text(delta, row, baseline, "INT8 mAP50-95 points"),
            loses(row).map_or(String::new(), |text| format!("; {text}"))
        ));
    }
    lines
}

pub(super) fn headline(table: &Table) -> String {
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
pub(super) fn significance_summary(table: &Table) -> String {
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
pub(super) fn progress_line(exp: &Experiment) -> Option<String> {
    let count =
        |wanted: fn(&RunStatus) -> bool| exp.runs.iter().filter(|run| wanted(&run.status)).count();
    let finished = count(|status| *status == RunStatus::Finished);
    let open = count(|status| matches!(status, RunStatus::Pending | RunStatus::Running));
    let diverged = count(|status| matches!(status, RunStatus::Diverged { .. }));
    let failed = count(|status| matches!(status, RunStatus::Failed { .. }));
    let screened = count(|status| matches!(status, RunStatus::Screened { .. }));
    let mut parts = Vec::new();
    if open > 0 {
        parts.push(format!(
            "{finished} of {} runs finished; numbers are provisional.",
            exp.runs.len()
        ));
    }
    let stopped: Vec<String> = [
        (diverged, "diverged"),
        (failed, "failed"),
        (screened, "screened out early by --screen"),
    ]
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
pub(super) fn runs_count(count: usize) -> String {
    if count == 1 {
        "1 run".into()
    } else {
        format!("{count} runs")
    }
}

pub(super) fn comparison_line(row: &ActRow, vs: &VsBaseline, baseline: &ActRow) -> String {
    let speed = speed_text(vs.latency_pct);
    let screened_at = row.runs.iter().find_map(|run| match run.status {
        RunStatus::Screened { epochs } => Some(epochs),
        _ => None,
    });
    match &vs.map {
        None if row.finished() == 0 && screened_at.is_some() => format!(
            "{}: screened out after {} epochs (its mean fitness was not in the best third then; not tested); {speed}.",
            row.name,
            screened_at.unwrap_or(0)
        ),
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
            delta_text(delta, row, baseline, "mAP50-95 points")
        ),
    }
}

/// "+1.20 ± 0.41 mAP50-95 points vs SiLU (p=0.03, significant at 5%, 3 seeds each)", the
/// unit named by `points`.
pub(super) fn delta_text(delta: &Delta, row: &ActRow, baseline: &ActRow, points: &str) -> String {
    let seeds = seeds_text(row.finished(), baseline.finished());
    let Some(test) = delta.test else {
        return format!(
            "{:+.2} {points} vs {} ({seeds}: no significance test; run more --seeds)",
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
        "{:+.2} ± {half_width:.2} {points} vs {} ({}, Holm-adjusted {}, {verdict}, {seeds})",
        delta.points,
        baseline.name,
        test.kind.name(),
        p_statement(test.adjusted_p)
    )
}

pub(super) fn seeds_text(ours: usize, baseline: usize) -> String {
    match (ours, baseline) {
        (1, 1) => "one seed each".into(),
        (a, b) if a == b => format!("{a} seeds each"),
        (a, b) => format!("{a} vs {b} seeds"),
    }
}

pub(super) fn speed_text(latency_pct: Option<f64>) -> String {
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
pub(super) fn p_statement(p: f64) -> String {
    let value = p_value(p);
    if value.starts_with('<') {
        format!("p{value}")
    } else {
        format!("p={value}")
    }
}

/// Two decimals, three below 0.01, and only "<0.001" below 0.001.
pub(super) fn p_value(p: f64) -> String {
    match p {
        p if p < 0.001 => "<0.001".into(),
        p if p < 0.01 => format!("{p:.3}"),
        p => format!("{p:.2}"),
    }
}

// ---- summary.csv ----
