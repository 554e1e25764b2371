//! The `actyolo` command: argument parsing and progress display over the library.

mod cli;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    actyolo::util::runtime::configure();
    let matches = cli::Cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli::run(cli, &matches) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", actyolo::util::error::chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
