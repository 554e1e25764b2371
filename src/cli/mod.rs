//! The command line: argument parsing and one library call per subcommand.

pub mod acts;
pub mod data;
pub mod detect;
pub mod info;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "actyolo", version, about = "YOLOv5/YOLOv7 with a zoo of PyTorch-exact activation functions")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, evaluate and plot the activation functions.
    #[command(subcommand)]
    Acts(acts::ActsCommand),
    /// Make a synthetic dataset, or check a dataset's images and labels.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Detect objects in images and save annotated copies (as ultralytics' detect.py).
    Detect(detect::DetectArgs),
    /// Show a model's layers, parameters and GFLOPs.
    Info(info::InfoArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Acts(cmd) => acts::run(cmd),
        Command::Data(cmd) => data::run(cmd),
        Command::Detect(args) => detect::run(args),
        Command::Info(args) => info::run(args),
    }
}
