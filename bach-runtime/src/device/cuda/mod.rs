//! [`CudaDevice`]: the [`Device`] trait on a CUDA GPU, through cudarc's driver API.
//!
//! Opening checks the driver and NVRTC with [`discovery`] first, so a machine without `libcuda`
//! (or without a device, or without a usable NVRTC) gets `Error::DeviceUnavailable`, never a
//! panic. The device is put together from one module per concern:
//!
//! - [`streams`]: the context, one stream per [`Queue`] and the event pool;
//! - [`alloc`]: the caching size-class allocator and the fences that order a block's reuse
//!   (held by the buffers, which may outlive the device);
//! - [`staging`]: pinned staging chunks for transfers, and parallel host copies (held by the
//!   pending downloads);
//! - [`shared`]: the streams, the allocator and the staging pool together, shared with the
//!   events;
//! - [`nvrtc`]: NVRTC compilation (CUBIN or PTX) with its on-disk cache;
//!   [`module`]: compiled modules loaded once per source; [`launch`]: the grid and the launch;
//! - [`calibrate`]: the cost micro-benchmarks and the cost cache's file format;
//! - [`linalg`]: the matrix product (cuBLAS) and the symmetric eigensolver (cuSOLVER), with
//!   their handles; not yet run on a GPU;
//! - [`error`]: the backend's errors and their conversion to the runtime's.

mod alloc;
mod calibrate;
pub(crate) mod discovery;
mod error;
mod launch;
mod linalg;
mod module;
mod nvrtc;
mod shared;
mod staging;
mod streams;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::result as driver;
use cudarc::driver::sys as driver_sys;
use cudarc::driver::{CudaContext, CudaEvent};

pub use alloc::AllocatorStats;
use alloc::{CudaAlloc, SizeClassPool};
use discovery::{ComputeCapability, GpuUnavailable};
use error::{gpu_err, unavailable};
use launch::{elementwise_blocks, Param};
use linalg::LinalgHandles;
use module::{LoadedModule, ModuleCache};
use nvrtc::KernelCache;
use shared::{CudaFence, Shared};
use staging::CudaDownload;

use super::{
    check_copy, check_range, Device, DeviceBuffer, Event, Gemm, KernelArg, Launch, PendingDownload,
    Queue, SymmetricEigen, TransferStats,
};
use crate::device::DeviceCosts;
use crate::disk_cache;
use crate::error::{Error, Result};

