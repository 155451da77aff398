//! Cost calibration ([`Device::costs`](crate::Device::costs), for placement): measured on first
//! need by short micro-benchmarks on the compute stream (link bandwidth and latency through the
//! staging path, launch overhead, elementwise throughput of a calibration kernel), at most once
//! per process and device, and cached on disk per device model and driver (`<cache>/costs/`,
//! see [`crate::disk_cache`]); see [`CudaDevice::recalibrate`]. `BACH_COST_CACHE=off` makes a
//! process measure instead of reading the cache.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use cudarc::driver::result as driver;
use cudarc::driver::sys as driver_sys;

use super::error::gpu_err;
use super::launch::Param;
use super::streams::Streams;
use super::{lock, CudaDevice};
use crate::device::DeviceCosts;
use crate::device::{KernelSource, LaunchShape, Queue};
use crate::disk_cache::{
    cost_cache_readable, sanitize_file_name, write_atomically, COST_CACHE_ENV,
};
use crate::error::{Error, Result};

/// The kernel the cost calibration launches: an elementwise `a + b` on `f64`, with the launch
/// convention of the shipped kernels (`n`, the inputs, the output; grid-stride loop).
pub const CALIBRATION_KERNELS: KernelSource = KernelSource {
    name: "bach_calibrate.cu",
    code: r#"extern "C" __global__ void bach_calibrate_add_f64(unsigned long long n, const double* a, const double* b, double* out) {
    unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = a[i] + b[i];
    }
}
"#,
};
/// The kernel of [`CALIBRATION_KERNELS`].
pub(super) const CALIBRATION_KERNEL: &str = "bach_calibrate_add_f64";
/// Bytes of one bandwidth measurement copy.
const BANDWIDTH_BYTES: usize = 64 << 20;
/// Copies each way for the bandwidth (the median counts).
const BANDWIDTH_REPEATS: usize = 3;
/// Bytes of one latency round trip.
const LATENCY_BYTES: usize = 1 << 10;
/// Round trips for the latency.
const LATENCY_REPEATS: usize = 20;
/// Back-to-back launches on one element in one launch overhead sample.
const LAUNCH_REPEATS: usize = 50;
/// Launch overhead samples (the median counts).
const LAUNCH_BATCHES: usize = 3;
/// Elements of one throughput launch.
const THROUGHPUT_ELEMENTS: usize = 1 << 24;
/// Back-to-back launches on [`THROUGHPUT_ELEMENTS`] in one throughput sample.
const THROUGHPUT_REPEATS: usize = 4;
/// Throughput samples (the median counts).
const THROUGHPUT_BATCHES: usize = 3;
/// The keys of a cost cache file, in the order they are written.
const COST_KEYS: [&str; 4] = [
    "link_bytes_per_s",
    "link_latency_s",
    "launch_s",
    "elements_per_s",
];

/// The median of the finite values in `values` (the mean of the two middle ones for an even
/// count); `None` when there is none.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let n = finite.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(finite[n / 2]),
        _ => Some(finite[n / 2 - 1] / 2.0 + finite[n / 2] / 2.0),
    }
}

/// The cost cache's file name for a device model, compute capability and driver (the CUDA
/// version it supports), e.g. `NVIDIA_H100_80GB_HBM3-cc90-driver13.0.txt`.
pub(crate) fn cost_cache_file_name(device: &str, cc: (u32, u32), driver: (u32, u32)) -> String {
    format!(
        "{}-cc{}{}-driver{}.{}.txt",
        sanitize_file_name(device),
        cc.0,
        cc.1,
        driver.0,
        driver.1
    )
}

/// The text of a cost cache file: one `key value` line per field (values round-trip exactly).
pub(crate) fn format_costs(costs: &DeviceCosts) -> String {
    let values = [
        costs.link_bytes_per_s,
        costs.link_latency_s,
        costs.launch_s,
        costs.elements_per_s,
    ];
    COST_KEYS
        .iter()
        .zip(values)
        .map(|(key, value)| format!("{key} {value:e}\n"))
        .collect()
}

/// Parses a cost cache file ([`format_costs`]): every key exactly once, each with one finite,
/// positive value; blank lines and `#` comments are allowed, anything else is an error.
pub(crate) fn parse_costs(text: &str) -> std::result::Result<DeviceCosts, String> {
    let mut values = [None::<f64>; 4];
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "line {}: expected `key value`, found `{line}`",
                number + 1
            ));
        };
        let Some(slot) = COST_KEYS.iter().position(|k| *k == key) else {
            return Err(format!("line {}: unknown key `{key}`", number + 1));
        };
        let value: f64 = value
            .parse()
            .map_err(|_| format!("line {}: `{value}` is not a number", number + 1))?;
        if !(value.is_finite() && value > 0.0) {
            return Err(format!(
                "line {}: `{key}` must be finite and positive",
                number + 1
            ));
        }
        if values[slot].replace(value).is_some() {
            return Err(format!("line {}: `{key}` appears twice", number + 1));
        }
    }
    let get = |i: usize| values[i].ok_or_else(|| format!("`{}` is missing", COST_KEYS[i]));
    Ok(DeviceCosts {
        link_bytes_per_s: get(0)?,
        link_latency_s: get(1)?,
        launch_s: get(2)?,
        elements_per_s: get(3)?,
    })
}

