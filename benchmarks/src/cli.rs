//! The `bach-bench` command line: flags, output, exit codes.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser};

use crate::bench::{self, Mode, Progress, Settings, TrialTimes};
use crate::record::{self, Machine, Record};
use crate::term::Bar;
use crate::workloads::{self, Workload};

/// Runs one of the paper's workloads in one mode and reports the median Init,
/// Runtime and Total seconds over the trials.
///
/// Inputs are random (seeded) and generated outside the timed region; results
/// are dropped outside it too. Init is the time to build the computation (bach:
/// recording the lazy graph; 0 for cpu and fused), Runtime the computation
/// (bach: `evaluate`), Total their sum. Output ends with the lines
/// `Median Init: S`, `Median Runtime: S` and `Median Total: S` (seconds).
///
/// Bach's runtime also reads BACH_BATCH_SIZE, BACH_THREADS and
/// BACH_CACHE_BYTES; --batch-size and --threads take precedence. Logs go to
/// stderr: RUST_LOG sets their filter, else -v.
#[derive(Debug, Clone, Parser)]
#[command(name = "bach-bench", version)]
pub struct BenchArgs {
    /// Workload to run.
    #[arg(short = 'b', long = "benchmark", value_name = "NAME", value_parser = workload_parser())]
    pub benchmark: &'static Workload,

    /// How to compute it.
    #[arg(short = 'm', long = "mode", value_name = "MODE", value_enum)]
    pub mode: Mode,

    /// Problem size, as log2: 2^LOG2 elements (blackscholes, haversine: default
    /// 26), or what the workload's description says it counts (default: the
    /// workload's own).
    #[arg(short = 's', long = "size", value_name = "LOG2",
          value_parser = clap::value_parser!(u32).range(0..=40))]
    pub size: Option<u32>,

    /// Number of timed trials (the medians are over these).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = positive())]
    pub trials: usize,

    /// Worker threads: sizes rayon's global pool (fused mode) and Bach's
    /// Config.threads. Default: one per core (cpu mode is single-threaded
    /// either way).
    #[arg(long, value_name = "N", value_parser = positive())]
    pub threads: Option<usize>,

    /// Bach's batch size in elements (Config.batch_size). Default: derived by
    /// the runtime from the cache size.
    #[arg(long = "batch-size", value_name = "N", value_parser = positive())]
    pub batch_size: Option<usize>,

    /// Seed of the random inputs.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,

    /// Append one JSON line describing this run (trials, medians, machine,
    /// git commit) to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Compare the result with cpu mode on the same inputs, bit for bit
    /// (outside the timed region); a mismatch prints the first differing index
    /// and exits with status 1.
    #[arg(long)]
    pub check: bool,

    /// Testing aid: corrupt one element of the result before --check.
    #[arg(long, value_name = "INDEX", hide = true)]
    pub corrupt_index: Option<usize>,
    /// Testing aid: run gpu mode, and give bach mode, a simulated device (host
    /// memory; kernels stood in for by the CPU functions) instead of the GPU.
    #[arg(long, hide = true)]
    pub simulated_device: bool,
    /// Print Bach's plan before the trials (stages, placement, predicted costs)
    /// and, after them, the last run with measured times per stage (bach mode).
    #[arg(long)]
    pub explain: bool,

    /// More log output on stderr, from bach_runtime and the benchmarks: -v
    /// info, -vv debug, -vvv trace (default: warnings only). RUST_LOG, when
    /// set, replaces this filter (e.g. RUST_LOG=bach_runtime=debug).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

/// The workload registry as a clap value parser (so `--help` and the error for
/// an unknown name list the registered workloads).
pub fn workload_parser() -> impl TypedValueParser<Value = &'static Workload> {
    let values = workloads::REGISTRY
        .iter()
        .map(|w| PossibleValue::new(w.name).help(w.description));
    PossibleValuesParser::new(values)
        .map(|name| workloads::find(&name).expect("checked by the parser"))
}

