//! `bach-sweep`: workloads x modes x sizes, each run in a fresh `bach-bench`
//! process (so every configuration starts with fresh memory), collected into
//! `DIR/results.jsonl`, then `DIR/table.md` and SVG charts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::SystemTime;

use clap::{ArgAction, Parser};

use crate::cli::{positive, workload_parser};
use crate::record::{self, Machine, Record};
use crate::report;
use crate::term::{self, Bar};
use crate::workloads::{self, Anchor, Workload};

/// A mode of the sweep: the modes of `bach-bench`, and `anchors` (each
/// workload's Python peers, [`Workload::anchors`], run with python3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SweepMode {
    /// `bach-bench -m cpu`.
    Cpu,
    /// `bach-bench -m bach`.
    Bach,
    /// `bach-bench -m fused`.
    Fused,
    /// `bach-bench -m gpu` (hand-written device code; fails, and is reported, without a GPU).
    Gpu,
    /// Each workload's Python peers: `python3 ANCHORS_DIR/SCRIPT WORKLOAD LOG2
    /// TRIALS` per anchor (one skipped, with the reason, when python3 or a module
    /// it imports is missing). `numpy` is accepted for it too.
    #[value(alias = "numpy")]
    Anchors,
}

impl SweepMode {
    fn name(self) -> &'static str {
        match self {
            SweepMode::Cpu => "cpu",
            SweepMode::Bach => "bach",
            SweepMode::Fused => "fused",
            SweepMode::Gpu => "gpu",
            SweepMode::Anchors => "anchors",
        }
    }
}

/// Runs `bach-bench` over workloads x modes x sizes (one process per
/// configuration), appends each run's JSON line to DIR/results.jsonl, and
/// writes `DIR/table.md`, `DIR/runtime_<workload>.svg` and `DIR/speedup_<workload>.svg`.
///
/// Logs go to stderr (RUST_LOG sets their filter, else -v; bach-bench gets the
/// same -v); a progress bar is drawn there when stderr is a terminal.
#[derive(Debug, Clone, Parser)]
#[command(name = "bach-sweep", version)]
pub struct SweepArgs {
    /// Workloads, comma-separated. Default: every registered workload.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = workload_parser())]
    pub benchmarks: Vec<&'static Workload>,

    /// Modes, comma-separated.
    #[arg(
        long,
        value_name = "MODES",
        value_delimiter = ',',
        value_enum,
        default_value = "cpu,bach,fused,anchors"
    )]
    pub modes: Vec<SweepMode>,

    /// Sizes as log2 of the element count, comma-separated.
    #[arg(long, value_name = "LOG2S", value_delimiter = ',', default_value = "10,16,20,24",
          value_parser = clap::value_parser!(u32).range(0..=40))]
    pub sizes: Vec<u32>,

    /// Trials per configuration.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = positive())]
    pub trials: usize,

    /// Trials at sizes of at least --large-from (default: --trials).
    #[arg(long, value_name = "N", value_parser = positive())]
    pub trials_large: Option<usize>,

    /// The smallest log2 size that uses --trials-large.
    #[arg(long, value_name = "LOG2", default_value_t = 24)]
    pub large_from: u32,

    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "target/bach-sweep")]
    pub out: PathBuf,

    /// Passed to bach-bench --threads.
    #[arg(long, value_name = "N", value_parser = positive())]
    pub threads: Option<usize>,

    /// Passed to bach-bench --batch-size (bach mode).
    #[arg(long = "batch-size", value_name = "N", value_parser = positive())]
    pub batch_size: Option<usize>,

    /// Passed to bach-bench --seed.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,

    /// Passed to bach-bench: check every result against cpu mode (outside the timed region).
    #[arg(long)]
    pub check: bool,

    /// The directory of the anchor scripts (`SCRIPT WORKLOAD LOG2 TRIALS`).
    #[arg(long, value_name = "DIR", default_value = default_anchors_dir())]
    pub anchors_dir: PathBuf,

    /// Python interpreter for the anchors mode.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: PathBuf,

    /// The bach-bench binary. Default: next to this executable.
    #[arg(long, value_name = "PATH")]
    pub bench_bin: Option<PathBuf>,

    /// Before each configuration, wait up to SECS seconds for the machine to be
    /// idle (at least 90% idle CPU over two 250 ms windows, from /proc/stat),
    /// so that other jobs on a shared machine disturb fewer runs. 0: do not wait.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub wait_idle: f64,

    /// Do not run anything: redraw table.md and the charts from DIR/results.jsonl.
    #[arg(long)]
    pub report_only: bool,

    /// Keep an existing DIR/results.jsonl and add to it (default: start afresh).
    #[arg(long)]
    pub append: bool,

    /// More log output on stderr, from bach_runtime and the benchmarks, here
    /// and in bach-bench: -v info, -vv debug, -vvv trace (default: warnings
    /// only). RUST_LOG, when set, replaces this filter.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