/// Device memory the calibration uses, straight from the driver (outside the caching allocator,
/// its budget and its statistics); freed on drop after the stream's work.
struct CalibrationBlock<'d> {
    ptr: driver_sys::CUdeviceptr,
    streams: &'d Streams,
}

impl<'d> CalibrationBlock<'d> {
    fn new(streams: &'d Streams, bytes: usize) -> Result<Self> {
        streams.bind()?;
        // SAFETY: allocates `bytes` of device memory in the bound context; freed in `drop`.
        let ptr = unsafe { driver::malloc_sync(bytes) }.map_err(|e| {
            gpu_err(
                format_args!("allocating {bytes} bytes for the cost calibration"),
                e,
            )
        })?;
        Ok(CalibrationBlock { ptr, streams })
    }
}

impl Drop for CalibrationBlock<'_> {
    fn drop(&mut self) {
        if self
            .streams
            .synchronize("synchronizing after the cost calibration")
            .is_ok()
        {
            // SAFETY: `ptr` came from `malloc_sync`; every stream (the calibration uses the
            // compute stream) is idle.
            let _ = unsafe { driver::free_sync(self.ptr) };
        }
    }
}

/// Seconds since `start`.
fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// What the calibration measures with, all on one queue: copies through the staging path,
/// launches of the calibration kernel, waiting for that queue (and no other), and a clock.
/// [`DeviceBench`] is a CUDA device's; tests drive [`measure`] with a model of a device.
pub(super) trait Bench {
    /// Enqueues an upload of `bytes`; returns once the source may be reused.
    fn upload(&mut self, bytes: usize) -> Result<()>;
    /// Downloads `bytes` and waits for them.
    fn download(&mut self, bytes: usize) -> Result<()>;
    /// Enqueues the calibration kernel on `elements` elements.
    fn launch(&mut self, elements: usize) -> Result<()>;
    /// Waits for the work enqueued so far.
    fn sync(&mut self) -> Result<()>;
    /// Seconds since a fixed point in time.
    fn seconds(&self) -> f64;
}

/// The micro-benchmarks:
/// - bandwidth each way: the median of [`BANDWIDTH_REPEATS`] copies of [`BANDWIDTH_BYTES`]
///   through the staging path of `upload_on` and `start_download`, after one each way that
///   allocates the staging chunks; the link figure is the harmonic mean of the two directions;
/// - latency: the median of [`LATENCY_REPEATS`] uploads of [`LATENCY_BYTES`], each waited for;
/// - launch overhead: the median of [`LAUNCH_BATCHES`] batches of [`LAUNCH_REPEATS`]
///   back-to-back launches on one element, per launch ([`back_to_back`]);
/// - throughput: the median of [`THROUGHPUT_BATCHES`] batches of [`THROUGHPUT_REPEATS`]
///   back-to-back launches on [`THROUGHPUT_ELEMENTS`], per launch: one kernel's time, since
///   each launch is enqueued while the kernel before it runs.
///
/// Only the queue the work runs on is waited for: waiting for the device's other (idle)
/// queues too would add their round trips to every sample.
pub(super) fn measure(bench: &mut impl Bench) -> Result<DeviceCosts> {
    bench.upload(BANDWIDTH_BYTES)?;
    bench.sync()?;
    bench.download(BANDWIDTH_BYTES)?;
    let mut up = Vec::with_capacity(BANDWIDTH_REPEATS);
    for _ in 0..BANDWIDTH_REPEATS {
        let start = bench.seconds();
        bench.upload(BANDWIDTH_BYTES)?;
        bench.sync()?;
        up.push(BANDWIDTH_BYTES as f64 / (bench.seconds() - start));
    }
    let mut down = Vec::with_capacity(BANDWIDTH_REPEATS);
    for _ in 0..BANDWIDTH_REPEATS {
        let start = bench.seconds();
        bench.download(BANDWIDTH_BYTES)?;
        down.push(BANDWIDTH_BYTES as f64 / (bench.seconds() - start));
    }
    let up = median(&up).unwrap_or(f64::NAN);
    let down = median(&down).unwrap_or(f64::NAN);
    tracing::debug!("{:.1} GB/s up, {:.1} GB/s down", up / 1e9, down / 1e9);

    let mut latency = Vec::with_capacity(LATENCY_REPEATS);
    for _ in 0..LATENCY_REPEATS {
        let start = bench.seconds();
        bench.upload(LATENCY_BYTES)?;
        bench.sync()?;
        latency.push(bench.seconds() - start);
    }

    // The first launch loads the module.
    bench.launch(1)?;
    let launches = (0..LAUNCH_BATCHES)
        .map(|_| back_to_back(bench, 1, LAUNCH_REPEATS))
        .collect::<Result<Vec<f64>>>()?;
    bench.launch(THROUGHPUT_ELEMENTS)?;
    let kernels = (0..THROUGHPUT_BATCHES)
        .map(|_| back_to_back(bench, THROUGHPUT_ELEMENTS, THROUGHPUT_REPEATS))
        .collect::<Result<Vec<f64>>>()?;

    let kernel_s = median(&kernels).unwrap_or(f64::NAN);
    let costs = DeviceCosts {
        link_bytes_per_s: 2.0 / (1.0 / up + 1.0 / down),
        link_latency_s: median(&latency).unwrap_or(f64::NAN),
        launch_s: median(&launches).unwrap_or(f64::NAN),
        elements_per_s: THROUGHPUT_ELEMENTS as f64 / kernel_s,
    };
    let values = [
        costs.link_bytes_per_s,
        costs.link_latency_s,
        costs.launch_s,
        costs.elements_per_s,
    ];
    if values.iter().all(|v| v.is_finite() && *v > 0.0) {
        Ok(costs)
    } else {
        Err(Error::Device(format!(
            "the cost calibration measured nonsense: {costs:?}"
        )))
    }
}

