//! `actyolo train`: argument parsing and the progress display; the loop is the library's.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::eval::val::render_table;
use crate::train::optim::OptimizerKind;
use crate::train::trainer::{latest_state, train, TrainEvent, TrainOptions};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model config: a shipped name (yolov5n.yaml, yolov7-tiny.yaml, ...) or a YAML path.
    #[arg(long, default_value = "yolov5n.yaml")]
    pub cfg: String,
    /// Dataset YAML (ultralytics format); `actyolo data synth` makes one.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Activation for every Conv, overriding the YAML (e.g. "nn.LeakyReLU(0.1)").
    #[arg(long)]
    pub act: Option<String>,
    /// Hyperparameters: a shipped name (hyp.scratch-low.yaml, yolov7's hyp.scratch.tiny.yaml and hyp.scratch.p5.yaml) or a YAML path.
    #[arg(long, default_value = "hyp.scratch-low.yaml")]
    pub hyp: String,
    /// Initial weights to fine-tune from (.pt or .safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 640)]
    pub imgsz: usize,
    #[arg(long, value_enum, default_value = "SGD")]
    pub optimizer: OptimizerKind,
    /// Cosine (one-cycle) LR schedule instead of linear.
    #[arg(long)]
    pub cos_lr: bool,
    /// Continue a stopped run: its folder or weights/last.state.safetensors; alone, the latest run.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<PathBuf>,
    #[arg(long, default_value = "runs/train")]
    pub project: PathBuf,
    #[arg(long, default_value = "exp")]
    pub name: String,
    #[arg(long)]
    pub exist_ok: bool,
    /// Data-loading threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many epochs without improvement (0: never).
    #[arg(long, default_value_t = 100)]
    pub patience: usize,
    /// Layers to freeze, e.g. --freeze 0 1 2.
    #[arg(long, num_args = 1..)]
    pub freeze: Vec<usize>,
    /// Keep the config's anchors without checking them.
    #[arg(long)]
    pub noautoanchor: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let resume = match &args.resume {
        Some(p) if p.as_os_str().is_empty() => {
            Some(latest_state(&args.project).ok_or_else(|| {
                anyhow::anyhow!(
                    "--resume: no run with a checkpoint under {}",
                    args.project.display()
                )
            })?)
        }
        other => other.clone(),
    };
    let data = match (&args.data, &resume) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => PathBuf::new(),
        (None, None) => anyhow::bail!("--data is required (e.g. `actyolo data synth --out runs/data/shapes` writes runs/data/shapes/data.yaml)"),
    };
    anyhow::ensure!(
        args.batch > 0 && args.epochs > 0 && args.imgsz >= 32,
        "--batch and --epochs must be positive and --imgsz at least 32"
    );
    let options = TrainOptions {
        cfg: args.cfg,
        data,
        act: args.act,
        hyp: args.hyp,
        weights: args.weights,
        epochs: args.epochs,
        batch: args.batch,
        imgsz: args.imgsz,
        optimizer: args.optimizer,
        cos_lr: args.cos_lr,
        project: args.project,
        name: args.name,
        exist_ok: args.exist_ok,
        workers: args.workers,
        seed: args.seed,
        patience: args.patience,
        freeze: args.freeze,
        noautoanchor: args.noautoanchor,
    };
    let mut display = Display::default();
    let outcome = train(&options, resume.as_deref(), &mut |e| display.show(e))?;
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
            } => {
                self.finish();
                if epoch == 0 || self.bar.is_none() {
                    eprintln!(
                        "{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
                        "Epoch", "RAM", "box_loss", "obj_loss", "cls_loss", "Instances", "Size"
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