/// `benchmarks/anchors` in the source tree this was built from.
pub fn default_anchors_dir() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/anchors")
}

/// Whether `python -c "import MODULES"` succeeds.
pub fn modules_available(python: &Path, modules: &[&str]) -> bool {
    let import = format!("import {}", modules.join(", "));
    Command::new(python)
        .args(["-c", &import])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the NumPy anchor can run (`import numpy, scipy`).
pub fn numpy_available(python: &Path) -> bool {
    modules_available(python, &["numpy", "scipy"])
}

/// Why `anchor` cannot run here, if it cannot.
fn anchor_unavailable(args: &SweepArgs, anchor: &Anchor) -> Option<String> {
    let script = args.anchors_dir.join(anchor.script);
    if !script.exists() {
        return Some(format!("{} not found", script.display()));
    }
    if !modules_available(&args.python, anchor.modules) {
        return Some(format!(
            "`{} -c \"import {}\"` failed",
            args.python.display(),
            anchor.modules.join(", ")
        ));
    }
    None
}

/// The median seconds in an anchor script's output line
/// (`... median_s=0.0123 ns_per_elem=45.67 ...`). `ns_per_elem` has more
/// significant digits at small sizes, so it is preferred.
pub fn parse_anchor_median(stdout: &str, elements: u64) -> Option<f64> {
    let field = |key: &str| {
        stdout
            .split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
    };
    field("ns_per_elem=")
        .map(|ns| ns * elements as f64 * 1e-9)
        .or_else(|| field("median_s="))
}

/// The `Median Runtime:` value in bach-bench's output.
fn parse_median(stdout: &str, key: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// Busy and total jiffies of all CPUs, from the first line of /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// Waits up to `max_secs` until the CPUs were at least 90% idle over two
/// consecutive 250 ms windows. Returns the seconds waited (0 when /proc/stat
/// is unreadable).
pub fn wait_for_idle(max_secs: f64) -> f64 {
    let start = std::time::Instant::now();
    let mut quiet = 0;
    let Some(mut prev) = cpu_jiffies() else {
        return 0.0;
    };
    while quiet < 2 && start.elapsed().as_secs_f64() < max_secs {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let Some(now) = cpu_jiffies() else { return 0.0 };
        let (busy, total) = (now.0 - prev.0, now.1 - prev.1);
        prev = now;
        quiet = if total > 0 && (busy as f64) < 0.1 * total as f64 {
            quiet + 1
        } else {
            0
        };
    }
    start.elapsed().as_secs_f64()
}

fn bench_binary(args: &SweepArgs) -> Result<PathBuf, String> {
    if let Some(p) = &args.bench_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot locate bach-sweep: {e}"))?;
    let p = me.with_file_name(format!("bach-bench{}", std::env::consts::EXE_SUFFIX));
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found; build it (cargo build --release -p benchmarks) or pass --bench-bin",
            p.display()
        ))
    }
}

/// What a finished child process left: its status, its stdout, and the last
/// line of its stderr that starts with `error: ` (without that prefix).
struct ChildOutput {
    status: ExitStatus,
    stdout: String,
    error: Option<String>,
}

impl ChildOutput {
    /// Why the child failed, in one line.
    fn failure(&self) -> String {
        self.error
            .clone()
            .unwrap_or_else(|| format!("exited with {}", self.status))
    }
}

/// Runs `cmd` to the end. Its stderr is passed on, line by line as it comes
/// (logs, warnings; with the progress bar lifted), except `error: ` lines: the
/// failure is reported once, by the caller.
fn run_child(mut cmd: Command) -> Result<ChildOutput, String> {
    tracing::debug!("running {cmd:?}");
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let forward = std::thread::spawn(move || {
        let mut error = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.strip_prefix("error: ") {
                Some(msg) => error = Some(msg.trim().to_string()),
                None => term::suspend(|| eprintln!("{line}")),
            }
        }
        error
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let error = forward.join().unwrap_or(None);
    Ok(ChildOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        error,
    })
}