/// Seconds per launch of `launches` back-to-back launches on `elements` elements: the queue is
/// waited for once before the first and once after the last, so a launch costs what it costs
/// in a stream of launches (its enqueue overlaps the kernel before it), not a round trip to
/// the device each.
pub(super) fn back_to_back(
    bench: &mut impl Bench,
    elements: usize,
    launches: usize,
) -> Result<f64> {
    bench.sync()?;
    let start = bench.seconds();
    for _ in 0..launches {
        bench.launch(elements)?;
    }
    bench.sync()?;
    Ok((bench.seconds() - start) / launches as f64)
}

/// The calibration on a CUDA device: its compute queue, three blocks of
/// [`THROUGHPUT_ELEMENTS`] `f64`s for the kernel (the first also the target of the copies),
/// and a host buffer of [`BANDWIDTH_BYTES`].
struct DeviceBench<'d> {
    device: &'d CudaDevice,
    queue: Queue,
    host: Vec<u8>,
    a: CalibrationBlock<'d>,
    b: CalibrationBlock<'d>,
    out: CalibrationBlock<'d>,
    start: Instant,
}

impl<'d> DeviceBench<'d> {
    fn new(device: &'d CudaDevice) -> Result<Self> {
        let streams = &*device.shared.streams;
        let bytes = THROUGHPUT_ELEMENTS * 8;
        let (a, b, out) = (
            CalibrationBlock::new(streams, bytes)?,
            CalibrationBlock::new(streams, bytes)?,
            CalibrationBlock::new(streams, bytes)?,
        );
        let queue = Queue::Compute;
        streams.bind()?;
        for block in [&a, &b] {
            // SAFETY: `block` holds `bytes` of device memory allocated above, used by nothing
            // else; the kernels that read it are enqueued after this on the same stream.
            unsafe {
                driver::memset_d8_async(block.ptr, 0, bytes, streams.stream(queue).cu_stream())
            }
            .map_err(|e| gpu_err("clearing the cost calibration's inputs", e))?;
        }
        Ok(DeviceBench {
            device,
            queue,
            host: vec![1u8; BANDWIDTH_BYTES],
            a,
            b,
            out,
            start: Instant::now(),
        })
    }
}

impl Bench for DeviceBench<'_> {
    fn upload(&mut self, bytes: usize) -> Result<()> {
        self.device
            .shared
            .staging
            .copy_in(self.queue, &self.host[..bytes], self.a.ptr)
    }

    fn download(&mut self, bytes: usize) -> Result<()> {
        self.device
            .shared
            .staging
            .copy_out(self.queue, self.a.ptr, &mut self.host[..bytes])
    }

    fn launch(&mut self, elements: usize) -> Result<()> {
        let params = vec![
            Param::U64(elements as u64),
            Param::U64(self.a.ptr),
            Param::U64(self.b.ptr),
            Param::U64(self.out.ptr),
        ];
        self.device.launch_params(
            self.queue,
            &CALIBRATION_KERNELS,
            CALIBRATION_KERNEL,
            elements,
            params,
            LaunchShape::Elementwise,
        )
    }

    fn sync(&mut self) -> Result<()> {
        self.device
            .shared
            .streams
            .synchronize_queue(self.queue, "waiting during the cost calibration")
    }

    fn seconds(&self) -> f64 {
        seconds_since(self.start)
    }
}

