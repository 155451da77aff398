//! The cost model: predicted seconds for running a stage on the CPU or on a
//! device, from per-call CPU costs (measured by short micro-benchmarks the
//! first time a function is planned, then cached) and the device's
//! [`DeviceCosts`] (link bandwidth and latency, launch overhead, kernel
//! throughput).
//!
//! Placement compares the two predictions. A device stage pays for uploading
//! its split inputs and downloading its escaping outputs, except for outputs
//! that later device stages read: those stay on the device (see
//! `exec::place`), so neither their download nor their upload is counted.
//! A device stage runs its batches as a pipeline (upload, compute and download
//! of neighbouring batches overlap), so its time is that of the slowest of the
//! three per batch, times the batches, plus filling and draining the pipeline.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::device::codec::{codec, Codec, DType};
use crate::op::Args;
use crate::plan::{Plan, PlanNode, Stage};
use crate::split::SplitKind;
use crate::value::Piece;

/// What moving data to a device and computing there costs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceCosts {
    /// Host-device bandwidth, bytes per second (each direction).
    pub link_bytes_per_s: f64,
    /// Fixed cost of one transfer, seconds.
    pub link_latency_s: f64,
    /// Fixed cost of one kernel launch, seconds.
    pub launch_s: f64,
    /// Elements per second of one elementwise kernel.
    pub elements_per_s: f64,
}

impl Default for DeviceCosts {
    /// Typical figures of a PCIe 4/5 data-center GPU, used until calibrated.
    fn default() -> Self {
        DeviceCosts {
            link_bytes_per_s: 20e9,
            link_latency_s: 10e-6,
            launch_s: 5e-6,
            elements_per_s: 50e9,
        }
    }
}

/// The prediction for one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageCost {
    /// Seconds on the CPU (all workers).
    pub cpu_s: f64,
    /// Seconds of kernels on the device (`None`: no device, or not eligible).
    pub device_compute_s: Option<f64>,
    /// Seconds of transfers for the device placement (uploads plus downloads).
    pub transfer_s: Option<f64>,
    /// Seconds of uploads for the device placement.
    pub upload_s: Option<f64>,
    /// Seconds of downloads for the device placement.
    pub download_s: Option<f64>,
    /// Batches the device placement pages the data in.
    pub batches: u64,
    /// Seconds the bytes to move, up and down together, take at the link's
    /// bandwidth: the transfer floor of a device stage on host-resident data.
    /// (Uploads and downloads run on separate queues, so on a full-duplex link
    /// a pipelined stage can beat it by overlapping the two directions.)
    pub link_floor_s: Option<f64>,
    /// Bytes uploaded for the device placement.
    pub bytes_up: u64,
    /// Bytes downloaded for the device placement.
    pub bytes_down: u64,
}

impl StageCost {
    /// Seconds on the device: the batches go through a three-step pipeline
    /// (upload, compute, download on separate queues), so with per-batch times
    /// `u`, `c` and `d` over `b` batches it takes `u + c + d + (b - 1) * max(u, c, d)`.
    pub fn device_s(&self) -> Option<f64> {
        let b = self.batches.max(1) as f64;
        let (u, c, d) = (
            self.upload_s? / b,
            self.device_compute_s? / b,
            self.download_s? / b,
        );
        Some(u + c + d + (b - 1.0) * u.max(c).max(d))
    }

    /// Seconds on the device if nothing overlapped: compute plus transfers.
    pub fn device_serial_s(&self) -> Option<f64> {
        Some(self.device_compute_s? + self.transfer_s?)
    }
}

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