/// A parser for counts of at least 1.
pub fn positive() -> impl TypedValueParser<Value = usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// Parses the command line; on a usage error prints one line to stderr and
/// exits with status 2 (`--help` and `--version` print as usual).
pub fn parse_or_exit<P: Parser>() -> P {
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit()
            }
            eprintln!("{}", one_line(&e));
            std::process::exit(2)
        }
    }
}

/// A clap error as one line: the message and its details, without the usage
/// block and tips.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") {
            continue;
        }
        parts.push(line);
    }
    format!("{} (see --help)", parts.join(" "))
}

impl BenchArgs {
    /// The run these flags describe.
    pub fn settings(&self) -> Settings {
        Settings {
            workload: self.benchmark,
            mode: self.mode,
            log2_size: self.size.unwrap_or(self.benchmark.default_size),
            trials: self.trials,
            threads: self.threads,
            batch_size: self.batch_size,
            seed: self.seed,
            check: self.check,
            corrupt_index: self.corrupt_index,
            simulated_device: self.simulated_device,
            explain: self.explain,
        }
    }
}

/// Runs `bach-bench` with parsed flags: prints the trials and the three
/// median lines, appends the JSON record. `Err` carries the one-line message.
pub fn run_bench(args: &BenchArgs) -> Result<(), String> {
    let settings = args.settings();
    bench::configure_threads(args.threads)
        .map_err(|e| format!("cannot start {:?} threads: {e}", args.threads))?;
    let w = settings.workload;
    let n = 1u64 << settings.log2_size;
    let env = bach_runtime::Config::from_env();
    let threads = match settings.mode {
        Mode::Bach => settings.threads.or(env.threads),
        Mode::Gpu => Some(1),
        _ => settings.threads,
    }
    .unwrap_or_else(rayon::current_num_threads);
    let size = w
        .size_meaning
        .replace("LOG2", &settings.log2_size.to_string());
    let mut header = format!(
        "{}, mode {}, {size} (2^{} = {n}), {} trial{}, seed {}, {threads} thread{}",
        w.name,
        settings.mode.name(),
        settings.log2_size,
        settings.trials,
        if settings.trials == 1 { "" } else { "s" },
        settings.seed,
        if threads == 1 { "" } else { "s" },
    );
    if settings.mode == Mode::Cpu {
        header.push_str(" (cpu mode uses one)");
    }
    if settings.mode == Mode::Bach {
        let batch = settings.batch_size.or(env.batch_size);
        header.push_str(&batch.map_or(", batch size auto".into(), |b| format!(", batch size {b}")));
    }
    println!("{header}");
    tracing::info!(config = ?env, "bach-bench: {header}");
    // Drawn from the first trial on (not while inputs are made or the plan printed).
    let trials = settings.trials;
    let bar = Bar::new(
        trials as u64,
        "{prefix} [{bar:30}] {pos}/{len} trials ({elapsed} in this one)",
        format!(
            "{} {} 2^{}",
            w.name,
            settings.mode.name(),
            settings.log2_size
        ),
    );
    let mut on_progress = |p: Progress| match p {
        Progress::Start(i) => {
            bar.show();
            bar.bar().reset_elapsed();
            bar.bar().set_position(i as u64);
        }
        Progress::Done(i, t) => {
            crate::term::suspend(|| {
                println!(
                    "Trial {}/{trials}: Init {:.6} s, Runtime {:.6} s, Total {:.6} s",
                    i + 1,
                    t.init,
                    t.runtime,
                    t.total
                )
            });
            bar.bar().set_position(i as u64 + 1);
            if i + 1 == trials {
                bar.bar().finish_and_clear();
            }
        }
    };
    let result = bench::run(&settings, &mut on_progress);
    drop(bar);
    let outcome = result.map_err(|e| e.to_string())?;
    if let Some(line) = &outcome.result {
        println!("Result: {line}");
    }
    if outcome.checked {
        match (outcome.tolerance, w.check) {
            (None, crate::workloads::Check::Custom(_)) => {
                println!("Check: passed (the workload's own comparison with cpu mode)")
            }
            (None, _) => println!("Check: passed (bit-identical to cpu mode)"),
            (Some(t), _) => println!("Check: passed (within {t:e} relative of cpu mode)"),
        }
    }
    let batch_size = outcome.bach_config.as_ref().and_then(|c| c.batch_size);
    let record = make_record(
        &settings,
        &outcome.trials,
        outcome.threads,
        batch_size,
        outcome.checked,
    );
    if let Some(path) = &args.json {
        record::append_jsonl(path, &record)
            .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
    }
    println!("Median Init: {:.6}", record.median_init_s);
    println!("Median Runtime: {:.6}", record.median_runtime_s);
    println!("Median Total: {:.6}", record.median_total_s);
    Ok(())
}

