//! `bach-sweep`: workloads x modes x sizes through `bach-bench`; see `bach-sweep --help`.

use std::process::ExitCode;

use benchmarks::cli;
use benchmarks::sweep::{self, SweepArgs};

fn main() -> ExitCode {
    let args: SweepArgs = cli::parse_or_exit();
    benchmarks::term::init_logging(args.verbose);
    match sweep::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
