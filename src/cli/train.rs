//! `actyolo train`: argument parsing and the progress display; the loop is the library's.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use indicatif::{ProgressBar, ProgressStyle};

use super::flags::{RunPlace, TrainFlags};
use actyolo::eval::val::render_table;
use actyolo::train::trainer::{latest_run, train, TrainEvent, TrainStart};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub flags: TrainFlags,
    /// Activation for every Conv, overriding the YAML (e.g. "nn.LeakyReLU(0.1)").
    #[arg(long)]
    pub act: Option<String>,
    /// Continue a stopped run with its own settings: its folder or a file in its weights/;
    /// alone, the run under --project saved last.
    #[arg(long, num_args = 0..=1)]
    #[allow(clippy::option_option)]
    pub resume: Option<Option<PathBuf>>,
    #[arg(long, default_value = "runs/train")]
    pub project: PathBuf,
    #[arg(long, default_value = "exp")]
    pub name: String,
    #[arg(long)]
    pub exist_ok: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: TrainArgs, matches: Option<&ArgMatches>) -> anyhow::Result<()> {
    let given =
        |id: &str| matches.is_some_and(|m| m.value_source(id) == Some(ValueSource::CommandLine));
    let device = args.flags.device.device.clone();
    let start = match &args.resume {
        Some(path) => {
            // A resumed run keeps the settings it was started with; only --epochs may
            // extend it, --project says where to look for the latest run, and --device
            // where to go on (a run started on a GPU can finish on the CPU).
            let command = TrainArgs::augment_args(clap::Command::new("train"));
            let ignored: Vec<String> = command
                .get_arguments()
                .map(|arg| arg.get_id().as_str())
                .filter(|id| !["resume", "epochs", "project", "device"].contains(id) && given(id))
                .map(|id| format!("--{}", id.replace('_', "-")))
                .collect();
            anyhow::ensure!(
                ignored.is_empty(),
                "--resume continues a run with the settings it was started with; {} cannot change (only --epochs can, to extend the run)",
                ignored.join(", ")
            );
            let path = match path {
                Some(path) => path.clone(),
                None => latest_run(&args.project).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--resume: no run with a checkpoint under {}; name the run folder (--resume runs/train/exp)",
                        args.project.display()
                    )
                })?,
            };
            TrainStart::Resume {
                path,
                epochs: given("epochs").then_some(args.flags.epochs),
            }
        }
        None => {
            let data = args.flags.data.clone().ok_or_else(|| anyhow::anyhow!("--data is required (e.g. `actyolo data synth --out runs/data/shapes` writes runs/data/shapes/data.yaml)"))?;
            TrainStart::New(Box::new(args.flags.into_options(
                data,
                RunPlace {
                    act: args.act,
                    seed: args.seed,
                    project: args.project,
                    name: args.name,
                    exist_ok: args.exist_ok,
                },
            )))
        }
    };
    let mut display = Display::default();
    let outcome = train(&start, &device, &mut |e| display.show(e))?;
    display.finish();
    if let Some(val) = &outcome.final_val {
        println!(
            "Validating best weights:\n{}",
            render_table(val, &outcome.names)
        );
    }
    println!(
        "{} epochs in {:.1} s/epoch. Results saved to {}",
        outcome.epochs_run,
        outcome.seconds_per_epoch,
        outcome.dir.display()
    );
    Ok(())
}

/// Resident memory of this process (Linux; 0 elsewhere): the CPU's stand-in for GPU_mem.
fn resident_gib() -> f64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        });
    pages.map_or(0.0, |p| p * 4096.0 / (1u64 << 30) as f64)
}

/// ultralytics' progress display: one bar per epoch with the running losses.
#[derive(Default)]
struct Display {
    bar: Option<ProgressBar>,
}

impl Display {
    fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Message(m) => match &self.bar {
                Some(bar) => bar.println(m),
                None => eprintln!("{m}"),
            },
            TrainEvent::EpochStart {
                epoch,
                epochs,
                batches,
                parts,
            } => {
                self.finish();
                if epoch == 0 || self.bar.is_none() {
                    eprintln!(
                        "{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
                        "Epoch", "RAM", parts[0], parts[1], parts[2], "Instances", "Size"
                    );
                }
                let bar = ProgressBar::new(batches as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix}{msg} {bar:20} {pos}/{len} [{elapsed}<{eta}, {per_sec}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(format!(
                    "{:>11}{:>11}",
                    format!("{epoch}/{}", epochs - 1),
                    format!("{:.2}G", resident_gib())
                ));
                self.bar = Some(bar);
            }
            TrainEvent::Batch {
                index,
                mean_loss,
                instances,
                size,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!(
                        "{:>11.4}{:>11.4}{:>11.4}{:>11}{:>11}",
                        mean_loss[0], mean_loss[1], mean_loss[2], instances, size
                    ));
                    bar.set_position(index as u64);
                }
            }
            TrainEvent::Validating { index, batches } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("  validating {index}/{batches}"));
                }
            }
            TrainEvent::EpochEnd { val, seconds, .. } => {
                self.finish();
                let m = &val.metrics;
                eprintln!(
                    "{:>22}{:>11}{:>11}{:>11.3}{:>11.3}{:>11.3}{:>11.3}  ({seconds:.1} s)",
                    "all", val.images, val.labels, m.mp, m.mr, m.map50, m.map
                );
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
