//! CPU costs of annotated functions: measured by short micro-benchmarks on
//! synthetic data the first time a function is planned with a device present,
//! then cached in memory and on disk per CPU model. A step of its own before
//! scheduling ([`calibrate`]); the cost model only reads the figures.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::device::codec::{codec, Codec, DType};
use crate::op::Args;
use crate::plan::{Plan, PlanNode, Stage};
use crate::split::SplitKind;
use crate::value::Piece;

/// Elements a calibration runs each function on.
const CALIBRATION_ELEMENTS: usize = 1 << 14;
/// Assumed CPU cost of a function that cannot be calibrated, seconds per element.
const UNKNOWN_CPU_S: f64 = 2e-9;

/// Measured CPU seconds per element, by `name(argument types)`.
type CpuCostTable = Mutex<HashMap<String, f64>>;

/// The table, loaded on first use from the on-disk cache of this machine's
/// measurements (unless `BACH_COST_CACHE=off`).
fn cpu_table() -> &'static CpuCostTable {
    static TABLE: OnceLock<CpuCostTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let readable = crate::disk_cache::cost_cache_readable(
            std::env::var(crate::disk_cache::COST_CACHE_ENV)
                .ok()
                .as_deref(),
        );
        let loaded = match (readable, cpu_cache_path()) {
            (true, Some(path)) => std::fs::read_to_string(path)
                .map(|t| parse_cpu_costs(&t))
                .unwrap_or_default(),
            _ => HashMap::new(),
        };
        Mutex::new(loaded)
    })
}

/// Where this machine's CPU costs are cached: per CPU model and core count,
/// beside the compiled kernels (`BACH_CACHE_DIR`, else `$XDG_CACHE_HOME/bach`,
/// else `~/.cache/bach`).
fn cpu_cache_path() -> Option<std::path::PathBuf> {
    let costs = crate::disk_cache::costs_dir()?;
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let name = crate::disk_cache::sanitize_file_name(&format!("cpu-{model}-{cores}"));
    Some(costs.join(format!("{name}.txt")))
}

/// `key<TAB>seconds` lines; malformed lines are skipped.
fn parse_cpu_costs(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once('\t')?;
            let v: f64 = v.trim().parse().ok()?;
            (v.is_finite() && v > 0.0).then(|| (k.to_string(), v))
        })
        .collect()
}

fn format_cpu_costs(table: &HashMap<String, f64>) -> String {
    let mut lines: Vec<String> = table.iter().map(|(k, v)| format!("{k}\t{v:e}")).collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// Forgets every measured CPU cost (in memory and on disk); the next plans
/// measure again.
pub fn recalibrate() {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cost_memo()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    cpu_table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    if let Some(path) = cpu_cache_path() {
        let _ = std::fs::remove_file(path);
    }
}

/// A synthetic argument for calibration: arrays of ordinary values, `n`
/// elements long (a matrix: `n` rows as wide as the plan says).
fn synthetic(node: &PlanNode, i: usize, n: usize) -> Option<Piece> {
    let a = &node.args[i];
    match (a.split.kind, codec(a.split.value_id)) {
        (
            SplitKind::Partition,
            Some(Codec::Array {
                dtype,
                from_bytes: Some(from_bytes),
                ..
            }),
        ) => {
            let numbers = n * a.width;
            let bytes: Vec<u8> = match dtype {
                DType::F64 => (0..numbers)
                    .flat_map(|k| (0.5 + (k % 97) as f64 / 97.0).to_ne_bytes())
                    .collect(),
                DType::F32 => (0..numbers)
                    .flat_map(|k| (0.5 + (k % 97) as f32 / 97.0).to_ne_bytes())
                    .collect(),
                DType::Bool => (0..numbers).map(|k| (k % 3 == 0) as u8).collect(),
                // Never an array's element type (scalar parameters only).
                DType::I32 | DType::U64 => return None,
            };
            Some(from_bytes(&bytes, a.width))
        }
        (
            _,
            Some(Codec::Scalar {
                dtype: DType::F64, ..
            }),
        ) => Some(Box::new(1.25f64)),
        (
            _,
            Some(Codec::Scalar {
                dtype: DType::F32, ..
            }),
        ) => Some(Box::new(1.25f32)),
        (
            _,
            Some(Codec::Scalar {
                dtype: DType::I32, ..
            }),
        ) => Some(Box::new(3i32)),
        _ if a.split.value_id == std::any::TypeId::of::<usize>() && node.info.alloc => {
            Some(Box::new(n))
        }
        _ => None,
    }
}

/// The in-process memo of [`cpu_seconds_per_element`], keyed by the CPU
/// function and a hash of the argument types: planning looks up every call of
/// every stage, and formatting the table's string keys showed in profiles of
/// small evaluations.
type CostMemo = Mutex<crate::fasthash::FastMap<(usize, u64), f64>>;

fn cost_memo() -> &'static CostMemo {
    static MEMO: OnceLock<CostMemo> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

fn memo_key(node: &PlanNode) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = crate::fasthash::FxHasher::default();
    for a in &node.args {
        a.split.value_id.hash(&mut h);
        a.width.hash(&mut h);
    }
    (node.cpu as usize, h.finish())
}

