//! `actyolo data`: make a synthetic dataset, or check one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use actyolo::data::dataset::{CacheStatus, DataConfig, Dataset, DatasetReport, Split};
use actyolo::data::loader::{Loader, LoaderConfig};
use actyolo::data::synth::{generate, ShapeKind, SynthConfig};
use actyolo::plot::batch::plot_batch;
use actyolo::train::hyp::{Hyp, DEFAULT_NAME};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a synthetic dataset of shapes on textured backgrounds, in YOLO format.
    Synth(SynthArgs),
    /// Verify every image and label of a dataset and print what was found.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder; it must not already hold images/, labels/ or data.yaml.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    pub n_train: usize,
    #[arg(long, default_value_t = 200)]
    pub n_val: usize,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = 256)]
    pub imgsz: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Shapes to draw, one class each, in this order (circle, rectangle, triangle, star, cross).
    #[arg(long, default_value = "circle,rectangle,triangle")]
    pub classes: String,
    /// Most shapes in one image.
    #[arg(long, default_value_t = 6)]
    pub max_objects: usize,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The dataset's data.yaml.
    #[arg(long)]
    pub data: PathBuf,
    /// Also write the first training batch, with its boxes, to this image file (e.g. train_batch0.jpg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Image size of the plotted batch.
    #[arg(long, default_value_t = 640)]
    pub imgsz: u32,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Threads decoding and augmenting the plotted batch.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Hyperparameters for the plotted batch's augmentation: a shipped name or a YAML path.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub hyp: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Synth(args) => synth(args),
        DataCommand::Check(args) => check(args),
    }
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let config = SynthConfig {
        out: args.out,
        n_train: args.n_train,
        n_val: args.n_val,
        imgsz: args.imgsz,
        seed: args.seed,
        classes: ShapeKind::parse_list(&args.classes)?,
        max_objects: args.max_objects,
    };
    let start = Instant::now();
    let summary = generate(&config)?;
    println!(
        "wrote {} train images ({} objects) and {} val images ({} objects) in {:.1} s\n{}",
        summary.train_images,
        summary.train_objects,
        summary.val_images,
        summary.val_objects,
        start.elapsed().as_secs_f64(),
        summary.data_yaml.display()
    );
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let config = DataConfig::load(&args.data)?;
    println!(
        "{}: {} classes ({})",
        args.data.display(),
        config.nc(),
        config.names.join(", ")
    );
    let mut train = None;
    for split in [Split::Train, Split::Val, Split::Test] {
        if config.sources(split).is_empty() {
            continue;
        }
        let dataset = Dataset::from_config(&config, split)
            .with_context(|| format!("{} split", split.key()))?;
        print_report(split, &dataset.report);
        if split == Split::Train {
            train = Some(dataset);
        }
    }
    if let (Some(path), Some(dataset)) = (args.plot, train) {
        let hyp = Hyp::load(&args.hyp)?;
        let loader_config = LoaderConfig {
            imgsz: args.imgsz,
            batch_size: args.batch_size,
            workers: args.workers,
            seed: args.seed,
            prefetch: 1,
            rect: None,
        };
        let loader = Loader::train(Arc::new(dataset), &hyp.augment, loader_config)?;
        let batch = loader
            .epoch(0)?
            .next()
            .context("the training set gave no batch")??;
        plot_batch(
            &batch.images,
            &batch.targets,
            &batch.paths,
            &config.names,
            &path,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_report(split: Split, report: &DatasetReport) {
    for warning in &report.warnings {
        println!("{warning}");
    }
    let cache = match &report.cache {
        CacheStatus::Loaded(path) => format!("cache {}", path.display()),
        CacheStatus::Created(path) => format!("new cache {}", path.display()),
        CacheStatus::NotWritable { path, reason } => {
            format!("WARNING ⚠️ cache {} not writable: {reason}", path.display())
        }
    };
    println!("{}: {} ({cache})", split.key(), report.summary());
}
