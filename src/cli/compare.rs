//! `actyolo compare`: argument parsing and the experiment's progress display; planning,
//! training and the report are the library's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::flags::{RunPlace, TrainFlags};
use super::values::positive;
use actyolo::act::spec::split_list;
use actyolo::act::zoo::ACTIVATIONS;
use actyolo::act::ActSpec;
use actyolo::data::synth::{generate, SynthConfig};
use actyolo::experiment::claim::Shard;
use actyolo::experiment::record::RunStatus;
use actyolo::experiment::report::verdict;
use actyolo::experiment::runner::{compare, status, CompareEvent, CompareOptions};
use actyolo::model::config::ModelConfig;
use actyolo::train::optim::OptimizerKind;
use actyolo::train::trainer::TrainEvent;

/// The defaults make the README's demo: SiLU against Hardswish, five seeds each, on a small
/// synthetic dataset at 128 px, chosen by measurement (see README) to give a significant
/// paired answer in about 12 minutes on a 2-core CPU.
#[derive(Debug, Args)]
#[command(
    allow_negative_numbers = true,
    // The demo: small images, few epochs and Adam for YOLOv5 and YOLOv7 (train's auto is
    // their SGD): from scratch, SGD needs thousands of iterations before mAP rises, far more
    // than the demo's budget (YOLOv5's own SGD recipe on 512 synthetic images is at mAP50
    // 0.007 after 10 epochs, 0.2 after 30). YOLOv8 and YOLO11 keep ultralytics 8's auto.
    mut_arg("epochs", |a| a.default_value(DEMO.epochs)),
    mut_arg("imgsz", |a| a.default_value(DEMO.imgsz)),
    mut_arg("optimizer", |a| a.help("SGD, Adam, AdamW, or auto: Adam for YOLOv5 and YOLOv7 (their SGD recipe needs far more iterations than a short experiment), ultralytics 8's rule for YOLOv8 and YOLO11 (AdamW with a fitted lr for short runs)")),
    mut_arg("data", |a| a.help("Dataset YAML; without it, a synthetic shapes dataset is made under runs/compare/shapes")),
)]
pub struct CompareArgs {
    #[command(flatten)]
    pub flags: TrainFlags,
    /// Activations to compare, the baseline first: names or specs, e.g. "silu,relu,nn.Hardtanh(-2, 2)".
    #[arg(long, default_value = "silu,hardswish")]
    pub acts: String,
    /// One run per activation and seed.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    pub seeds: Vec<u64>,
    /// The experiment folder; running the same command again continues the experiment in it.
    #[arg(long, default_value = "runs/compare/exp")]
    pub out: PathBuf,
    /// Timed batch-1 inferences per activation (the latency is their median).
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub latency_runs: usize,
    /// Train only shard M of N (from 1), e.g. --shard 2/4. Without it, a Slurm array's or
    /// an Indexed Job's index is used when set, else any run no other process holds.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Runs trained at once, each with its share of the cores.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub jobs: usize,
    /// Write the report from the finished runs, training nothing.
    #[arg(long)]
    pub report_only: bool,
    /// List every run of an experiment folder (--out when none is given) and exit.
    #[arg(long, num_args = 0..=1, value_name = "OUT")]
    pub status: Option<Option<PathBuf>>,
    /// Seconds without a heartbeat after which another host's claim on a run is stale and
    /// the run is taken over (a dead process of this host is noticed at once).
    #[arg(long, default_value_t = 600, value_parser = positive)]
    pub claim_timeout: usize,
    /// Screen the activations by successive halving: rungs at about 1/9, 1/3 and all of
    /// --epochs; after each, only the best third by mean fitness (and the baseline, the
    /// first) train on. With --acts all, every catalogued activation, SiLU first.
    #[arg(long)]
    pub screen: bool,
}

/// The built-in demo's size.
struct Demo {
    epochs: &'static str,
    imgsz: &'static str,
    n_train: usize,
    n_val: usize,
}