/// Measures the CPU cost of every call of `plan` not known yet (running each
/// CPU function on synthetic data): a step of its own before scheduling, so
/// that the cost model only looks figures up.
pub(crate) fn calibrate(plan: &Plan) {
    let missing: Vec<usize> = {
        let memo = cost_memo().lock().unwrap_or_else(|e| e.into_inner());
        (0..plan.nodes.len())
            .filter(|&i| {
                let node = &plan.nodes[i];
                node.info.cpu_ns_per_element.is_none() && !memo.contains_key(&memo_key(node))
            })
            .collect()
    };
    for i in missing {
        let node = &plan.nodes[i];
        let s = cpu_seconds_per_element(node);
        cost_memo()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(memo_key(node), s);
    }
}

/// Seconds per element of all of `stage`'s calls on one core, as annotated
/// or calibrated ([`calibrate`]); a call measured by neither counts as
/// `UNKNOWN_CPU_S`.
pub(crate) fn stage_seconds_per_element(plan: &Plan, stage: &Stage) -> f64 {
    let memo = cost_memo().lock().unwrap_or_else(|e| e.into_inner());
    stage
        .nodes
        .iter()
        .map(|&i| {
            let node = &plan.nodes[i];
            match node.info.cpu_ns_per_element {
                // Annotated per number: a row of a matrix costs its width.
                Some(ns) => ns * 1e-9 * node.width as f64,
                None => memo.get(&memo_key(node)).copied().unwrap_or(UNKNOWN_CPU_S),
            }
        })
        .sum()
}

/// Changes whenever measured costs are forgotten ([`recalibrate`]): cached
/// schedules made with the old figures are then stale.
pub(crate) fn generation() -> u64 {
    GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seconds per element of `node`'s CPU function on one core, measured once.
fn cpu_seconds_per_element(node: &PlanNode) -> f64 {
    // A matrix argument's cost depends on its width: part of the key.
    let types: Vec<String> = (node.args.iter())
        .map(|a| match a.width {
            1 => a.split.value_type().to_string(),
            w => format!("{}[{w}]", a.split.value_type()),
        })
        .collect();
    let key = format!("{}({})", node.info.name, types.join(", "));
    if let Some(&s) = cpu_table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return s;
    }
    // As many numbers as a calibration of 1-D arrays reads, in at least 16 rows.
    let n = (CALIBRATION_ELEMENTS / node.width.max(1)).max(16);
    let measured = (|| {
        let pieces: Vec<Piece> = (0..node.args.len())
            .map(|i| synthetic(node, i, n))
            .collect::<Option<_>>()?;
        if node.args.iter().any(|a| a.mutated) {
            return None;
        }
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let mut args = Args::reading(&pieces);
            let t = Instant::now();
            let out =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (node.cpu)(&mut args)))
                    .ok()?
                    .ok()?;
            best = best.min(t.elapsed().as_secs_f64());
            drop(out);
        }
        Some(best / n as f64)
    })()
    .unwrap_or(UNKNOWN_CPU_S);
    let mut table = cpu_table().lock().unwrap_or_else(|e| e.into_inner());
    table.insert(key, measured);
    if let Some(path) = cpu_cache_path() {
        if let Err(e) = crate::disk_cache::write_atomically(&path, &format_cpu_costs(&table)) {
            tracing::debug!("cannot cache CPU costs in {}: {e}", path.display());
        }
    }
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_cost_files_roundtrip_and_skip_garbage() {
        let mut t = HashMap::new();
        t.insert(
            "add(ndarray::Array1<f64>, ndarray::Array1<f64>)".to_string(),
            1.25e-9,
        );
        t.insert("sqrt(x)".to_string(), 3e-10);
        let text = format_cpu_costs(&t);
        assert_eq!(parse_cpu_costs(&text), t);
        let parsed = parse_cpu_costs("no tab here\nneg\t-1\nnan\tNaN\nok\t2e-9\n");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed["ok"], 2e-9);
    }
}
