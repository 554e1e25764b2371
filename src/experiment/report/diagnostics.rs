//! The report's diagnostics section, from each run's `diagnostics.csv`: per activation a
//! heatmap of dead channels (Convs × epochs), the weight-gradient norm per Conv at the first
//! and last epoch beside the other activations, the learned parameters' trajectories, and a
//! sentence wherever a diagnostic stands out.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::figures::Plots;
use super::table::{ActRow, Table};
use super::ReportError;
use crate::experiment::record::{run_name, RunRecord, RunStatus};
use crate::plot::diagnostics::{dead_heatmap, line_panels, DeadHeatmap, LinePanels, Series};
use crate::plot::style::series_color;
use crate::train::diagnostics::{read, DiagnosticRow, DIAGNOSTICS_FILE, RUN_ROW};
use crate::util::stats::summarize;

/// A Conv with at least this fraction of dead channels at the best epoch is named.
const DEAD_NOTABLE: f64 = 0.10;
/// A Conv with at least this fraction of saturated outputs at the best epoch is named.
const SATURATED_NOTABLE: f64 = 0.25;
/// A median gradient norm this far from the baseline's (either way) is named.
const GRADIENT_RATIO_NOTABLE: f64 = 2.0;

/// The section's sentences and what the figures and notes add to the plots.
pub(super) struct Section {
    pub(super) sentences: Vec<String>,
    /// What the diagnostics cost, as a sentence; none before any epoch was recorded.
    pub(super) cost: Option<String>,
}

/// One run's diagnostics: value by (epoch, module, quantity), modules in forward order.
struct RunDiagnostics {
    values: HashMap<(usize, String, String), f64>,
    modules: Vec<String>,
    epochs: BTreeSet<usize>,
    /// The epoch the report compares (the best), else the last recorded.
    best: Option<usize>,
    /// The diagnostics' share of each epoch's time.
    cost_fractions: Vec<f64>,
}

impl RunDiagnostics {
    fn load(dir: &Path, run: &RunRecord) -> Option<RunDiagnostics> {
        let rows = read(
            &dir.join("runs")
                .join(run_name(&run.act, run.seed))
                .join(DIAGNOSTICS_FILE),
        );
        if rows.is_empty() {
            return None;
        }
        let mut modules = Vec::new();
        let mut seen = BTreeSet::new();
        let mut values = HashMap::new();
        let mut epochs = BTreeSet::new();
        for DiagnosticRow {
            epoch,
            module,
            quantity,
            value,
            ..
        } in rows
        {
            epochs.insert(epoch);
            if module != RUN_ROW && seen.insert(module.clone()) {
                modules.push(module.clone());
            }
            values.insert((epoch, module, quantity), value);
        }
        let cost_fractions = epochs
            .iter()
            .filter_map(|&e| {
                let get = |q: &str| values.get(&(e, RUN_ROW.to_string(), q.to_string()));
                Some(get("seconds")? / get("epoch_seconds")?.max(f64::MIN_POSITIVE))
            })
            .collect();
        let last = epochs.last().copied();
        let best = run.best.map(|b| b.epoch).filter(|e| epochs.contains(e));
        Some(RunDiagnostics {
            values,
            modules,
            best: best.or(last),
            epochs,
            cost_fractions,
        })
    }

    fn get(&self, epoch: usize, module: &str, quantity: &str) -> Option<f64> {
        self.values
            .get(&(epoch, module.to_string(), quantity.to_string()))
            .copied()
    }

    /// Learned quantities' names (`p1` for `p1_mean`).
    fn learned(&self) -> BTreeSet<String> {
        self.values
            .keys()
            .filter_map(|(_, _, q)| q.strip_suffix("_mean"))
            .filter(|name| *name != "preact")
            .map(String::from)
            .collect()
    }
}

/// One activation's runs that have diagnostics.
struct ActDiagnostics<'a> {
    row: &'a ActRow<'a>,
    runs: Vec<RunDiagnostics>,
}