/// Compiles a kernel source with NVRTC to PTX for compute capability `major.minor`,
/// without a GPU: what a library's tests use to check that every kernel it names
/// compiles (the PTX lists each kernel as `.entry name(`). `Error::DeviceUnavailable`
/// without a usable NVRTC; `Error::Device` with NVRTC's log for a source it rejects.
pub fn compile_to_ptx(src: &super::KernelSource, major: u32, minor: u32) -> Result<String> {
    let target = nvrtc::Target::ptx(ComputeCapability::new(major, minor));
    let module = nvrtc::compile_for_target(src, target).map_err(error::from_cuda)?;
    module
        .ptx()
        .map(str::to_owned)
        .ok_or_else(|| Error::internal("PTX text from a PTX compilation"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A CUDA GPU as a Bach [`Device`] (see the module docs). Open with [`CudaDevice::open`].
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    cc: ComputeCapability,
    sm_count: u32,
    total_memory: usize,
    shared: Arc<Shared>,
    modules: ModuleCache<LoadedModule>,
    /// cuBLAS and cuSOLVER handles, per queue, created on first use.
    linalg: LinalgHandles,
    /// The calibrated costs, once known (read from the cost cache or measured).
    costs: Mutex<Option<DeviceCosts>>,
    /// Calibrations (measurements) this device has run.
    cost_measurements: AtomicU64,
    /// Directory of the cost cache (`<cache>/costs`), if there is a cache directory.
    cost_cache_dir: Option<PathBuf>,
    /// The CUDA version the driver supports, for the cost cache's file name.
    driver_version: Option<(u32, u32)>,
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("compute_capability", &self.cc)
            .field("sm_count", &self.sm_count)
            .field("total_memory", &self.total_memory)
            .finish_non_exhaustive()
    }
}

impl CudaDevice {
    /// Opens CUDA device `ordinal`: a context, one stream per [`Queue`], and the device's
    /// properties.
    ///
    /// Returns `Error::DeviceUnavailable` (never panics) when there is no usable driver or device,
    /// when NVRTC (which compiles the kernels) cannot be loaded, or when `ordinal` does not
    /// exist; `Error::Device` when the driver fails.
    pub fn open(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let devices = match discovery::availability() {
            Ok(devices) => devices,
            Err(reason) => return Err(unavailable(reason)),
        };
        let Some(info) = devices.into_iter().find(|d| d.ordinal == ordinal) else {
            return Err(unavailable(GpuUnavailable::DriverError(format!(
                "there is no CUDA device {ordinal}"
            ))));
        };
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| gpu_err(format_args!("creating a context on device {ordinal}"), e))?;
        let new_stream = || {
            ctx.new_stream()
                .map_err(|e| gpu_err("creating a stream", e))
        };
        let streams = [new_stream()?, new_stream()?, new_stream()?];
        let sm_count = ctx
            .attribute(driver_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| gpu_err("reading the multiprocessor count", e))?;
        let (free, total) =
            driver::mem_get_info().map_err(|e| gpu_err("reading the free memory", e))?;
        tracing::info!(
            "opened CUDA device {ordinal}: {} (compute capability {}, {} SMs, {} of {} MiB free)",
            info.name,
            info.compute_capability,
            sm_count,
            free >> 20,
            total >> 20
        );
        let disk = KernelCache::from_env();
        let cost_cache_dir = disk_cache::costs_dir();
        Ok(Arc::new(CudaDevice {
            ordinal,
            name: info.name,
            cc: info.compute_capability,
            sm_count: sm_count.max(1) as u32,
            total_memory: total,
            shared: Arc::new(Shared::new(ctx, streams)),
            modules: ModuleCache::new(info.compute_capability, disk),
            linalg: LinalgHandles::default(),
            costs: Mutex::new(None),
            cost_measurements: AtomicU64::new(0),
            cost_cache_dir,
            driver_version: discovery::driver_version().ok(),
        }))
    }

    /// Limits the device memory Bach uses to `bytes` (live buffers and cached blocks, by size
    /// class), so that a large GPU behaves like a small one: `free_memory` reports at most what
    /// is left of it, and allocations beyond it fail with `Error::DeviceOutOfMemory`.
    pub fn with_memory_budget(self: Arc<Self>, bytes: usize) -> Arc<Self> {
        self.set_memory_budget(Some(bytes));
        self
    }

    /// Sets or removes the memory budget (see [`with_memory_budget`](Self::with_memory_budget)).
    pub fn set_memory_budget(&self, bytes: Option<usize>) {
        lock(&self.shared.alloc.state).pool.set_budget(bytes);
    }

    /// The memory budget, if any.
    pub fn memory_budget(&self) -> Option<usize> {
        lock(&self.shared.alloc.state).pool.budget()
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The compute capability as `(major, minor)`, e.g. `(9, 0)`.
    pub fn compute_capability(&self) -> (u32, u32) {
        (self.cc.major, self.cc.minor)
    }

    /// Streaming multiprocessors.
    pub fn multiprocessor_count(&self) -> u32 {
        self.sm_count
    }

    /// Total device memory in bytes.
    pub fn total_memory(&self) -> usize {
        self.total_memory
    }

    /// Blocks of an elementwise launch over `n` elements (256 threads each).
    pub fn elementwise_blocks(&self, n: usize) -> u32 {
        elementwise_blocks(n, self.sm_count)
    }

    /// Bytes an allocation of `bytes` takes from the device (its size class) and the budget.
    pub fn allocation_size(bytes: usize) -> usize {
        SizeClassPool::<()>::class_size(bytes).unwrap_or(usize::MAX)
    }

    /// Counters of the caching allocator.
    pub fn allocator_stats(&self) -> AllocatorStats {
        let state = lock(&self.shared.alloc.state);
        AllocatorStats {
            live_bytes: state.pool.live_bytes(),
            cached_bytes: state.pool.idle_bytes(),
            cached_blocks: state.pool.idle_blocks(),
            reuses: state.pool.reuses(),
            driver_allocations: state.pool.fresh_allocations(),
        }
    }

    /// Returns the cached (freed, unused) blocks to the driver, after waiting for the work
    /// that may still use them. Returns the bytes freed.
    pub fn empty_cache(&self) -> Result<usize> {
        let mut state = lock(&self.shared.alloc.state);
        self.shared.alloc.release_cached(&mut state)
    }

    fn alloc_of<'b>(&self, buf: &'b DeviceBuffer) -> Result<&'b CudaAlloc> {
        let alloc = buf.raw.downcast_ref::<CudaAlloc>().ok_or_else(|| {
            Error::Device(format!(
                "a buffer of another device was given to {}",
                self.name()
            ))
        })?;
        if !Arc::ptr_eq(&alloc.allocator, &self.shared.alloc) {
            return Err(Error::Device(format!(
                "a buffer of another CUDA device was given to {}",
                self.name()
            )));
        }
        Ok(alloc)
    }

    fn fence_of<'e>(&self, event: &'e Event) -> Result<&'e CudaEvent> {
        let fence = event.raw.downcast_ref::<CudaFence>().ok_or_else(|| {
            Error::Device(format!(
                "an event of another device was given to {}",
                self.name()
            ))
        })?;
        if !Arc::ptr_eq(&fence.shared, &self.shared) {
            return Err(Error::Device(format!(
                "an event of another CUDA device was given to {}",
                self.name()
            )));
        }
        fence
            .event
            .as_ref()
            .ok_or_else(|| Error::Device("an event that was given back".into()))
    }

    fn update(&self, f: impl FnOnce(&mut TransferStats)) {
        f(&mut lock(&self.shared.alloc.state).stats)
    }

    /// Driver's free memory; 0 when the query fails.
    fn driver_free(&self) -> usize {
        self.shared.streams.driver_free()
    }

    /// The staging pool's chunks: `(held, idle)` (see [`Staging`](staging::Staging)).
    #[cfg(test)]
    fn staging_chunks(&self) -> (usize, usize) {
        self.shared.staging.staging_chunks()
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // Let queued work on every stream finish before the modules it uses go away (the
        // staging memory and cached blocks go with the staging pool and the allocator, after
        // their fences).
        let _ = self
            .shared
            .streams
            .synchronize("synchronizing before closing the device");
    }
}