impl CudaDevice {
    /// The costs of [`Device::costs`](crate::Device::costs): calibrated on first call, read
    /// from the cost cache when it has an entry for this device model and driver (unless
    /// `BACH_COST_CACHE=off`), else measured by short micro-benchmarks (well under a second; see
    /// [`recalibrate`](Self::recalibrate)) and written to the cache. Later calls return the
    /// same figures. When measuring fails: a warning, and the typical figures of
    /// [`DeviceCosts::default`].
    pub(super) fn calibrated_costs(&self) -> DeviceCosts {
        if let Some(costs) = *lock(&self.costs) {
            return costs;
        }
        // Measured without holding the lock: the calibration's host copies use rayon, and a
        // rayon worker waiting in them may run a job that asks for the costs too. (Two threads
        // asking at once may both measure; the first result stays.)
        let costs = match self.cached_costs() {
            Some(costs) => costs,
            None => match self.measure_costs() {
                Ok(costs) => {
                    self.store_costs(&costs);
                    costs
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: cost calibration failed ({e}); using typical figures",
                        self.name
                    );
                    DeviceCosts::default()
                }
            },
        };
        *lock(&self.costs).get_or_insert(costs)
    }

    /// Where this device's costs are cached: `<cache>/costs/<device>-cc<major><minor>-driver<cuda
    /// version>.txt`, next to the kernel cache; `None` without a cache directory.
    pub fn cost_cache_path(&self) -> Option<PathBuf> {
        let dir = self.cost_cache_dir.as_ref()?;
        let driver = self.driver_version?;
        Some(dir.join(cost_cache_file_name(
            &self.name,
            self.compute_capability(),
            driver,
        )))
    }

    /// Calibrations (measurements) this device has run: [`Device::costs`](crate::Device::costs) measures at most
    /// once, and not at all when the cost cache has an entry for the device.
    pub fn cost_measurements(&self) -> u64 {
        self.cost_measurements.load(Ordering::Relaxed)
    }

    /// Measures the device's costs again (see [`Device::costs`](crate::Device::costs)), keeps them for this process
    /// and rewrites the cost cache. Errors when the measurement fails (the costs kept before
    /// stay).
    pub fn recalibrate(&self) -> Result<DeviceCosts> {
        let mut known = lock(&self.costs);
        let costs = self.measure_costs()?;
        *known = Some(costs);
        self.store_costs(&costs);
        Ok(costs)
    }

    /// The cached costs, if the cache may be read and has a valid entry for this device.
    fn cached_costs(&self) -> Option<DeviceCosts> {
        if !cost_cache_readable(std::env::var(COST_CACHE_ENV).ok().as_deref()) {
            return None;
        }
        let path = self.cost_cache_path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("could not read the cost cache {}: {e}", path.display());
                return None;
            }
        };
        match parse_costs(&text) {
            Ok(costs) => {
                tracing::debug!("{}: costs from {}: {costs:?}", self.name, path.display());
                Some(costs)
            }
            Err(e) => {
                tracing::warn!("ignoring the cost cache {}: {e}", path.display());
                None
            }
        }
    }

    /// Writes `costs` to the cost cache (a warning when that fails).
    fn store_costs(&self, costs: &DeviceCosts) {
        let Some(path) = self.cost_cache_path() else {
            return;
        };
        if let Err(e) = write_atomically(&path, &format_costs(costs)) {
            tracing::warn!("could not write the cost cache {}: {e}", path.display());
        }
    }

    /// Runs the calibration micro-benchmarks (never panics).
    fn measure_costs(&self) -> Result<DeviceCosts> {
        self.cost_measurements.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let costs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            measure(&mut DeviceBench::new(self)?)
        }))
        .unwrap_or_else(|_| Err(Error::Device("the cost calibration panicked".into())))?;
        tracing::info!(
            "{}: calibrated in {:.0} ms: {:.1} GB/s, {:.1} us per transfer, {:.1} us per launch, {:.2e} elements/s",
            self.name,
            seconds_since(start) * 1e3,
            costs.link_bytes_per_s / 1e9,
            costs.link_latency_s * 1e6,
            costs.launch_s * 1e6,
            costs.elements_per_s
        );
        Ok(costs)
    }
}

#[cfg(test)]
mod tests;