const DEMO: Demo = Demo {
    epochs: "12",
    imgsz: "128",
    n_train: 500,
    n_val: 100,
};

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let claim_timeout = Duration::from_secs(args.claim_timeout as u64);
    if let Some(out) = &args.status {
        let out = out.as_ref().unwrap_or(&args.out);
        for line in status(out, claim_timeout)? {
            println!("{line}");
        }
        return Ok(());
    }
    let shard = match args.shard {
        Some(shard) => Some(shard),
        None => Shard::from_env(|name| std::env::var(name).ok())?.map(|(shard, source)| {
            eprintln!("Shard {}/{} from {source}", shard.index, shard.count);
            shard
        }),
    };
    let data = match args.flags.data.clone() {
        Some(d) => d,
        None => demo_data(args.flags.imgsz)?,
    };
    let device = args.flags.device.device.clone();
    let mut args = args;
    let anchor_based = ModelConfig::load(&args.flags.cfg).is_ok_and(|c| !c.anchors.is_empty());
    if args.flags.optimizer == OptimizerKind::Auto && anchor_based {
        args.flags.optimizer = OptimizerKind::Adam;
    }
    let options = CompareOptions {
        device,
        train: args.flags.into_options(
            data,
            RunPlace {
                act: None,
                seed: 0,
                project: PathBuf::new(),
                name: String::new(),
                exist_ok: true,
            },
        ),
        acts: if args.acts.trim().eq_ignore_ascii_case("all") {
            every_activation()
        } else {
            split_list(&args.acts)
                .into_iter()
                .map(String::from)
                .collect()
        },
        seeds: args.seeds,
        out: args.out,
        latency_runs: args.latency_runs.max(1),
        shard,
        jobs: args.jobs,
        report_only: args.report_only,
        claim_timeout,
        screen: args.screen,
    };
    let mut display = Display::new(options.train.epochs);
    let experiment = compare(&options, &mut |e| display.show(e))?;
    display.finish();
    println!("\n{}", verdict(&experiment).join("\n"));
    println!("Report: {}", options.out.join("report.html").display());
    Ok(())
}

/// The synthetic dataset of the demo, made once under runs/compare/shapes.
/// `--acts all`: every catalogued activation at its defaults, SiLU (the baseline) first.
fn every_activation() -> Vec<String> {
    let silu = ActSpec::silu().to_string();
    std::iter::once(silu.clone())
        .chain(
            ACTIVATIONS
                .iter()
                .map(|&def| ActSpec::of(def).to_string())
                .filter(|spec| *spec != silu),
        )
        .collect()
}

fn demo_data(imgsz: usize) -> anyhow::Result<PathBuf> {
    let out = PathBuf::from("runs/compare/shapes");
    let yaml = out.join("data.yaml");
    if !yaml.is_file() {
        eprintln!(
            "Making the synthetic dataset {} ({} train, {} val images at {imgsz})",
            out.display(),
            DEMO.n_train,
            DEMO.n_val
        );
        let config = SynthConfig {
            out: out.clone(),
            n_train: DEMO.n_train,
            n_val: DEMO.n_val,
            imgsz: imgsz as u32,
            ..SynthConfig::default()
        };
        generate(&config)?;
    }
    Ok(yaml)
}

/// One bar for the whole experiment (epochs of all runs, so its ETA is the experiment's)
/// and one for the current epoch's batches.
struct Display {
    bars: MultiProgress,
    overall: ProgressBar,
    epoch: Option<ProgressBar>,
    epochs_per_run: usize,
    current: String,
    quiet: bool,
    /// Runs trained to their end by this process, and since when: its throughput.
    trained: usize,
    started: Instant,
}

impl Display {
    fn new(epochs_per_run: usize) -> Display {
        let bars = MultiProgress::new();
        let overall = bars.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} epochs [{elapsed}<{eta}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Display {
            bars,
            overall,
            epoch: None,
            epochs_per_run,
            current: String::new(),
            quiet: false,
            trained: 0,
            started: Instant::now(),
        }
    }

    /// A line above the bars; plain stderr when they are hidden (not a terminal), where
    /// indicatif would drop it.
    fn println(&self, line: String) {
        if self.bars.is_hidden() || self.bars.println(&line).is_err() {
            eprintln!("{line}");
        }
    }