impl Device for CudaDevice {
    fn name(&self) -> String {
        format!(
            "CUDA device {}: {} (sm_{}, {:.1} GiB)",
            self.ordinal,
            self.name,
            self.cc.arch(),
            self.total_memory as f64 / (1u64 << 30) as f64
        )
    }

    fn free_memory(&self) -> usize {
        let driver_free = self.driver_free();
        lock(&self.shared.alloc.state).pool.free_memory(driver_free)
    }

    fn alloc_on(&self, queue: Queue, bytes: usize) -> Result<DeviceBuffer> {
        Ok(DeviceBuffer {
            bytes,
            raw: Box::new(self.shared.alloc.alloc_block(queue, bytes)?),
        })
    }

    fn upload_on(&self, queue: Queue, src: &[u8], dst: &DeviceBuffer) -> Result<()> {
        let alloc = self.alloc_of(dst)?;
        check_range("upload", 0, src.len(), alloc.bytes)?;
        if !src.is_empty() {
            alloc.touch(queue);
            self.shared.streams.bind()?;
            self.shared.staging.copy_in(queue, src, alloc.ptr)?;
            self.shared.alloc.mark_used(queue, &[alloc]);
        }
        self.update(|s| {
            s.uploads += 1;
            s.upload_bytes += src.len() as u64;
        });
        Ok(())
    }

    fn launch_on(&self, queue: Queue, launch: &Launch<'_>) -> Result<()> {
        let mut params = Vec::with_capacity(launch.args.len() + 1);
        params.push(Param::U64(launch.n as u64));
        let mut buffers = Vec::new();
        for arg in &launch.args {
            params.push(match arg {
                KernelArg::In(b) => {
                    let alloc = self.alloc_of(b)?;
                    buffers.push(alloc);
                    Param::U64(alloc.ptr)
                }
                KernelArg::Out(b) => {
                    let alloc = self.alloc_of(b)?;
                    buffers.push(alloc);
                    Param::U64(alloc.ptr)
                }
                KernelArg::F32(v) => Param::F32(*v),
                KernelArg::F64(v) => Param::F64(*v),
                KernelArg::I32(v) => Param::I32(*v),
                KernelArg::U64(v) => Param::U64(*v),
            });
        }
        for alloc in &buffers {
            alloc.touch(queue);
        }
        self.launch_params(
            queue,
            &launch.source,
            &launch.kernel,
            launch.n,
            params,
            launch.shape,
        )?;
        self.shared.alloc.mark_used(queue, &buffers);
        self.update(|s| s.launches += 1);
        Ok(())
    }

