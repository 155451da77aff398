//! The `bach-bench` and `bach-sweep` binaries, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use benchmarks::record::Record;

const BENCH: &str = env!("CARGO_BIN_EXE_bach-bench");
const SWEEP: &str = env!("CARGO_BIN_EXE_bach-sweep");

/// Runs `bin` with the log filter from its flags (a RUST_LOG of the caller's
/// would add log lines to stderr).
fn run(bin: &str, args: &[&str]) -> Output {
    run_env(bin, args, &[])
}

/// [`run`] with `env` set (after RUST_LOG is removed).
fn run_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bach-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn help_explains_every_flag() {
    let o = run(BENCH, &["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for flag in [
        "--benchmark",
        "--mode",
        "--size",
        "--trials",
        "--threads",
        "--batch-size",
        "--seed",
        "--json",
        "--check",
        "--verbose",
        "RUST_LOG",
        "blackscholes",
        "haversine",
        "cpu",
        "bach",
        "fused",
        "gpu",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(!help.contains("corrupt"), "the testing flag is hidden");
    let o = run(SWEEP, &["--help"]);
    assert!(o.status.success());
    for flag in [
        "--benchmarks",
        "--modes",
        "--sizes",
        "--trials",
        "--out",
        "--anchors-dir",
        "--verbose",
    ] {
        assert!(stdout(&o).contains(flag), "bach-sweep --help lacks {flag}");
    }
}

#[test]
fn usage_errors_are_one_line_with_status_2() {
    for args in [
        &["-b", "nope", "-m", "cpu", "-s", "10"][..],
        &["-b", "haversine", "-m", "cpu", "--bogus"],
        &["-b", "haversine", "-m", "quantum"],
        &["-b", "haversine", "-m", "cpu", "--trials", "zero"],
        &["-m", "cpu"],
    ] {
        let o = run(BENCH, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(stdout(&o).is_empty());
    }
    let err = stderr(&run(BENCH, &["-b", "nope", "-m", "cpu"]));
    assert!(
        err.contains("nope") && err.contains("blackscholes") && err.contains("haversine"),
        "{err}"
    );
}

#[test]
fn gpu_mode_without_a_gpu_is_a_clear_one_line_error() {
    if !bach_runtime::gpu_status().devices.is_empty() {
        eprintln!("skipped: this machine has a GPU");
        return;
    }
    let o = run(BENCH, &["-b", "haversine", "-m", "gpu", "-s", "10"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: gpu mode: ") && err.contains("CUDA"),
        "{err}"
    );
}

#[test]
fn gpu_mode_code_is_right_on_a_simulated_device() {
    for w in ["blackscholes", "haversine"] {
        let o = run(
            BENCH,
            &[
                "-b",
                w,
                "-m",
                "gpu",
                "-s",
                "11",
                "--check",
                "--simulated-device",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("Check: passed"), "{}", stdout(&o));
    }
}

#[test]
fn explain_prints_the_plan_and_the_measured_run() {
    // Placement forced onto the simulated device: left to the cost model, a
    // fast CPU (or CPU costs calibrated earlier and cached in the user's
    // cache directory) keeps this small stage on the CPU.
    let cache = scratch("explain-cache");
    let o = run_env(
        BENCH,
        &[
            "-b",
            "haversine",
            "-m",
            "bach",
            "-s",
            "12",
            "--explain",
            "--simulated-device",
        ],
        &[
            ("BACH_DEVICE", "gpu"),
            ("BACH_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    std::fs::remove_dir_all(&cache).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("Plan:") && out.contains("Last run:") && out.contains("measured"),
        "{out}"
    );
    assert!(out.contains("sin -> pow2"), "{out}");
    // The simulated device's model of the trials: overlapped time no longer
    // than the same work one after another.
    let model = out
        .lines()
        .find(|l| l.starts_with("Device model per trial:"))
        .unwrap_or_else(|| panic!("no device model line\n{out}"));
    let ms: Vec<f64> = model
        .split_whitespace()
        .zip(model.split_whitespace().skip(1))
        .filter(|(_, unit)| unit.starts_with("ms"))
        .map(|(v, _)| v.parse().unwrap())
        .collect();
    assert_eq!(ms.len(), 2, "{model}");
    assert!(ms[0] > 0.0 && ms[0] <= ms[1], "{model}");
}

fn median_lines(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("bad number in {l:?}")),
            )
        })
        .collect()
}

#[test]
fn every_mode_ends_with_the_three_median_lines_and_passes_check() {
    for w in ["blackscholes", "haversine"] {
        for mode in ["cpu", "bach", "fused"] {
            let o = run(
                BENCH,
                &["-b", w, "-m", mode, "-s", "12", "--trials", "3", "--check"],
            );
            assert!(o.status.success(), "{w} {mode}: {}", stderr(&o));
            let out = stdout(&o);
            assert!(out.contains("Check: passed"), "{out}");
            assert_eq!(out.matches("Trial ").count(), 3, "{out}");
            let m = median_lines(&out);
            let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                ["Median Init", "Median Runtime", "Median Total"],
                "{out}"
            );
            if mode != "bach" {
                assert_eq!(m[0].1, 0.0, "{mode} has no Init");
            }
            assert!(m[1].1 > 0.0 && m[2].1 >= m[1].1, "{out}");
            // stderr is not a terminal here: no progress bar.
            assert!(stderr(&o).is_empty(), "{}", stderr(&o));
        }
    }
}

#[test]
fn check_catches_a_corrupted_element() {
    for mode in ["bach", "fused", "cpu"] {
        let o = run(
            BENCH,
            &[
                "-b",
                "blackscholes",
                "-m",
                mode,
                "-s",
                "11",
                "--check",
                "--corrupt-index",
                "1234",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{mode}: {}", stdout(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("check failed") && err.contains("index 1234") && err.contains("`call`"),
            "{err}"
        );
        assert!(
            !stdout(&o).contains("Median"),
            "no medians after a failed check"
        );
    }
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn json_record_shape() {
    let dir = scratch("json");
    let path = dir.join("runs.jsonl");
    let p = path.to_str().unwrap();
    let o = run(
        BENCH,
        &[
            "-b",
            "haversine",
            "-m",
            "bach",
            "-s",
            "10",
            "--trials",
            "3",
            "--batch-size",
            "256",
            "--threads",
            "2",
            "--json",
            p,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        BENCH,
        &[
            "-b",
            "blackscholes",
            "-m",
            "fused",
            "-s",
            "10",
            "--seed",
            "7",
            "--json",
            p,
            "--check",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let lines = json_lines(&path);
    assert_eq!(lines.len(), 2, "one line per run, appended");
    let r = &lines[0];
    assert_eq!(r["workload"], "haversine");
    assert_eq!(r["mode"], "bach");
    assert_eq!(r["log2_size"], 10);
    assert_eq!(r["elements"], 1024);
    assert_eq!(r["trials"], 3);
    for key in ["init_s", "runtime_s", "total_s"] {
        let a = r[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is an array"));
        assert_eq!(a.len(), 3, "{key}");
        assert!(
            a.iter().all(|v| v.as_f64().is_some_and(|x| x >= 0.0)),
            "{key}"
        );
    }
    for key in ["median_init_s", "median_runtime_s", "median_total_s"] {
        assert!(r[key].as_f64().is_some_and(|x| x >= 0.0), "{key}");
    }
    assert_eq!(r["threads"], 2);
    assert_eq!(r["batch_size"], 256);
    assert_eq!(r["seed"], 42);
    assert_eq!(r["checked"], false);
    let m = &r["machine"];
    assert!(m["cpu_model"].is_string() && m["os"].is_string() && m["arch"].is_string());
    assert!(m["cores"].as_u64().is_some_and(|c| c >= 1));
    let commit = r["git_commit"].as_str().unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let ts = r["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert!(r["source"].as_str().unwrap().starts_with("bach-bench"));

    let r = &lines[1];
    assert_eq!(
        (
            r["mode"].as_str(),
            r["seed"].as_u64(),
            r["checked"].as_bool()
        ),
        (Some("fused"), Some(7), Some(true))
    );
    assert!(r["batch_size"].is_null(), "no batch size outside bach mode");
    assert_eq!(r["init_s"], serde_json::json!([0.0]));

    // The same lines load as typed records (what bach-sweep reads).
    let typed = benchmarks::record::read_jsonl(&path).unwrap();
    assert_eq!(typed.len(), 2);
    let rec: &Record = &typed[0];
    assert_eq!(rec.median_total_s, benchmarks::bench::median(&rec.total_s));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sweep_writes_results_table_and_charts() {
    let dir = scratch("sweep");
    let out = dir.join("out");
    let o = run(
        SWEEP,
        &[
            "--benchmarks",
            "haversine,blackscholes",
            "--modes",
            "cpu,bach,fused,gpu",
            "--sizes",
            "10,11",
            "--trials",
            "2",
            "--trials-large",
            "1",
            "--large-from",
            "11",
            "--out",
            out.to_str().unwrap(),
            "--bench-bin",
            BENCH,
        ],
    );
    // gpu fails (no GPU here): reported, skipped, and the sweep exits non-zero after its report.
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches("FAILED: gpu mode").count(), 4, "{text}");
    let records = benchmarks::record::read_jsonl(&out.join("results.jsonl")).unwrap();
    assert_eq!(records.len(), 2 * 2 * 3);
    assert!(records
        .iter()
        .all(|r| r.trials == if r.log2_size >= 11 { 1 } else { 2 }));
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("| haversine | 2^10 |") && table.contains("| blackscholes | 2^11 |"),
        "{table}"
    );
    for w in ["haversine", "blackscholes"] {
        for chart in ["runtime", "speedup"] {
            let svg = std::fs::read_to_string(out.join(format!("{chart}_{w}.svg"))).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("<text"),
                "{chart}_{w}.svg"
            );
        }
    }

    // --report-only redraws from the results without running anything.
    std::fs::remove_file(out.join("table.md")).unwrap();
    let o = run(SWEEP, &["--out", out.to_str().unwrap(), "--report-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("table.md").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sweep_numpy_mode_runs_or_is_skipped() {
    let dir = scratch("numpy");
    let out = dir.join("out");
    let o = run(
        SWEEP,
        &[
            "--benchmarks",
            "haversine",
            "--modes",
            "numpy",
            "--sizes",
            "10",
            "--trials",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--bench-bin",
            BENCH,
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let records = benchmarks::record::read_jsonl(&out.join("results.jsonl")).unwrap();
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    if benchmarks::sweep::numpy_available(Path::new("python3")) {
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].mode, "numpy");
        assert!(records[0].median_total_s > 0.0);
        assert!(table.contains("| haversine | 2^10 |"), "{table}");
    } else {
        eprintln!("numpy or scipy missing for python3: checking that the mode is skipped");
        // Every mode skipped: an empty results file and a report that says so.
        assert!(records.is_empty());
        assert_eq!(table, benchmarks::report::NOTHING_MEASURED);
        assert!(
            stderr(&o).contains("skipping anchor numpy of haversine"),
            "{}",
            stderr(&o)
        );
        assert!(
            stdout(&o).contains("Nothing was measured"),
            "{}",
            stdout(&o)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_catches_corruption_on_the_simulated_device_too() {
    for mode in ["gpu", "bach"] {
        let o = run(
            BENCH,
            &[
                "-b",
                "haversine",
                "-m",
                mode,
                "-s",
                "12",
                "--check",
                "--corrupt-index",
                "5",
                "--simulated-device",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{mode}: {}", stdout(&o));
        assert!(
            stderr(&o).contains("check failed"),
            "{mode}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn verbose_flag_and_rust_log() {
    let args = ["-b", "haversine", "-m", "cpu", "-s", "10"];
    let with = |extra: &[&str], env: &[(&str, &str)]| {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        let o = run_env(BENCH, &all, env);
        assert!(o.status.success(), "{extra:?} {env:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Median Total:"), "{}", stdout(&o));
        stderr(&o)
    };
    // Default: warnings only (none here).
    assert!(with(&[], &[]).is_empty());
    // -v: info of the benchmarks crate (the run's configuration).
    for v in [
        &["-v"][..],
        &["-vv"],
        &["-vvv"],
        &["--verbose", "--verbose"],
    ] {
        let err = with(v, &[]);
        assert!(
            err.contains("INFO") && err.contains("benchmarks"),
            "{v:?}: {err}"
        );
    }
    // RUST_LOG replaces -v.
    assert!(with(&["-vv"], &[("RUST_LOG", "off")]).is_empty());
    let err = with(&[], &[("RUST_LOG", "benchmarks=info")]);
    assert!(err.contains("INFO"), "{err}");
    // A RUST_LOG that does not parse: one warning, and the run goes on as with -v.
    for bad in ["benchmarks=loudest", "[{"] {
        let err = with(&["-v"], &[("RUST_LOG", bad)]);
        assert!(err.contains("ignoring RUST_LOG"), "{bad}: {err}");
        assert!(err.contains("INFO"), "{bad}: {err}");
    }
    let err = with(&[], &[("RUST_LOG", "")]);
    assert!(err.is_empty(), "an empty RUST_LOG is unset: {err}");
}

#[test]
fn sweep_passes_verbosity_to_bach_bench() {
    let dir = scratch("verbose");
    let out = dir.join("out");
    let sweep = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "--benchmarks",
            "haversine",
            "--modes",
            "cpu",
            "--sizes",
            "10",
            "--trials",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--bench-bin",
            BENCH,
        ];
        args.extend_from_slice(extra);
        let o = run_env(SWEEP, &args, env);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("| haversine | 2^10 |"),
            "{}",
            stdout(&o)
        );
        stderr(&o)
    };
    assert!(
        sweep(&[], &[]).is_empty(),
        "no logs, no progress bar off a terminal"
    );
    // bach-bench's own log line comes through the sweep's stderr.
    let err = sweep(&["-v"], &[]);
    assert!(
        err.contains("INFO") && err.contains("bach-bench: haversine"),
        "{err}"
    );
    let err = sweep(&["-vv"], &[]);
    assert!(err.contains("DEBUG") && err.contains("running"), "{err}");
    assert!(sweep(&["-vv"], &[("RUST_LOG", "off")]).is_empty());
    let err = sweep(&[], &[("RUST_LOG", "benchmarks=[")]);
    assert!(err.contains("ignoring RUST_LOG"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