/// Runs one anchor script for one configuration and appends its record
/// (mode: the anchor's label).
fn run_anchor(
    args: &SweepArgs,
    w: &str,
    anchor: &Anchor,
    log2: u32,
    trials: usize,
    results: &Path,
) -> Result<f64, String> {
    let mut cmd = Command::new(&args.python);
    cmd.arg(args.anchors_dir.join(anchor.script)).args([
        anchor.workload.to_string(),
        log2.to_string(),
        trials.to_string(),
    ]);
    let out = run_child(cmd)?;
    let stdout = &out.stdout;
    if !out.status.success() {
        return Err(format!("{}: {}", anchor.script, out.failure()));
    }
    let elements = 1u64 << log2;
    let median = parse_anchor_median(stdout, elements).ok_or_else(|| {
        format!(
            "no median_s= in the output of {}: {}",
            anchor.script,
            stdout.trim()
        )
    })?;
    let (git_commit, git_dirty) = record::git_state();
    let rec = Record {
        workload: w.to_string(),
        mode: anchor.label.into(),
        log2_size: log2,
        elements,
        trials,
        init_s: Vec::new(),
        runtime_s: Vec::new(),
        total_s: Vec::new(),
        median_init_s: 0.0,
        median_runtime_s: median,
        median_total_s: median,
        threads: 1,
        batch_size: None,
        // The script seeds NumPy's generator with 42 whatever --seed says.
        seed: 42,
        checked: false,
        machine: Machine::current(),
        git_commit,
        git_dirty,
        timestamp: record::rfc3339(SystemTime::now()),
        source: anchor.script.into(),
    };
    record::append_jsonl(results, &rec)
        .map_err(|e| format!("cannot append to {}: {e}", results.display()))?;
    Ok(median)
}

/// Runs bach-bench for one configuration (it appends its own record).
fn run_bench(
    args: &SweepArgs,
    bin: &Path,
    w: &str,
    mode: &str,
    log2: u32,
    trials: usize,
    results: &Path,
) -> Result<f64, String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "-b",
        w,
        "-m",
        mode,
        "-s",
        &log2.to_string(),
        "--trials",
        &trials.to_string(),
    ]);
    cmd.args(["--seed", &args.seed.to_string()])
        .arg("--json")
        .arg(results);
    if let Some(t) = args.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if let Some(b) = args.batch_size {
        cmd.args(["--batch-size", &b.to_string()]);
    }
    if args.check {
        cmd.arg("--check");
    }
    if let Some(v) = term::verbosity_flag(args.verbose) {
        cmd.arg(v);
    }
    let out = run_child(cmd)?;
    if !out.status.success() {
        return Err(out.failure());
    }
    // The record just appended has the full-precision median.
    let last = record::read_jsonl(results)
        .ok()
        .and_then(|r| r.last().cloned())
        .filter(|r| r.workload == w && r.mode == mode && r.log2_size == log2);
    match last {
        Some(r) => Ok(r.median_total_s),
        None => parse_median(&out.stdout, "Median Total:")
            .ok_or_else(|| "no `Median Total:` line in its output".to_string()),
    }
}

/// One kind of run of a workload in the sweep.
enum Run {
    /// A `bach-bench` mode.
    Bench(SweepMode),
    /// One of the workload's Python peers.
    Anchor(&'static Anchor),
}

impl Run {
    fn name(&self) -> &'static str {
        match self {
            Run::Bench(m) => m.name(),
            Run::Anchor(a) => a.label,
        }
    }
}

