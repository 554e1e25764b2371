use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    actyolo::util::runtime::configure();
    let matches = actyolo::cli::Cli::command().get_matches();
    let cli = match actyolo::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match actyolo::cli::run(cli, &matches) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