impl ActDiagnostics<'_> {
    fn modules(&self) -> &[String] {
        self.runs.first().map_or(&[], |r| &r.modules)
    }

    fn epochs(&self) -> Vec<usize> {
        let all: BTreeSet<usize> = self.runs.iter().flat_map(|r| r.epochs.clone()).collect();
        all.into_iter().collect()
    }

    /// The mean over runs of `quantity` at `module`, each run at the epoch `at` picks.
    fn mean(
        &self,
        module: &str,
        quantity: &str,
        at: impl Fn(&RunDiagnostics) -> Option<usize>,
    ) -> Option<f64> {
        let values: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.get(at(r)?, module, quantity))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// Per Conv, the mean at each run's best epoch.
    fn at_best(&self, quantity: &str) -> Vec<(String, f64)> {
        self.modules()
            .iter()
            .filter_map(|m| Some((m.clone(), self.mean(m, quantity, |r| r.best)?)))
            .collect()
    }

    fn top_at_best(&self, quantity: &str) -> Option<(String, f64, usize)> {
        let all = self.at_best(quantity);
        let nonzero = all.iter().filter(|(_, v)| *v > 0.0).count();
        all.into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(m, v)| (m, v, nonzero))
    }

    /// Every Conv's `<name>_<stat>` (a learned quantity's mean, min or max) over the runs,
    /// each run at the epoch `at` picks.
    fn learned_values(
        &self,
        name: &str,
        stat: &str,
        at: &dyn Fn(&RunDiagnostics) -> Option<usize>,
    ) -> Vec<f64> {
        let quantity = &format!("{name}_{stat}");
        self.runs
            .iter()
            .filter_map(|r| Some((r, at(r)?)))
            .flat_map(|(r, e)| r.modules.iter().filter_map(move |m| r.get(e, m, quantity)))
            .collect()
    }

    /// The median over Convs of the last epoch's gradient norm (mean over runs).
    fn median_gradient(&self) -> Option<f64> {
        let values: Vec<f64> = self
            .modules()
            .iter()
            .filter_map(|m| self.mean(m, "weight_grad_norm", |r| r.epochs.last().copied()))
            .collect();
        median(values)
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Draws the diagnostics figures into `dir/diagnostics/` (adding them to `plots`) and
/// writes the sentences.
pub(super) fn diagnostics_section(
    table: &Table,
    dir: &Path,
    plots: &mut Plots,
) -> Result<Section, ReportError> {
    let counted = |run: &&&RunRecord| {
        matches!(
            run.status,
            RunStatus::Finished | RunStatus::Running | RunStatus::Screened { .. }
        )
    };
    let acts: Vec<ActDiagnostics> = table
        .rows
        .iter()
        .map(|row| ActDiagnostics {
            row,
            runs: row
                .runs
                .iter()
                .filter(counted)
                .filter_map(|run| RunDiagnostics::load(dir, run))
                .collect(),
        })
        .filter(|a| !a.runs.is_empty())
        .collect();
    if acts.is_empty() {
        return Ok(Section {
            sentences: Vec::new(),
            cost: None,
        });
    }
    let out = dir.join("diagnostics");
    std::fs::create_dir_all(&out).map_err(|error| ReportError::CreateDir {
        path: out.clone(),
        error,
    })?;
    for act in &acts {
        draw_heatmap(act, &out, plots)?;
    }
    draw_gradients(&acts, table.rows.len(), &out, plots)?;
    for act in &acts {
        draw_learned(act, &out, plots)?;
    }
    Ok(Section {
        sentences: sentences(&acts),
        cost: cost_sentence(&acts),
    })
}

fn file_stem(prefix: &str, act: &ActDiagnostics) -> String {
    format!(
        "{prefix}_{}",
        run_name(act.row.act, 0).trim_end_matches("-seed0")
    )
}

fn draw_heatmap(act: &ActDiagnostics, out: &Path, plots: &mut Plots) -> Result<(), ReportError> {
    let epochs = act.epochs();
    let modules = act.modules();
    let values: Vec<Vec<f64>> = modules
        .iter()
        .map(|m| {
            epochs
                .iter()
                .map(|&e| {
                    act.mean(m, "dead_fraction", |_| Some(e))
                        .unwrap_or(f64::NAN)
                })
                .collect()
        })
        .collect();
    let name = &act.row.name;
    let drawn = dead_heatmap(
        &DeadHeatmap {
            title: format!(
                "{name}: dead channels per Conv and epoch (mean over {})",
                match act.runs.len() {
                    1 => "1 run".to_string(),
                    n => format!("{n} runs"),
                }
            ),
            modules,
            epochs: &epochs,
            values: &values,
        },
        out,
        &file_stem("dead", act),
    )?;
    plots.add(
        &format!("{name}: the fraction of each Conv's channels that are dead (output ≤ 0 everywhere on the probe batch), per epoch; grey where not recorded."),
        Some(drawn),
        "",
    );
    Ok(())
}

fn draw_gradients(
    acts: &[ActDiagnostics],
    count: usize,
    out: &Path,
    plots: &mut Plots,
) -> Result<(), ReportError> {
    let series = |at: &dyn Fn(&RunDiagnostics) -> Option<usize>| -> Vec<Series> {
        acts.iter()
            .enumerate()
            .map(|(i, act)| Series {
                name: act.row.name.clone(),
                color: series_color(i, count),
                values: act
                    .modules()
                    .iter()
                    .enumerate()
                    .filter_map(|(x, m)| Some((x as f64, act.mean(m, "weight_grad_norm", at)?)))
                    .collect(),
            })
            .collect()
    };
    let first = series(&|r: &RunDiagnostics| r.epochs.first().copied());
    let last = series(&|r: &RunDiagnostics| r.epochs.last().copied());
    let drawn = line_panels(
        &LinePanels {
            title: "Weight-gradient norm per Conv (mean over the epoch's steps and the runs)"
                .into(),
            x_desc: "Conv, in forward order".into(),
            y_desc: "‖∇W‖ (log scale)".into(),
            log_y: true,
            whole_x: true,
            panels: vec![("first epoch".into(), first), ("last epoch".into(), last)],
        },
        out,
        "gradient_norms",
    )?;
    plots.add(
        "Weight-gradient norm of every Conv, from the input (left) to the head (right), at the first and the last epoch.",
        drawn,
        "No gradient norms were recorded: no gradient plot.",
    );
    Ok(())
}

fn draw_learned(act: &ActDiagnostics, out: &Path, plots: &mut Plots) -> Result<(), ReportError> {
    let names: BTreeSet<String> = act.runs.iter().flat_map(RunDiagnostics::learned).collect();
    if names.is_empty() {
        return Ok(());
    }
    let epochs = act.epochs();
    let panels = names
        .iter()
        .map(|name| {
            let line = |stat: &str, reduce: fn(&[f64]) -> f64| -> Vec<(f64, f64)> {
                epochs
                    .iter()
                    .filter_map(|&e| {
                        let values = act.learned_values(name, stat, &|_| Some(e));
                        (!values.is_empty()).then(|| (e as f64, reduce(&values)))
                    })
                    .collect()
            };
            let series = vec![
                Series {
                    name: "mean over Convs".into(),
                    color: series_color(0, 3),
                    values: line("mean", |v| v.iter().sum::<f64>() / v.len() as f64),
                },
                Series {
                    name: "smallest".into(),
                    color: series_color(1, 3),
                    values: line("min", |v| v.iter().copied().fold(f64::INFINITY, f64::min)),
                },
                Series {
                    name: "largest".into(),
                    color: series_color(2, 3),
                    values: line("max", |v| {
                        v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    }),
                },
            ];
            (name.clone(), series)
        })
        .collect();
    let title = format!("{}: learned parameters against epoch", act.row.name);
    let drawn = line_panels(
        &LinePanels {
            title,
            x_desc: "epoch".into(),
            y_desc: "value".into(),
            log_y: false,
            whole_x: true,
            panels,
        },
        out,
        &file_stem("learned", act),
    )?;
    plots.add(
        &format!(
            "{}: its learned parameters (names as in its module) against epoch: the mean over every Conv's elements, and the smallest and largest element.",
            act.row.name
        ),
        drawn,
        "",
    );
    Ok(())
}

fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn sentences(acts: &[ActDiagnostics]) -> Vec<String> {
    let mut out = Vec::new();
    let baseline = acts.first().filter(|a| a.row.vs_baseline.is_none());
    let base_gradient = baseline.and_then(ActDiagnostics::median_gradient);
    let base_name = baseline.map_or("", |a| a.row.name.as_str());
    for act in acts {
        let name = &act.row.name;
        let convs = act.modules().len();
        if let Some((module, v, with)) = act.top_at_best("dead_fraction") {
            if v >= DEAD_NOTABLE {
                out.push(format!(
                    "{name}: {} of channels in {module} dead at the best epoch; {with} of {convs} Convs have dead channels.",
                    percent(v)
                ));
            }
        }
        // Below, a flat lower limit is where channels die (said above); a function bounded
        // above (Sigmoid, Tanh, Hardtanh, ReLU6) also saturates at the top.
        let bounded_above = act
            .row
            .spec
            .as_ref()
            .is_some_and(|s| s.def().properties.bounded_above == Some(true));
        if let Some((module, v, with)) = act.top_at_best("saturated_fraction") {
            if bounded_above && v >= SATURATED_NOTABLE {
                out.push(format!(
                    "{name}: {} of outputs in {module} saturated (flat, near a limit of the function) at the best epoch; {with} of {convs} Convs have saturated outputs.",
                    percent(v)
                ));
            }
        }
        if let (Some(base), Some(own)) = (base_gradient, act.median_gradient()) {
            let ratio = own / base;
            if act.row.vs_baseline.is_some()
                && (ratio >= GRADIENT_RATIO_NOTABLE || ratio <= 1.0 / GRADIENT_RATIO_NOTABLE)
            {
                out.push(format!(
                    "{name}: the median Conv's weight-gradient norm in the last epoch is {ratio:.2}× {base_name}'s{}.",
                    if ratio < 1.0 { " (smaller gradients)" } else { " (larger gradients)" }
                ));
            }
        }
        let names: BTreeSet<String> = act.runs.iter().flat_map(RunDiagnostics::learned).collect();
        for learned in names {
            let first = |r: &RunDiagnostics| r.epochs.first().copied();
            let last = |r: &RunDiagnostics| r.epochs.last().copied();
            let start = act.learned_values(&learned, "mean", &first);
            let end = act.learned_values(&learned, "mean", &last);
            let lo = act.learned_values(&learned, "min", &last);
            let hi = act.learned_values(&learned, "max", &last);
            if start.is_empty() || end.is_empty() {
                continue;
            }
            out.push(format!(
                "{name}: {learned} averaged {:.3} over the Convs after the first epoch and {:.3} after the last (elements from {:.3} to {:.3}).",
                summarize(&start).mean,
                summarize(&end).mean,
                lo.iter().copied().fold(f64::INFINITY, f64::min),
                hi.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ));
        }
    }
    out
}

fn cost_sentence(acts: &[ActDiagnostics]) -> Option<String> {
    let fractions: Vec<f64> = acts
        .iter()
        .flat_map(|a| a.runs.iter().flat_map(|r| r.cost_fractions.clone()))
        .collect();
    let max = fractions.iter().copied().fold(f64::NAN, f64::max);
    let median = median(fractions)?;
    Some(format!(
        "Recording them took {:.1}% of an epoch's time (median over every recorded epoch; at most {:.1}%).",
        median * 100.0,
        max * 100.0
    ))
}