/// Runs the sweep (unless `--report-only`) and writes the report. `Err`
/// carries a one-line message; failed configurations are reported and
/// skipped, and make the sweep end with an error after the report is written.
pub fn run(args: &SweepArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let results = args.out.join("results.jsonl");
    let mut failures = 0;
    if !args.report_only {
        let bin = bench_binary(args)?;
        if !args.append && results.exists() {
            std::fs::remove_file(&results)
                .map_err(|e| format!("cannot remove {}: {e}", results.display()))?;
        }
        // Created now, so that a sweep that measures nothing (every mode
        // skipped) still leaves its (empty) results and report.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results)
            .map_err(|e| format!("cannot create {}: {e}", results.display()))?;
        let chosen: Vec<&Workload> = if args.benchmarks.is_empty() {
            workloads::REGISTRY.to_vec()
        } else {
            args.benchmarks.clone()
        };
        // What each workload runs: the bach-bench modes asked for, then its
        // anchors that can run here.
        let mut runs: Vec<(&Workload, Vec<Run>)> = Vec::new();
        for w in &chosen {
            let mut list = Vec::new();
            for &mode in &args.modes {
                if mode != SweepMode::Anchors {
                    list.push(Run::Bench(mode));
                    continue;
                }
                for anchor in w.anchors {
                    match anchor_unavailable(args, anchor) {
                        None => list.push(Run::Anchor(anchor)),
                        Some(why) => eprintln!(
                            "note: skipping anchor {} of {}: {why}",
                            anchor.label, w.name
                        ),
                    }
                }
            }
            runs.push((w, list));
        }
        let total = args.sizes.len() * runs.iter().map(|(_, l)| l.len()).sum::<usize>();
        if total == 0 {
            eprintln!("note: nothing to run: every mode was skipped");
        }
        let bar = Bar::new(
            total as u64,
            "{prefix} [{bar:30}] {pos}/{len} runs, {elapsed_precise} elapsed, about {eta} left: {msg}",
            "bach-sweep".into(),
        );
        bar.show();
        let mut k = 0;
        for (w, list) in &runs {
            for &log2 in &args.sizes {
                let trials = match args.trials_large {
                    Some(t) if log2 >= args.large_from => t,
                    _ => args.trials,
                };
                for run in list {
                    k += 1;
                    bar.bar()
                        .set_message(format!("{} {} 2^{log2} x{trials}", w.name, run.name()));
                    if args.wait_idle > 0.0 {
                        let waited = wait_for_idle(args.wait_idle);
                        if waited > 1.0 {
                            term::suspend(|| {
                                println!("(waited {waited:.1} s for the machine to be idle)")
                            });
                        }
                    }
                    let started = std::time::Instant::now();
                    let r = match run {
                        Run::Anchor(a) => run_anchor(args, w.name, a, log2, trials, &results),
                        Run::Bench(m) => {
                            run_bench(args, &bin, w.name, m.name(), log2, trials, &results)
                        }
                    };
                    let label =
                        format!("[{k}/{total}] {} {} 2^{log2} x{trials}", w.name, run.name());
                    let line = match r {
                        Ok(t) => format!(
                            "{label}: median total {} ({:.1} s wall)",
                            report::fmt_time(t),
                            started.elapsed().as_secs_f64()
                        ),
                        Err(e) => {
                            failures += 1;
                            format!("{label}: FAILED: {e}")
                        }
                    };
                    term::suspend(|| println!("{line}"));
                    bar.bar().inc(1);
                }
            }
        }
    }
    let records = record::read_jsonl(&results)
        .map_err(|e| format!("cannot read {}: {e}", results.display()))?;
    let table = report::table_markdown(&records);
    let table_path = args.out.join("table.md");
    std::fs::write(&table_path, &table)
        .map_err(|e| format!("cannot write {}: {e}", table_path.display()))?;
    let charts =
        report::draw_charts(&records, &args.out).map_err(|e| format!("cannot draw charts: {e}"))?;
    println!("\n{table}");
    println!("wrote {} and {}", results.display(), table_path.display());
    for c in charts {
        println!("wrote {}", c.display());
    }
    if failures > 0 {
        return Err(format!("{failures} configuration(s) failed (see above)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_output_parsing() {
        let line = "blackscholes n=2^10 median_s=0.0001 ns_per_elem=97.66 checksum=1.0e+05\n";
        let t = parse_anchor_median(line, 1024).unwrap();
        assert!((t - 97.66e-9 * 1024.0).abs() < 1e-12, "{t}");
        assert_eq!(parse_anchor_median("x median_s=0.5000", 4), Some(0.5));
        assert_eq!(parse_anchor_median("garbage", 4), None);
    }

    #[test]
    fn sweep_defaults() {
        let a = SweepArgs::try_parse_from(["bach-sweep"]).unwrap();
        assert!(a.benchmarks.is_empty());
        assert_eq!(
            a.modes,
            vec![
                SweepMode::Cpu,
                SweepMode::Bach,
                SweepMode::Fused,
                SweepMode::Anchors
            ]
        );
        assert_eq!(a.sizes, vec![10, 16, 20, 24]);
        assert_eq!((a.trials, a.trials_large, a.large_from), (5, None, 24));
        assert!(a.anchors_dir.ends_with("benchmarks/anchors"));
        let a = SweepArgs::try_parse_from(["bach-sweep", "--modes", "cpu,numpy"]).unwrap();
        assert_eq!(a.modes, vec![SweepMode::Cpu, SweepMode::Anchors]);
        let a = SweepArgs::try_parse_from([
            "bach-sweep",
            "--benchmarks",
            "haversine,blackscholes",
            "--sizes",
            "10,12",
        ])
        .unwrap();
        assert_eq!(
            a.benchmarks.iter().map(|w| w.name).collect::<Vec<_>>(),
            ["haversine", "blackscholes"]
        );
        assert!(SweepArgs::try_parse_from(["bach-sweep", "--benchmarks", "nope"]).is_err());
    }
}
