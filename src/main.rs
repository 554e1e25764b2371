use clap::Parser;

fn main() -> std::process::ExitCode {
    actyolo::runtime::configure();
    let cli = actyolo::cli::Cli::parse();
    match actyolo::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
