//! `bach-bench`: runs one workload in one mode; see `bach-bench --help`.

use std::process::ExitCode;

use benchmarks::cli::{self, BenchArgs};

fn main() -> ExitCode {
    let args: BenchArgs = cli::parse_or_exit();
    benchmarks::term::init_logging(args.verbose);
    match cli::run_bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