    fn copy_on(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        src_offset: usize,
        dst: &DeviceBuffer,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()> {
        let (from, to) = (self.alloc_of(src)?, self.alloc_of(dst)?);
        check_copy(src, src_offset, dst, dst_offset, bytes)?;
        if bytes == 0 {
            return Ok(());
        }
        from.touch(queue);
        to.touch(queue);
        self.shared.streams.bind()?;
        // SAFETY: both ranges lie in live allocations of this device (checked above) and do
        // not overlap (different blocks); the stream orders the copy after earlier work on
        // `queue`, and the caller orders it after other queues' work with events (the trait's
        // rules); both blocks are marked as used on `queue`, so their reuse waits for it.
        unsafe {
            driver::memcpy_dtod_async(
                to.ptr + dst_offset as u64,
                from.ptr + src_offset as u64,
                bytes,
                self.shared.streams.stream(queue).cu_stream(),
            )
        }
        .map_err(|e| gpu_err(format_args!("copying {bytes} bytes on the device"), e))?;
        self.shared.alloc.mark_used(queue, &[from, to]);
        Ok(())
    }

    fn start_download(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        bytes: usize,
    ) -> Result<PendingDownload> {
        let alloc = self.alloc_of(src)?;
        check_range("download", 0, bytes, alloc.bytes)?;
        if bytes > 0 {
            alloc.touch(queue);
        }
        self.shared.streams.bind()?;
        let download = self
            .shared
            .staging
            .start_copy_out(queue, alloc.ptr, bytes)?;
        if bytes > 0 {
            self.shared.alloc.mark_used(queue, &[alloc]);
        }
        self.update(|s| {
            s.downloads += 1;
            s.download_bytes += bytes as u64;
        });
        Ok(PendingDownload {
            bytes,
            raw: Box::new(download),
        })
    }

    fn finish_download(&self, pending: PendingDownload, dst: &mut [u8]) -> Result<()> {
        let PendingDownload { bytes, raw } = pending;
        let mut download = raw.downcast::<CudaDownload>().map_err(|_| {
            Error::Device(format!(
                "a download of another device was given to {}",
                self.name()
            ))
        })?;
        if !Arc::ptr_eq(&download.staging, &self.shared.staging) {
            return Err(Error::Device(format!(
                "a download of another CUDA device was given to {}",
                self.name()
            )));
        }
        if dst.len() != bytes {
            return Err(Error::Device(format!(
                "a download of {bytes} bytes finished into {} bytes",
                dst.len()
            )));
        }
        self.shared.streams.bind()?;
        self.shared.staging.finish_copy_out(&mut download, dst)
        // `download` drops here: its chunks go back to the staging pool.
    }

    fn record(&self, queue: Queue) -> Result<Event> {
        self.shared.streams.bind()?;
        let event = self.shared.streams.record_event(queue)?;
        Ok(Event {
            raw: Box::new(CudaFence {
                event: Some(event),
                shared: self.shared.clone(),
            }),
        })
    }

    fn wait(&self, queue: Queue, event: &Event) -> Result<()> {
        let event = self.fence_of(event)?;
        self.shared.streams.stream(queue).wait(event).map_err(|e| {
            gpu_err(
                format_args!("waiting for an event on the {queue:?} queue"),
                e,
            )
        })
    }

    fn host_wait(&self, event: &Event) -> Result<()> {
        self.fence_of(event)?
            .synchronize()
            .map_err(|e| gpu_err("waiting for an event", e))
    }

    fn synchronize(&self) -> Result<()> {
        self.shared.streams.synchronize("synchronizing the device")
    }

    fn stats(&self) -> TransferStats {
        lock(&self.shared.alloc.state).stats
    }

    /// Calibrated on first call: read from the cost cache when it has an entry for this device
    /// model and driver (unless `BACH_COST_CACHE=off`), else measured by short micro-benchmarks
    /// (well under a second; see [`CudaDevice::recalibrate`]) and written to the cache. Later
    /// calls return the same figures. When measuring fails: a warning, and the typical figures
    /// of [`DeviceCosts::default`]. Calibration is not counted in [`stats`](Device::stats).
    fn costs(&self) -> DeviceCosts {
        self.calibrated_costs()
    }

    /// cuBLAS's `Sgemm`/`Dgemm` on `queue`'s stream (not yet run on a GPU; see `linalg.rs`).
    /// `Error::DeviceUnavailable` when cuBLAS cannot be loaded.
    fn gemm_on(&self, queue: Queue, g: &Gemm<'_>) -> Result<()> {
        self.cublas_gemm(queue, g)
    }

    /// cuSOLVER's `Ssyevd`/`Dsyevd` on `queue`'s stream, waiting for its status word (not yet
    /// run on a GPU; see `linalg.rs`). `Error::DeviceUnavailable` when cuSOLVER cannot be
    /// loaded; `Error::Device` when the solver fails.
    fn symmetric_eigen_on(&self, queue: Queue, e: &SymmetricEigen<'_>) -> Result<()> {
        self.cusolver_syevd(queue, e)
    }
}
