//! The command line: argument parsing and one library call per subcommand.

pub mod acts;
pub mod compare;
pub mod data;
pub mod detect;
pub mod export;
pub mod flags;
pub mod info;
pub mod train;
pub mod val;
pub mod values;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "actyolo",
    version,
    about = "YOLOv5, YOLOv7, YOLOv8 and YOLO11 with a zoo of PyTorch-exact activation functions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, evaluate and plot the activation functions.
    #[command(subcommand)]
    Acts(acts::ActsCommand),
    /// Train one detector per activation (and seed) and report which is better, by how much, and at what speed.
    Compare(compare::CompareArgs),
    /// Make a synthetic dataset, or check a dataset's images and labels.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Detect objects in images and save annotated copies (as ultralytics' detect.py).
    Detect(detect::DetectArgs),
    /// Export weights to ONNX, the Detect decode included (as export.py --include onnx).
    Export(export::ExportArgs),
    /// Show a model's layers, parameters and GFLOPs.
    Info(info::InfoArgs),
    /// Train a detector (as ultralytics' train.py).
    Train(train::TrainArgs),
    /// Validate weights on a dataset: P, R, mAP@0.5 and mAP@0.5:0.95 (as val.py).
    Val(val::ValArgs),
}

/// Runs the parsed command; `matches` tells which options were given on the command line.
pub fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Acts(cmd) => acts::run(cmd),
        Command::Compare(args) => compare::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Detect(args) => detect::run(args),
        Command::Export(args) => export::run(args),
        Command::Info(args) => info::run(args),
        Command::Train(args) => train::run(args, matches.subcommand_matches("train")),
        Command::Val(args) => val::run(args),
    }
}
