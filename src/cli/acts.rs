//! `actyolo acts list|eval|plot`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;

use actyolo::act::curves::{default_plot_specs, plot_activations, PlotOptions};
use actyolo::act::{catalog::catalogue, evaluate::evaluate, spec::parse_list, ActSpec};

#[derive(Debug, Subcommand)]
pub enum ActsCommand {
    /// Every activation with its full spec, formula, parameters and properties.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print x, y and dy/dx (the gradient of the sum of the outputs) at the given points.
    #[command(after_help = "Example: actyolo acts eval \"nn.ELU(0.5)\" -- -3 -1 0 2")]
    Eval {
        /// An activation spec, e.g. "nn.LeakyReLU(0.1)", silu, "MetaAconC(r=8)".
        spec: String,
        /// Print JSON: {"spec", "x", "y", "dydx"}.
        #[arg(long)]
        json: bool,
        /// The points (after `--`, so that negative numbers are not taken for options).
        #[arg(last = true, required = true, allow_negative_numbers = true)]
        points: Vec<f64>,
    },
    /// Plot each activation and its derivative (PNG and SVG), plus an overview grid.
    Plot {
        /// Comma-separated specs, e.g. silu,"nn.Hardtanh(-2, 2)"; default: every pointwise activation.
        #[arg(long)]
        names: Option<String>,
        /// The x range, as MIN,MAX.
        #[arg(long, default_value = "-6,6", allow_hyphen_values = true)]
        range: String,
        /// Output folder.
        #[arg(long, default_value = "runs/acts")]
        out: PathBuf,
    },
}

pub fn run(cmd: ActsCommand) -> anyhow::Result<()> {
    match cmd {
        ActsCommand::List { json } => {
            let entries = catalogue();
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", actyolo::act::catalog::render_table(&entries));
            }
        }
        ActsCommand::Eval { spec, json, points } => {
            let spec = ActSpec::parse(&spec)?;
            let e = evaluate(&spec, &points).with_context(|| format!("evaluating {spec}"))?;
            if json {
                println!("{}", serde_json::to_string(&e)?);
            } else {
                print!("{}", e.render_table());
            }
        }
        ActsCommand::Plot { names, range, out } => {
            let range = parse_range(&range)?;
            let specs = match names {
                Some(names) => parse_list(&names)?,
                None => default_plot_specs(),
            };
            let written = plot_activations(
                &specs,
                &PlotOptions {
                    range,
                    out: out.clone(),
                },
            )?;
            println!("wrote {} files to {}", written.len(), out.display());
        }
    }
    Ok(())
}

fn parse_range(text: &str) -> anyhow::Result<(f64, f64)> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lo, hi] = parts[..] else {
        bail!("--range {text}: expected MIN,MAX, e.g. -6,6");
    };
    let lo: f64 = lo
        .parse()
        .with_context(|| format!("--range: `{lo}` is not a number"))?;
    let hi: f64 = hi
        .parse()
        .with_context(|| format!("--range: `{hi}` is not a number"))?;
    if !lo.is_finite() || !hi.is_finite() || lo >= hi {
        bail!("--range {text}: MIN must be less than MAX, both finite");
    }
    Ok((lo, hi))
}
