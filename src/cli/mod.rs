//! The command line: argument parsing and one library call per subcommand.

pub mod acts;
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
    /// Show a model's layers, parameters and GFLOPs.
    Info(info::InfoArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Acts(cmd) => acts::run(cmd),
        Command::Info(args) => info::run(args),
    }
}