/// The JSON record of a finished run.
pub fn make_record(
    settings: &Settings,
    trials: &[TrialTimes],
    threads: usize,
    batch_size: Option<usize>,
    checked: bool,
) -> Record {
    let init: Vec<f64> = trials.iter().map(|t| t.init).collect();
    let runtime: Vec<f64> = trials.iter().map(|t| t.runtime).collect();
    let total: Vec<f64> = trials.iter().map(|t| t.total).collect();
    let (git_commit, git_dirty) = record::git_state();
    Record {
        workload: settings.workload.name.to_string(),
        mode: settings.mode.name().to_string(),
        log2_size: settings.log2_size,
        elements: 1u64 << settings.log2_size,
        trials: trials.len(),
        median_init_s: bench::median(&init),
        median_runtime_s: bench::median(&runtime),
        median_total_s: bench::median(&total),
        init_s: init,
        runtime_s: runtime,
        total_s: total,
        threads,
        batch_size,
        seed: settings.seed,
        checked,
        machine: Machine::current(),
        git_commit,
        git_dirty,
        timestamp: record::rfc3339(SystemTime::now()),
        source: format!("bach-bench {}", env!("CARGO_PKG_VERSION")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        BenchArgs::try_parse_from(std::iter::once("bach-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let a = parse(&["-b", "haversine", "-m", "bach"]).unwrap();
        assert_eq!(a.benchmark.name, "haversine");
        assert_eq!(a.mode, Mode::Bach);
        assert_eq!((a.size, a.trials, a.seed), (None, 1, 42));
        assert_eq!(a.settings().log2_size, 26);
        assert_eq!(
            (a.threads, a.batch_size, a.json.clone()),
            (None, None, None)
        );
        assert!(!a.check && a.corrupt_index.is_none());
    }

    #[test]
    fn long_flags() {
        let a = parse(&[
            "--benchmark=blackscholes",
            "--mode",
            "fused",
            "--size",
            "12",
            "--trials",
            "3",
            "--threads",
            "2",
            "--batch-size",
            "4096",
            "--seed",
            "7",
            "--json",
            "out.jsonl",
            "--check",
        ])
        .unwrap();
        assert_eq!(a.benchmark.name, "blackscholes");
        assert_eq!(
            (a.mode, a.size, a.trials, a.seed),
            (Mode::Fused, Some(12), 3, 7)
        );
        assert_eq!((a.threads, a.batch_size), (Some(2), Some(4096)));
        assert_eq!(a.json, Some(PathBuf::from("out.jsonl")));
        assert!(a.check);
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            &["-b", "nope", "-m", "cpu"][..],
            &["-b", "haversine", "-m", "cpu", "--frobnicate"],
            &["-b", "haversine", "-m", "tpu"],
            &["-b", "haversine", "-m", "cpu", "--trials", "0"],
            &["-b", "haversine", "-m", "cpu", "-s", "99"],
            &["-m", "cpu"],
        ] {
            let e = parse(bad).unwrap_err();
            let line = one_line(&e);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("error: "), "{line}");
        }
        let line = one_line(&parse(&["-b", "nope", "-m", "cpu"]).unwrap_err());
        for name in workloads::names() {
            assert!(line.contains(name), "{line}");
        }
        let line = one_line(&parse(&["-m", "cpu"]).unwrap_err());
        assert!(line.contains("--benchmark"), "{line}");
    }
}