    fn show(&mut self, event: CompareEvent) {
        match event {
            CompareEvent::Planned { total, done } => {
                self.overall
                    .set_length((total * self.epochs_per_run) as u64);
                self.overall
                    .set_position((done * self.epochs_per_run) as u64);
                self.overall.reset_eta();
                self.println(format!("Experiment: {total} runs, {done} already done"));
            }
            CompareEvent::Measuring { act } => {
                self.overall.set_message(format!("measuring {act} latency"))
            }
            CompareEvent::RunStart { act, seed, resume } => {
                self.current = format!("{act} seed {seed}");
                self.overall.set_message(format!(
                    "{}{}",
                    self.current,
                    if resume { " (resumed)" } else { "" }
                ));
            }
            CompareEvent::Train(event) => self.show_train(event),
            CompareEvent::Quantizing { act, seed } => self.overall.set_message(format!(
                "{act} seed {seed}: INT8 calibration and validation"
            )),
            CompareEvent::EpochDone {
                act,
                seed,
                epoch,
                epochs,
            } => {
                self.overall.inc(1);
                self.overall
                    .set_message(format!("{act} seed {seed}: epoch {epoch}/{}", epochs - 1));
            }
            CompareEvent::RunEnd { record } => {
                self.trained += 1;
                self.finish_epoch();
                self.quiet = true;
                // Epochs a run did not need (early stop, divergence) count as done.
                self.overall
                    .inc(self.epochs_per_run.saturating_sub(record.curve.len()) as u64);
                let result = match (&record.status, record.best) {
                    (RunStatus::Finished, Some(b)) => format!(
                        "mAP50 {:.3}, mAP50-95 {:.3} (best epoch {}){}",
                        b.map50,
                        b.map,
                        b.epoch,
                        record
                            .int8
                            .map_or(String::new(), |q| format!("; INT8 mAP50-95 {:.3}", q.map))
                    ),
                    (RunStatus::Diverged { message }, _) => format!("diverged: {message}"),
                    (RunStatus::Pending, _) => {
                        format!(
                            "paused after {} epochs for the screening",
                            record.curve.len()
                        )
                    }
                    (RunStatus::Failed { message }, _) => format!("failed: {message}"),
                    (status, _) => format!("{status:?}"),
                };
                self.println(format!("{} seed {}: {result}", record.act, record.seed));
            }
            CompareEvent::Screened {
                epochs,
                kept,
                dropped,
            } => self.println(format!(
                "Screening after {epochs} epochs: kept {}; screened out {}",
                kept.join(", "),
                dropped.join(", ")
            )),
            CompareEvent::Report(files) => self
                .overall
                .set_message(format!("report: {}", files.html.display())),
        }
    }

    fn show_train(&mut self, event: TrainEvent) {
        match event {
            // The data summary and warnings once; later runs repeat them.
            TrainEvent::Message(m) if !self.quiet || m.starts_with("Resuming") => self.println(m),
            TrainEvent::Message(_) => {}
            TrainEvent::EpochStart {
                epoch,
                epochs,
                batches,
                ..
            } => {
                self.finish_epoch();
                let bar = self.bars.add(ProgressBar::new(batches as u64));
                bar.set_style(
                    ProgressStyle::with_template("  {prefix} {bar:20} {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(format!("{} epoch {epoch}/{}", self.current, epochs - 1));
                self.epoch = Some(bar);
            }
            TrainEvent::Batch {
                index, mean_loss, ..
            } => {
                if let Some(bar) = &self.epoch {
                    bar.set_position(index as u64);
                    bar.set_message(format!(
                        "loss {:.4} {:.4} {:.4}",
                        mean_loss[0], mean_loss[1], mean_loss[2]
                    ));
                }
            }
            TrainEvent::Validating { index, batches } => {
                if let Some(bar) = &self.epoch {
                    bar.set_message(format!("validating {index}/{batches}"));
                }
            }
            TrainEvent::EpochEnd {
                epoch,
                val,
                seconds,
            } => {
                self.finish_epoch();
                self.overall.inc(1);
                self.println(format!(
                    "  {} epoch {epoch}: mAP50 {:.3} mAP50-95 {:.3} ({seconds:.0} s)",
                    self.current, val.metrics.map50, val.metrics.map
                ));
            }
        }
    }

    fn finish_epoch(&mut self) {
        if let Some(bar) = self.epoch.take() {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
    }

    fn finish(&mut self) {
        self.finish_epoch();
        self.overall.finish();
        if self.trained > 0 {
            let hours = self.started.elapsed().as_secs_f64() / 3600.0;
            self.println(format!(
                "This process trained {} runs in {:.1} min: {:.1} runs per hour",
                self.trained,
                hours * 60.0,
                self.trained as f64 / hours
            ));
        }
    }
}
