//! The cost model: predicted seconds for running a stage on the CPU or on a
//! device, from per-call CPU costs (annotated, or measured by `calibrate.rs`
//! before scheduling) and the device's [`DeviceCosts`] (link bandwidth and
//! latency, launch overhead, kernel throughput). It runs nothing.
//!
//! Placement compares the two predictions. A device stage pays for uploading
//! its split inputs and downloading its escaping outputs, except for outputs
//! that later device stages read: those stay on the device (see
//! `schedule.rs`), so neither their download nor their upload is counted.
//! A device stage runs its batches as a pipeline (upload, compute and download
//! of neighbouring batches overlap), so its time is that of the slowest of the
//! three per batch, times the batches, plus filling and draining the pipeline.

use crate::analysis::StageAnalysis;
use crate::device::DeviceCosts;
use crate::plan::{Input, Plan, Stage, ValueId};

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

/// Smallest batch (elements) a device stage is cut into so that its batches
/// pipeline: below it, per-batch overheads (transfer latency, launches) win.
const MIN_PIPELINE_BATCH: usize = 1 << 16;

/// Launches a device function makes beyond the one counted for every call:
/// the linfa ones check their input, copy the model's parts and multiply
/// (4 to 7 launches in all). Each also makes one host round trip per batch
/// (the input check's flag comes back), counted as twice the link latency.
const DEVICE_FN_OVERHEAD_LAUNCHES: f64 = 4.0;

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
    /// Numbers each element of the stage's calls covers, summed over the
    /// calls (1 per call over 1-D arrays; a matrix's width over its rows).
    numbers: u64,
    /// Calls made by device functions (`gpu_fn`), per batch.
    device_fns: u64,
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
            self.numbers as f64 * self.n as f64 / d.elements_per_s
                + self.kernels as f64 * b * d.launch_s
                + self.copy_bytes as f64 / 8.0 / d.elements_per_s
                + self.copies as f64 * b * d.launch_s
                + self.device_fns as f64 * b * DEVICE_FN_OVERHEAD_LAUNCHES * d.launch_s
                + self.device_fns as f64 * b * 2.0 * d.link_latency_s,
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

/// Predicts the analysed `stage`: `n` elements, `threads` CPU workers in
/// batches of `cpu_batch` elements, and the device's costs when it may run
/// there (`min_batches`: the fewest device batches its memory allows). The
/// device batch count is chosen to minimise the pipelined time: more batches
/// overlap more, but each pays transfer latencies and launches. `on_device`
/// tells which stage inputs already live on the device and which outputs stay
/// there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn predict(
    plan: &Plan,
    stage: &Stage,
    analysis: &StageAnalysis,
    n: usize,
    threads: usize,
    cpu_batch: usize,
    device: Option<(&DeviceCosts, usize)>,
    on_device: &dyn Fn(ValueId) -> bool,
) -> StageCost {
    let per_element = crate::calibrate::stage_seconds_per_element(plan, stage);
    let cpu_batches = n.div_ceil(cpu_batch.max(1)).max(1);
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
        device_fns: (stage.nodes.iter())
            .filter(|&&i| plan.nodes[i].info.gpu_fn.is_some())
            .count() as u64,
        numbers: (stage.nodes.iter())
            .map(|&i| plan.nodes[i].width as u64)
            .sum(),
        copies: 0,
        copy_bytes: 0,
    };
    // Each split array input goes up once (sizes of allocations are no
    // transfer); each escaping output comes down once. Values kept on the
    // device are copied piece by piece on the device instead, in and out.
    for input in &analysis.inputs {
        let bytes = input.device_bytes() as u64 * n as u64;
        if !input.partitioned() || bytes == 0 {
            continue;
        }
        match input.input {
            Input::Local(v) if on_device(v) => {
                work.copy_bytes += bytes;
                work.copies += 1;
            }
            _ => {
                work.up += bytes;
                work.uploads += 1;
            }
        }
    }
    for slot in analysis.slots.iter().filter(|s| s.escaping) {
        // A reduction comes down as partials, about a row's worth each: counted once.
        let rows = match slot.split.kind {
            crate::split::SplitKind::Reduce => 1,
            _ => n as u64,
        };
        let bytes = slot.device_bytes() as u64 * rows;
        if on_device(slot.value) {
            work.copy_bytes += bytes;
            work.copies += 1;
        } else {
            work.down += bytes;
            work.downloads += 1;
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
