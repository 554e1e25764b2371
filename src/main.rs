use clap::Parser;

fn main() -> std::process::ExitCode {
    // candle's elementwise ops spin a pool of their own beside rayon's, which our kernels
    // use: on a small machine the two fight over the cores (measured: a yolov5n training
    // step takes 1.5x as long). One candle thread leaves the cores to rayon.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let cli = actyolo::cli::Cli::parse();
    match actyolo::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