/// A synthetic argument for calibration: arrays of ordinary values.
fn synthetic(node: &PlanNode, i: usize, n: usize) -> Option<Piece> {
    let a = &node.args[i];
    match (a.split.kind, codec(a.split.value_id)) {
        (
            SplitKind::Partition,
            Some(Codec::Array {
                dtype, from_bytes, ..
            }),
        ) => {
            let bytes: Vec<u8> = match dtype {
                DType::F64 => (0..n)
                    .flat_map(|k| (0.5 + (k % 97) as f64 / 97.0).to_ne_bytes())
                    .collect(),
                DType::F32 => (0..n)
                    .flat_map(|k| (0.5 + (k % 97) as f32 / 97.0).to_ne_bytes())
                    .collect(),
                DType::Bool => (0..n).map(|k| (k % 3 == 0) as u8).collect(),
            };
            Some(from_bytes(&bytes))
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
    }
    (node.cpu as usize, h.finish())
}

/// Seconds per element of all of `stage`'s calls on one core.
fn stage_cpu_seconds_per_element(plan: &Plan, stage: &Stage) -> f64 {
    let mut total = 0.0;
    let mut missing = Vec::new();
    {
        let memo = cost_memo().lock().unwrap_or_else(|e| e.into_inner());
        for &i in &stage.nodes {
            let node = &plan.nodes[i];
            match node.info.cpu_ns_per_element {
                Some(ns) => total += ns * 1e-9,
                None => match memo.get(&memo_key(node)) {
                    Some(s) => total += s,
                    None => missing.push(i),
                },
            }
        }
    }
    for i in missing {
        let node = &plan.nodes[i];
        let s = cpu_seconds_per_element(node);
        cost_memo()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(memo_key(node), s);
        total += s;
    }
    total
}

/// Seconds per element of `node`'s CPU function on one core, measured once.
pub(crate) fn cpu_seconds_per_element(node: &PlanNode) -> f64 {
    if let Some(ns) = node.info.cpu_ns_per_element {
        return ns * 1e-9;
    }
    let types: Vec<&str> = node.args.iter().map(|a| a.split.value_type()).collect();
    let key = format!("{}({})", node.info.name, types.join(", "));
    if let Some(&s) = cpu_table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return s;
    }
    let n = CALIBRATION_ELEMENTS;
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

/// Bytes per element of values of type `id` on a device (0: not an array).
fn array_bytes(id: std::any::TypeId) -> u64 {
    crate::device::codec::array_dtype(id).map_or(0, |d| d.size() as u64)
}

/// Smallest batch (elements) a device stage is cut into so that its batches
/// pipeline: below it, per-batch overheads (transfer latency, launches) win.
const MIN_PIPELINE_BATCH: usize = 1 << 16;

/// What a device stage moves and launches, whatever its batching.
struct DeviceWork {
    n: usize,
    /// Bytes up and down in all.
    up: u64,
    down: u64,
    /// Transfers and kernels per batch.
    uploads: u64,
    downloads: u64,
    kernels: u64,
    /// Device-to-device copies per batch (pieces of values kept on the
    /// device, in and out) and their bytes in all.
    copies: u64,
    copy_bytes: u64,
}

impl DeviceWork {
    /// The stage's device figures over `batches` batches.
    fn cost(&self, d: &DeviceCosts, batches: usize, cost: &mut StageCost) {
        let b = batches.max(1) as f64;
        // A device copy runs like a kernel moving 8 bytes per element.
        cost.device_compute_s = Some(
            self.kernels as f64 * self.n as f64 / d.elements_per_s
                + self.kernels as f64 * b * d.launch_s
                + self.copy_bytes as f64 / 8.0 / d.elements_per_s
                + self.copies as f64 * b * d.launch_s,
        );
        let link = |bytes: u64, transfers: u64| {
            bytes as f64 / d.link_bytes_per_s + transfers as f64 * b * d.link_latency_s
        };
        cost.upload_s = Some(link(self.up, self.uploads));
        cost.download_s = Some(link(self.down, self.downloads));
        cost.transfer_s = Some(link(self.up, self.uploads) + link(self.down, self.downloads));
        cost.batches = batches.max(1) as u64;
        cost.link_floor_s = Some((self.up + self.down) as f64 / d.link_bytes_per_s);
        cost.bytes_up = self.up;
        cost.bytes_down = self.down;
    }
}

/// The batches `n` elements are actually cut into when asked for `b`: batches
/// of `ceil(n / b)` elements.
fn real_batches(n: usize, b: usize) -> usize {
    n.div_ceil(n.div_ceil(b.max(1)).max(1)).max(1)
}

/// Predicts `stage`: `n` elements, `threads` CPU workers, and the device's
/// costs when it may run there (`min_batches`: the fewest device batches its
/// memory allows). The device batch count is chosen to minimise the pipelined
/// time: more batches overlap more, but each pays transfer latencies and
/// launches. `on_device` tells which stage inputs already live on the device
/// and which outputs stay there.
pub(crate) fn predict(
    plan: &Plan,
    stage: &Stage,
    n: usize,
    threads: usize,
    device: Option<(&DeviceCosts, usize)>,
    on_device: &dyn Fn((usize, u32)) -> bool,
) -> StageCost {
    let per_element = stage_cpu_seconds_per_element(plan, stage);
    let cpu_batches = n.div_ceil(4096).max(1);
    let cpu_s = n as f64 * per_element / threads.min(cpu_batches).max(1) as f64;
    let mut cost = StageCost {
        cpu_s,
        ..StageCost::default()
    };
    let Some((d, min_batches)) = device else {
        return cost;
    };
    let mut work = DeviceWork {
        n,
        up: 0,
        down: 0,
        uploads: 0,
        downloads: 0,
        kernels: stage.nodes.len() as u64,
        copies: 0,
        copy_bytes: 0,
    };
    // Each split array input goes up once (sizes of allocations are no
    // transfer); each escaping output comes down once. Values kept on the
    // device are copied piece by piece on the device instead, in and out.
    let mut ups = std::collections::HashSet::new();
    for &i in &stage.nodes {
        let node = &plan.nodes[i];
        for a in &node.args {
            let local =
                matches!(a.input, crate::plan::Input::Local(p, _) if stage.nodes.contains(&p));
            let bytes = array_bytes(a.split.value_id) * n as u64;
            if local || a.split.kind != SplitKind::Partition || bytes == 0 {
                continue;
            }
            let key = match &a.input {
                crate::plan::Input::External(h) => h.get() as *const dyn Any as *const () as usize,
                crate::plan::Input::Local(p, o) => (p << 8) | *o as usize,
            };
            // Once per (value, split type), as the executor splits them.
            if !ups.insert((key, a.split.split_id, a.split.value_id)) {
                continue;
            }
            match a.input {
                crate::plan::Input::Local(p, o) if on_device((p, o)) => {
                    work.copy_bytes += bytes;
                    work.copies += 1;
                }
                _ => {
                    work.up += bytes;
                    work.uploads += 1;
                }
            }
        }
        for (o, vt) in node.outputs.iter().enumerate() {
            if !plan.escaping.contains(&(i, o as u32)) {
                continue;
            }
            let bytes = array_bytes(vt.value_id) * n as u64;
            if on_device((i, o as u32)) {
                work.copy_bytes += bytes;
                work.copies += 1;
            } else {
                work.down += bytes;
                work.downloads += 1;
            }
        }
    }
    // Try the memory's batch count, then twice as many, ... while batches keep
    // at least MIN_PIPELINE_BATCH elements.
    let min_batches = real_batches(n, min_batches);
    let most = real_batches(n, n.div_ceil(MIN_PIPELINE_BATCH).max(min_batches));
    let time = |b: usize| {
        let mut c = StageCost::default();
        work.cost(d, b, &mut c);
        c.device_s().unwrap_or(f64::INFINITY)
    };
    let (mut best, mut best_s) = (min_batches, time(min_batches));
    let mut b = min_batches;
    while b < most {
        b = real_batches(n, (b * 2).min(most));
        let t = time(b);
        if t < best_s {
            (best, best_s) = (b, t);
        }
    }
    work.cost(d, best, &mut cost);
    cost
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

    #[test]
    fn device_time_is_a_three_step_pipeline_over_the_batches() {
        let cost = StageCost {
            device_compute_s: Some(4.0),
            upload_s: Some(8.0),
            download_s: Some(2.0),
            transfer_s: Some(10.0),
            batches: 4,
            ..StageCost::default()
        };
        // Per batch: 2 s up, 1 s compute, 0.5 s down; uploads bound the pipeline.
        assert_eq!(cost.device_s(), Some(2.0 + 1.0 + 0.5 + 3.0 * 2.0));
        assert_eq!(cost.device_serial_s(), Some(14.0));
        // One batch: nothing overlaps.
        let one = StageCost { batches: 1, ..cost };
        assert_eq!(one.device_s(), Some(14.0));
        // No device prediction: none.
        assert_eq!(StageCost::default().device_s(), None);
    }
}
