//! The JSON line written per run (`--json PATH`), and what it says about the
//! machine and the source it ran on.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One benchmark run: a configuration, its trials and where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Workload name (`blackscholes`, ...).
    pub workload: String,
    /// `cpu`, `bach`, `fused` (bach-bench) or `numpy` (the NumPy anchor script).
    pub mode: String,
    /// The problem has `2^log2_size` elements.
    pub log2_size: u32,
    /// `2^log2_size`.
    pub elements: u64,
    /// Number of timed trials.
    pub trials: usize,
    /// Per-trial Init seconds (empty for numpy, whose script reports only a median).
    pub init_s: Vec<f64>,
    /// Per-trial Runtime seconds (empty for numpy).
    pub runtime_s: Vec<f64>,
    /// Per-trial Total seconds (empty for numpy).
    pub total_s: Vec<f64>,
    /// Median of `init_s`.
    pub median_init_s: f64,
    /// Median of `runtime_s`.
    pub median_runtime_s: f64,
    /// Median of `total_s`.
    pub median_total_s: f64,
    /// Worker threads the mode could use (cpu and numpy modes use one).
    pub threads: usize,
    /// Bach's batch size; `null`: the runtime's default (derived per stage).
    pub batch_size: Option<usize>,
    /// Seed of the input data.
    pub seed: u64,
    /// Whether the result was checked against cpu mode (and passed: a failed
    /// check writes no record).
    pub checked: bool,
    /// The machine.
    pub machine: Machine,
    /// `git rev-parse HEAD` where the run started, or `"unknown"`.
    pub git_commit: String,
    /// Whether tracked files differed from that commit (`null`: unknown).
    pub git_dirty: Option<bool>,
    /// UTC time the record was written, RFC 3339.
    pub timestamp: String,
    /// What produced the record: `bach-bench VERSION` or `numpy_workloads.py`.
    pub source: String,
}

/// The machine a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo, or `"unknown"`.
    pub cpu_model: String,
    /// Hardware threads available to the process.
    pub cores: usize,
    /// Operating system and kernel, e.g. `Debian GNU/Linux 12 (bookworm), Linux 6.1.0`.
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
}

impl Machine {
    /// Reads the current machine's description.
    pub fn current() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pretty = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| format!("Linux {}", k.trim()));
        let os = match (pretty, kernel) {
            (Some(p), Some(k)) => format!("{p}, {k}"),
            (Some(p), None) => p,
            (None, Some(k)) => k,
            (None, None) => std::env::consts::OS.to_string(),
        };
        Machine {
            cpu_model,
            cores,
            os,
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

fn git(args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new("git");
    cmd.args(args).stderr(std::process::Stdio::null());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit checked out where the command runs (or, failing that, where
/// this crate was built), and whether tracked files were modified.
/// `BACH_GIT_COMMIT`, when set, names the commit instead (for builds from a
/// source archive, which have no repository).
pub fn git_state() -> (String, Option<bool>) {
    if let Some(c) = std::env::var("BACH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return (c.trim().to_string(), None);
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [None, Some(built_in)] {
        if let Some(commit) = git(&["rev-parse", "HEAD"], dir).filter(|c| !c.is_empty()) {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"], dir).map(|s| !s.is_empty());
            return (commit, dirty);
        }
    }
    ("unknown".into(), None)
}

/// `t` as an RFC 3339 UTC timestamp with seconds (`2026-05-01T12:34:56Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Appends `record` as one JSON line to `path` (created if missing).
pub fn append_jsonl(path: &Path, record: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write per line, so concurrent appenders do not interleave lines.
    f.write_all(line.as_bytes())
}

/// Reads every record of a JSON-lines file (blank lines are skipped).
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_767_225_599)),
            "2025-12-31T23:59:59Z"
        );
    }

    #[test]
    fn machine_is_described() {
        let m = Machine::current();
        assert!(m.cores >= 1);
        assert!(!m.os.is_empty() && !m.arch.is_empty() && !m.cpu_model.is_empty());
    }
}
