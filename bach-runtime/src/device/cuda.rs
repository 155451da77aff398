//! [`CudaDevice`]: the [`Device`] trait on a CUDA GPU, through cudarc's driver API.
//!
//! - **Opening** checks the driver with [`crate::cuda::discovery`] first, so a machine without
//!   `libcuda` (or without a device) gets `Error::GpuUnavailable`, never a panic.
//! - **Queues** are three non-blocking CUDA streams, one per [`Queue`] (upload, compute,
//!   download), so that host-to-device copies, kernels and device-to-host copies of different
//!   batches overlap. Work on one stream runs in order; across streams it is ordered only by
//!   events: [`Device::record`] records a (pooled, timing-disabled) CUDA event on a stream,
//!   [`Device::wait`] makes another stream wait for it (`cuStreamWaitEvent`, the host does not
//!   wait) and [`Device::host_wait`] blocks the host on it. [`Device::synchronize`] waits for
//!   all three streams.
//! - **Memory** comes from a caching allocator: a freed [`DeviceBuffer`] returns its block to a
//!   per-size-class free list ([`SizeClassPool`]) and a later allocation of the same class
//!   reuses it without calling the driver. Because work on other streams may still use a freed
//!   block, every buffer remembers which queues used it ([`QueueMask`]: the queue it was
//!   allocated for, uploads, launches that read or write it, device copies, downloads) and, per
//!   queue, an event recorded right after its last use there (one event per enqueued operation,
//!   shared by the buffers it used). Dropping the buffer caches the block with those events (its
//!   *fences*; a use whose event could not be recorded gets one recorded at the drop); the host
//!   never waits. An [`alloc_on`](Device::alloc_on) prefers a cached block whose fences are on
//!   its own stream or complete, and otherwise makes its stream wait (on the device) for the
//!   fences of the other streams: the first use is ordered after every earlier use, and work on
//!   the same stream is ordered by the stream itself. Because fences mark the last use (not the
//!   drop), a block freed while later batches are already enqueued is reusable as soon as its
//!   own work is done, which keeps the pipelined batches from waiting for each other. Releasing the
//!   cache (a driver out-of-memory, the budget, [`CudaDevice::empty_cache`]) synchronizes all
//!   streams before freeing. A driver out-of-memory first empties the cache and retries once.
//!   An optional budget ([`CudaDevice::with_memory_budget`]) makes a large GPU behave like a
//!   small one.
//! - **Transfers** go through a pool of pinned (page-locked) host chunks of [`STAGING_CHUNK`]
//!   bytes, each with an event recorded after the last copy that used it. A chunk is taken when
//!   idle and its event has completed (else a new one is allocated, up to
//!   [`STAGING_MAX_CHUNKS`], else the host waits for the oldest idle one). An upload copies the
//!   caller's bytes into chunks on the host (in parallel for large copies), enqueues
//!   `cuMemcpyHtoDAsync` from each on its stream and returns the chunk to the pool at once: it
//!   returns once the source has been copied out of the caller's slice, without waiting for the
//!   DMA. A download ([`Device::start_download`]) enqueues `cuMemcpyDtoHAsync` into as many
//!   chunks as it needs and keeps them in its [`PendingDownload`];
//!   [`Device::finish_download`] waits for each chunk's event and copies it out. A pending
//!   download dropped unfinished returns its chunks with their events, which the pool respects.
//!   Without pinned memory, transfers fall back to synchronous copies from pageable memory.
//! - **Kernels** are compiled on first use per [`KernelSource`] with NVRTC (CUBIN for the
//!   device's architecture when NVRTC supports it, PTX otherwise; cached on disk by
//!   [`crate::cuda::compile`]), loaded as a module, and looked up by name once.
//!
//! - **Costs** ([`Device::costs`], for placement) are measured on first need by short
//!   micro-benchmarks on the compute stream (link bandwidth and latency through the staging
//!   path, launch overhead, elementwise throughput of a calibration kernel), at most once per
//!   process and device, and cached on disk per device model and driver (`<cache>/costs/`, next
//!   to the kernel cache); see [`CudaDevice::recalibrate`]. `BACH_COST_CACHE=off` makes a
//!   process measure instead of reading the cache.
//!
//! Launch shape: 256 threads per block; elementwise kernels get
//! `min(ceil(n / 256), 32 * SMs)` blocks (at least one) and walk the rest with grid-stride
//! loops. Reductions (a launch whose shape is `LaunchShape::Reduction { partials }`) get
//! exactly `partials` blocks, one per entry of their output buffer, so every partial the host
//! reads back is written.

// Nothing in the crate opens a CUDA device until the device executor does.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_void, CString};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use cudarc::driver::result::{self as driver, DriverError};
use cudarc::driver::sys as driver_sys;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream};
use rayon::prelude::*;

use super::{
    check_copy, check_range, Device, DeviceBuffer, Event, KernelArg, KernelSource, Launch,
    LaunchShape, PendingDownload, Queue, TransferStats,
};
use crate::cost::DeviceCosts;
use crate::cuda::compile::{self, CodeKind, CompiledModule, KernelCache};
use crate::cuda::discovery::{self, ComputeCapability, GpuUnavailable};
use crate::cuda::error::CudaError;
use crate::disk_cache::{
    self, cost_cache_readable, sanitize_file_name, write_atomically, COST_CACHE_ENV,
};
use crate::error::{Error, Result};

/// Threads per block of every launch.
pub const THREADS_PER_BLOCK: u32 = 256;
/// Elementwise launches use at most this many blocks per multiprocessor.
pub const BLOCKS_PER_SM: u32 = 32;
/// Size of one pinned staging chunk; transfers are split into chunks of this size.
pub const STAGING_CHUNK: usize = 8 << 20;
/// Most staging chunks the pool keeps (512 MiB of pinned memory); a transfer that finds them
/// all held by pending downloads gets extra chunks, freed when given back.
pub const STAGING_MAX_CHUNKS: usize = 64;
/// How long transfers go through pageable memory after pinned memory could not be allocated.
const STAGING_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Host copies of at least this many bytes (into or out of staging chunks) run in parallel.
const PARALLEL_COPY_MIN: usize = 1 << 20;
/// The piece of a parallel host copy each task copies.
const PARALLEL_COPY_PIECE: usize = 256 << 10;
/// Most idle events the device keeps for reuse.
const EVENT_POOL_MAX: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- errors --------------------------------------------------------------------------------

/// A driver error as text: its name (`CUDA_ERROR_OUT_OF_MEMORY`) and, when the driver is
/// loaded, its description. Never calls into a driver that is not loaded.
fn driver_error_text(e: DriverError) -> String {
    let name = format!("{:?}", e.0);
    if !discovery::libcuda_present() {
        return name;
    }
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// `Error::Gpu` for a failed driver call: `what` says which operation (and on what).
fn gpu_err(what: impl fmt::Display, e: DriverError) -> Error {
    Error::Gpu(format!("{what}: {}", driver_error_text(e)))
}

/// The runtime's error for an error of the CUDA backend: `GpuUnavailable` when the GPU cannot
/// be used at all, else `Gpu` with the full message (for a compile error, NVRTC's log).
fn from_cuda(e: CudaError) -> Error {
    match e {
        CudaError::Unavailable(reason) => Error::GpuUnavailable(reason.to_string()),
        other => Error::Gpu(other.to_string()),
    }
}

/// The error of a launch of a kernel that its source does not define.
fn kernel_not_found(kernel: &str, source: &str) -> Error {
    Error::Gpu(format!("kernel `{kernel}` not found in {source}"))
}

// ---- the caching allocator's bookkeeping -----------------------------------------------------

/// Allocations up to this size are rounded to a power-of-two-ish size class (quarter steps
/// between powers of two); larger ones to a multiple of this size.
pub const LARGE_GRANULE: usize = 2 << 20;
/// The smallest size class (also the size of a zero-byte allocation).
pub const MIN_CLASS: usize = 512;

/// What an allocation should do, decided by [`SizeClassPool::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocPlan {
    /// Reuse a cached block of the class ([`SizeClassPool::take`]).
    Reuse,
    /// Allocate a new block from the driver.
    Fresh,
    /// Allocate a new block, after releasing the cached blocks ([`SizeClassPool::drain`]):
    /// with them the device would hold more than the budget.
    DrainThenFresh,
    /// The allocation does not fit in the budget, even with the cache emptied.
    OverBudget {
        /// What is left of the budget (bytes).
        free: usize,
    },
}

/// The free-list bookkeeping of the caching allocator, independent of CUDA: blocks of a
/// size class (see [`class_size`](Self::class_size)) are handed out, given back to the list
/// of their class on drop, and reused by later allocations of that class. `P` is the block's
/// handle (a device pointer on a GPU).
///
/// Counts bytes by class: `live` blocks are handed out, `idle` ones sit in the free lists; the
/// device holds `live + idle` from the driver. An optional budget bounds `live + idle`.
#[derive(Debug)]
pub struct SizeClassPool<P> {
    free: HashMap<usize, Vec<P>>,
    live_bytes: usize,
    idle_bytes: usize,
    budget: Option<usize>,
    reuses: u64,
    fresh: u64,
}

impl<P> Default for SizeClassPool<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> SizeClassPool<P> {
    /// An empty pool without a budget.
    pub fn new() -> Self {
        SizeClassPool {
            free: HashMap::new(),
            live_bytes: 0,
            idle_bytes: 0,
            budget: None,
            reuses: 0,
            fresh: 0,
        }
    }

    /// The size class of an allocation of `bytes`: at least [`MIN_CLASS`]; up to
    /// [`LARGE_GRANULE`], the next of `2^k`, `1.25 * 2^k`, `1.5 * 2^k`, `1.75 * 2^k` (at most
    /// 25% more than asked); above, the next multiple of [`LARGE_GRANULE`]. `None` on overflow.
    pub fn class_size(bytes: usize) -> Option<usize> {
        if bytes <= MIN_CLASS {
            return Some(MIN_CLASS);
        }
        if bytes > LARGE_GRANULE {
            return bytes.div_ceil(LARGE_GRANULE).checked_mul(LARGE_GRANULE);
        }
        let pow = bytes.next_power_of_two();
        if pow == bytes {
            return Some(bytes);
        }
        let base = pow / 2;
        let step = base / 4;
        Some(base + (bytes - base).div_ceil(step) * step)
    }

    /// Sets (or removes) the budget: the most bytes the pool may hold, live and idle.
    pub fn set_budget(&mut self, budget: Option<usize>) {
        self.budget = budget;
    }

    /// The budget.
    pub fn budget(&self) -> Option<usize> {
        self.budget
    }

    /// What to do to allocate a block of class `class`.
    pub fn plan(&self, class: usize) -> AllocPlan {
        if let Some(budget) = self.budget {
            if self.live_bytes.saturating_add(class) > budget {
                return AllocPlan::OverBudget {
                    free: budget.saturating_sub(self.live_bytes),
                };
            }
        }
        if self.free.get(&class).is_some_and(|list| !list.is_empty()) {
            return AllocPlan::Reuse;
        }
        match self.budget {
            Some(budget) if self.reserved_bytes().saturating_add(class) > budget => {
                AllocPlan::DrainThenFresh
            }
            _ => AllocPlan::Fresh,
        }
    }

    /// Cached blocks [`take_preferring`](Self::take_preferring) looks at, newest first.
    pub const PREFERENCE_WINDOW: usize = 16;

    /// A cached block of class `class`, now live: among the newest
    /// [`PREFERENCE_WINDOW`](Self::PREFERENCE_WINDOW), the newest one `preferred` accepts, else
    /// the newest.
    pub fn take_preferring(&mut self, class: usize, preferred: impl Fn(&P) -> bool) -> Option<P> {
        let list = self.free.get_mut(&class)?;
        let newest_first = (0..list.len()).rev().take(Self::PREFERENCE_WINDOW);
        let index = newest_first
            .clone()
            .find(|&i| preferred(&list[i]))
            .or_else(|| list.len().checked_sub(1))?;
        let block = list.remove(index);
        self.idle_bytes -= class;
        self.live_bytes += class;
        self.reuses += 1;
        Some(block)
    }

    /// A cached block of class `class`, now live.
    pub fn take(&mut self, class: usize) -> Option<P> {
        let block = self.free.get_mut(&class)?.pop()?;
        self.idle_bytes -= class;
        self.live_bytes += class;
        self.reuses += 1;
        Some(block)
    }

    /// Records a block of class `class` fresh from the driver, now live.
    pub fn add_fresh(&mut self, class: usize) {
        self.live_bytes += class;
        self.fresh += 1;
    }

    /// Takes back a live block of class `class` (its buffer was dropped) into the free list.
    pub fn give_back(&mut self, class: usize, block: P) {
        self.live_bytes = self.live_bytes.saturating_sub(class);
        self.idle_bytes += class;
        self.free.entry(class).or_default().push(block);
    }

    /// Removes every cached block (to free them in the driver), with its class.
    pub fn drain(&mut self) -> Vec<(usize, P)> {
        self.idle_bytes = 0;
        let mut out = Vec::new();
        for (class, list) in self.free.drain() {
            out.extend(list.into_iter().map(|b| (class, b)));
        }
        out
    }

    /// Bytes of live blocks (by class).
    pub fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes of cached blocks.
    pub fn idle_bytes(&self) -> usize {
        self.idle_bytes
    }

    /// Bytes held from the driver: live and cached.
    pub fn reserved_bytes(&self) -> usize {
        self.live_bytes + self.idle_bytes
    }

    /// Cached blocks.
    pub fn idle_blocks(&self) -> usize {
        self.free.values().map(Vec::len).sum()
    }

    /// Allocations served from the cache.
    pub fn reuses(&self) -> u64 {
        self.reuses
    }

    /// Allocations that needed a new block from the driver.
    pub fn fresh_allocations(&self) -> u64 {
        self.fresh
    }

    /// Bytes that can be allocated now, given `driver_free` bytes free in the driver: those
    /// plus the cached bytes (reusable), capped by what is left of the budget.
    pub fn free_memory(&self, driver_free: usize) -> usize {
        let free = driver_free.saturating_add(self.idle_bytes);
        match self.budget {
            Some(budget) => free.min(budget.saturating_sub(self.live_bytes)),
            None => free,
        }
    }

    /// Forgets a live block of class `class` that will never be reused (leaked in the driver).
    pub fn forget(&mut self, class: usize) {
        self.live_bytes = self.live_bytes.saturating_sub(class);
    }
}

// ---- launch grid -----------------------------------------------------------------------------

/// Blocks of an elementwise launch over `n` elements on a device with `sm_count`
/// multiprocessors: `min(ceil(n / 256), 32 * sm_count)`, at least 1.
pub fn elementwise_blocks(n: usize, sm_count: u32) -> u32 {
    let needed = n.div_ceil(THREADS_PER_BLOCK as usize);
    let cap = (sm_count.max(1) as usize).saturating_mul(BLOCKS_PER_SM as usize);
    needed.min(cap).clamp(1, u32::MAX as usize) as u32
}

// ---- compiled modules --------------------------------------------------------------------------

/// Identifies a kernel source within a process by address (sources are `'static`), for the
/// fast path; sources at different addresses with equal names and texts share one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey {
    name: &'static str,
    code: usize,
    len: usize,
}

impl SourceKey {
    fn of(src: &KernelSource) -> Self {
        SourceKey {
            name: src.name,
            code: src.code.as_ptr() as usize,
            len: src.code.len(),
        }
    }
}

struct Entries<M> {
    by_address: HashMap<SourceKey, Result<Arc<M>>>,
    /// Every source compiled, by text.
    by_text: Vec<(KernelSource, Result<Arc<M>>)>,
}

/// Compiles each kernel source once (NVRTC, with the on-disk cache underneath) for one compute
/// capability and keeps what `load` made of it (a loaded module on a GPU); failures are kept
/// too, so a broken source is not recompiled at every launch. This is the path
/// [`CudaDevice::launch`] takes, minus the driver.
pub(crate) struct ModuleCache<M> {
    cc: ComputeCapability,
    disk: Option<KernelCache>,
    entries: Mutex<Entries<M>>,
}

impl<M> ModuleCache<M> {
    pub(crate) fn new(cc: ComputeCapability, disk: Option<KernelCache>) -> Self {
        ModuleCache {
            cc,
            disk,
            entries: Mutex::new(Entries {
                by_address: HashMap::new(),
                by_text: Vec::new(),
            }),
        }
    }

    /// The module of `src`: compiled and loaded with `load` on first use, then cached.
    pub(crate) fn get(
        &self,
        src: &KernelSource,
        load: impl FnOnce(&CompiledModule) -> Result<M>,
    ) -> Result<Arc<M>> {
        let key = SourceKey::of(src);
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.by_address.get(&key) {
            return entry.clone();
        }
        let known = entries
            .by_text
            .iter()
            .find(|(s, _)| s.name == src.name && s.code == src.code)
            .map(|(_, entry)| entry.clone());
        let entry = match known {
            Some(entry) => entry,
            None => match compile_source(src, self.cc, self.disk.as_ref()) {
                // A failed load (e.g. out of memory) is not kept: the next launch tries again.
                Ok(compiled) => {
                    let entry = Ok(Arc::new(load(&compiled)?));
                    entries.by_text.push((*src, entry.clone()));
                    entry
                }
                Err(e) => {
                    entries.by_text.push((*src, Err(e.clone())));
                    Err(e)
                }
            },
        };
        entries.by_address.insert(key, entry.clone());
        entry
    }
}

/// Compiles `src` for `cc` ([`compile::compile`]), in the runtime's error type.
pub(crate) fn compile_source(
    src: &KernelSource,
    cc: ComputeCapability,
    disk: Option<&KernelCache>,
) -> Result<CompiledModule> {
    let module = compile::compile(&compile::KernelSource::new(src.name, src.code), cc, disk)
        .map_err(from_cuda)?;
    if module.target.kind == CodeKind::Ptx {
        tracing::info!(
            "{}: NVRTC has no CUBIN target for sm_{}; the driver JIT-compiles PTX for {}",
            src.name,
            cc.arch(),
            module.target.arch_name()
        );
    }
    if !module.log.trim().is_empty() {
        tracing::debug!("NVRTC log for {}:\n{}", src.name, module.log);
    }
    Ok(module)
}

/// A module loaded into the device's context, with the functions looked up so far.
struct LoadedModule {
    source: &'static str,
    module: driver_sys::CUmodule,
    functions: Mutex<HashMap<String, usize>>,
    ctx: Arc<CudaContext>,
}

// SAFETY: a CUmodule and its CUfunctions are handles valid in any thread that binds the
// context; the function map is behind a mutex.
unsafe impl Send for LoadedModule {}
// SAFETY: as above.
unsafe impl Sync for LoadedModule {}

impl LoadedModule {
    fn load(
        ctx: &Arc<CudaContext>,
        source: &'static str,
        compiled: &CompiledModule,
    ) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))?;
        // The driver takes a CUBIN image as is and PTX as a NUL-terminated string.
        let mut image = compiled.code.clone();
        if compiled.target.kind == CodeKind::Ptx {
            image.push(0);
        }
        // SAFETY: `image` is a complete CUBIN (an ELF image) or NUL-terminated PTX text, as
        // produced by NVRTC for this device; it stays alive for the duration of the call (the
        // driver copies what it needs).
        let module = unsafe { driver::module::load_data(image.as_ptr().cast()) }.map_err(|e| {
            gpu_err(
                format_args!("loading the {} module of {source}", compiled.target),
                e,
            )
        })?;
        Ok(LoadedModule {
            source,
            module,
            functions: Mutex::new(HashMap::new()),
            ctx: ctx.clone(),
        })
    }

    /// The function `kernel`, looked up once.
    fn function(&self, kernel: &str) -> Result<driver_sys::CUfunction> {
        let mut functions = lock(&self.functions);
        if let Some(&f) = functions.get(kernel) {
            return Ok(f as driver_sys::CUfunction);
        }
        let name = CString::new(kernel).map_err(|_| kernel_not_found(kernel, self.source))?;
        // SAFETY: `self.module` is loaded and not unloaded before `self` is dropped.
        let f = match unsafe { driver::module::get_function(self.module, name) } {
            Ok(f) => f,
            Err(e) if e.0 == driver_sys::CUresult::CUDA_ERROR_NOT_FOUND => {
                return Err(kernel_not_found(kernel, self.source));
            }
            Err(e) => {
                return Err(gpu_err(
                    format_args!("looking up kernel `{kernel}` in {}", self.source),
                    e,
                ))
            }
        };
        functions.insert(kernel.to_string(), f as usize);
        Ok(f)
    }
}

impl Drop for LoadedModule {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: loaded in `load`, unloaded only here; no launch can use it any more
            // (the device that owned it is being dropped and has synchronized its streams).
            let _ = unsafe { driver::module::unload(self.module) };
        }
    }
}

// ---- pinned staging ----------------------------------------------------------------------------

/// Staging chunks a transfer of `bytes` needs: `ceil(bytes / STAGING_CHUNK)` (0 for 0 bytes).
pub(crate) fn chunk_count(bytes: usize) -> usize {
    bytes.div_ceil(STAGING_CHUNK)
}

/// The `(offset, len)` of each staging chunk of a transfer of `bytes`, in order.
pub(crate) fn chunk_ranges(bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..chunk_count(bytes)).map(move |i| {
        let offset = i * STAGING_CHUNK;
        (offset, STAGING_CHUNK.min(bytes - offset))
    })
}

/// Copies `src` into `dst` (of equal lengths) on the host: in parallel pieces on rayon's pool
/// from [`PARALLEL_COPY_MIN`] bytes on (one thread cannot fill a PCIe 5 link), else directly.
pub(crate) fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "host copy of unequal lengths");
    if src.len() < PARALLEL_COPY_MIN {
        dst.copy_from_slice(src);
        return;
    }
    dst.par_chunks_mut(PARALLEL_COPY_PIECE)
        .zip(src.par_chunks(PARALLEL_COPY_PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// What [`ChunkPool::take`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChunkTake<C> {
    /// The oldest idle chunk whose last copy has completed: use it now.
    Ready(C),
    /// No idle chunk is ready and the pool may grow: allocate a chunk, counted in the pool
    /// (report a failure with [`ChunkPool::allocation_failed`]).
    Allocate,
    /// No idle chunk is ready and the pool is full: wait for the last copy of this one (the
    /// oldest idle chunk), then use it.
    WaitFor(C),
    /// The pool is full and every chunk is in use (held by pending downloads): allocate a chunk
    /// outside the pool, freed instead of given back.
    Overflow,
}

/// The pinned staging pool's bookkeeping, independent of CUDA: idle chunks oldest first (in
/// the order they were given back), and how many chunks the pool holds in all (idle or in
/// use), at most `cap`.
#[derive(Debug)]
pub(crate) struct ChunkPool<C> {
    idle: VecDeque<C>,
    chunks: usize,
    cap: usize,
}

impl<C> ChunkPool<C> {
    /// An empty pool of at most `cap` chunks.
    pub(crate) fn new(cap: usize) -> Self {
        ChunkPool {
            idle: VecDeque::new(),
            chunks: 0,
            cap,
        }
    }

    /// Takes a chunk: the oldest idle one that is `ready` (its last copy has completed), else a
    /// new one while the pool has fewer than `cap`, else the oldest idle one to wait for, else
    /// (all in use) one outside the pool.
    pub(crate) fn take(&mut self, mut ready: impl FnMut(&C) -> bool) -> ChunkTake<C> {
        if let Some(i) = self.idle.iter().position(&mut ready) {
            let chunk = self.idle.remove(i).expect("the position is in range");
            return ChunkTake::Ready(chunk);
        }
        if self.chunks < self.cap {
            self.chunks += 1;
            return ChunkTake::Allocate;
        }
        match self.idle.pop_front() {
            Some(chunk) => ChunkTake::WaitFor(chunk),
            None => ChunkTake::Overflow,
        }
    }

    /// The allocation [`take`](Self::take) asked for failed: the pool holds one chunk less.
    pub(crate) fn allocation_failed(&mut self) {
        self.chunks = self.chunks.saturating_sub(1);
    }

    /// A chunk of the pool (not an overflow chunk) is idle again.
    pub(crate) fn give_back(&mut self, chunk: C) {
        self.idle.push_back(chunk);
    }

    /// A chunk of the pool is lost (leaked, or freed outside the pool).
    pub(crate) fn forget(&mut self) {
        self.chunks = self.chunks.saturating_sub(1);
    }

    /// Chunks the pool holds, idle or in use.
    pub(crate) fn chunks(&self) -> usize {
        self.chunks
    }

    /// Idle chunks.
    pub(crate) fn idle_chunks(&self) -> usize {
        self.idle.len()
    }

    /// Removes the idle chunks (to free them).
    pub(crate) fn drain(&mut self) -> Vec<C> {
        self.chunks -= self.idle.len();
        self.idle.drain(..).collect()
    }
}

/// [`STAGING_CHUNK`] bytes of page-locked host memory for asynchronous copies (not
/// write-combined: downloads read it on the host), with an event recorded after the last copy
/// that uses it. Nobody touches the memory on the host before that event has completed.
struct Pinned {
    ptr: *mut u8,
    event: CudaEvent,
}

// SAFETY: the host memory is owned by this value and only reached through it (a chunk is either
// idle in the pool, behind its mutex, or held by exactly one transfer); CudaEvent is Send + Sync.
unsafe impl Send for Pinned {}

impl Pinned {
    fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))?;
        let event = ctx
            .new_event(None)
            .map_err(|e| gpu_err("creating an event for pinned staging memory", e))?;
        // SAFETY: allocates STAGING_CHUNK bytes of page-locked host memory (no flags: cached,
        // not write-combined, not mapped); freed in `drop`.
        let ptr = unsafe { driver::malloc_host(STAGING_CHUNK, 0) }.map_err(|e| {
            gpu_err(
                format_args!("allocating {STAGING_CHUNK} bytes of pinned host memory"),
                e,
            )
        })?;
        let ptr: *mut u8 = ptr.cast();
        // SAFETY: `ptr` points to STAGING_CHUNK writable bytes that nothing else uses yet.
        // Zeroed once so that the slices handed out below never cover uninitialized memory.
        unsafe { std::ptr::write_bytes(ptr, 0, STAGING_CHUNK) };
        Ok(Pinned { ptr, event })
    }

    /// Whether the last copy using this chunk has completed (an event never recorded counts as
    /// completed). A failed query counts as not completed: waiting reports the error.
    fn is_idle(&self) -> bool {
        self.event.is_complete()
    }

    /// Waits for the last copy that uses this chunk.
    fn wait(&self) -> Result<()> {
        self.event
            .synchronize()
            .map_err(|e| gpu_err("waiting for a copy through pinned staging memory", e))
    }

    /// Orders this chunk after the copy just enqueued on `stream` (or attempted: an enqueue that
    /// returned an error may still have been queued): records the chunk's event there, or, when
    /// that fails, waits for the stream on the host. `Err` when neither worked: a copy may
    /// still use the memory, so the caller must leak the chunk rather than reuse or free it.
    fn fence(&self, stream: &CudaStream) -> Result<()> {
        let Err(e) = self.event.record(stream) else {
            return Ok(());
        };
        match stream.synchronize() {
            Ok(()) => {
                tracing::warn!(
                    "recording a staging event failed ({}); waited for the stream instead",
                    driver_error_text(e)
                );
                Ok(())
            }
            Err(_) => Err(gpu_err("recording an event after a staging copy", e)),
        }
    }

    /// The first `len` bytes, for the host to write or the device to copy into. Call only
    /// when the chunk's last copy has completed.
    fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= STAGING_CHUNK);
        // SAFETY: `ptr` points to STAGING_CHUNK bytes owned by `self`; `&mut self` makes the
        // view unique on the host, and the caller waited for the device to stop using them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }

    /// The first `len` bytes, for the host to read or the device to copy from. Call only when
    /// no copy into the chunk is in flight.
    fn slice(&self, len: usize) -> &[u8] {
        assert!(len <= STAGING_CHUNK);
        // SAFETY: as in `slice_mut`; nothing on the host writes the memory while `&self` lives
        // (writes need `&mut self`), and the caller waited for the device's writes.
        unsafe { std::slice::from_raw_parts(self.ptr, len) }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // The memory is freed only once the last copy that uses it has completed; when that
        // cannot be established it is leaked instead.
        if self.event.synchronize().is_err() {
            tracing::warn!("leaking a pinned staging chunk whose last copy cannot be waited for");
            return;
        }
        if self.event.context().bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `malloc_host`; the last copy using it has completed.
            let _ = unsafe { driver::free_host(self.ptr.cast()) };
        }
    }
}

/// A staging chunk taken from the pool: `pooled` ones go back to it, overflow ones are freed.
struct StagingChunk {
    pinned: Pinned,
    pooled: bool,
}

/// The pinned staging pool (see the module docs).
struct Staging {
    pool: ChunkPool<Pinned>,
    /// Pinned memory could not be allocated: copy from pageable memory instead, until then
    /// (a failure may be transient: pinned memory is a shared, limited resource).
    unavailable_until: Option<Instant>,
}

impl Default for Staging {
    fn default() -> Self {
        Staging {
            pool: ChunkPool::new(STAGING_MAX_CHUNKS),
            unavailable_until: None,
        }
    }
}

// ---- the device --------------------------------------------------------------------------------

/// The queues that used a buffer, one bit per [`Queue::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct QueueMask(u8);

impl QueueMask {
    /// No queue.
    pub(crate) const EMPTY: QueueMask = QueueMask(0);

    /// Only `queue`.
    pub(crate) fn of(queue: Queue) -> Self {
        QueueMask(1 << queue.index())
    }

    /// The mask with the bits `bits` (bits above the queues ignored).
    pub(crate) fn from_bits(bits: u8) -> Self {
        QueueMask(bits & ((1 << Queue::ALL.len()) - 1))
    }

    /// The bits.
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    /// This mask and `queue`.
    pub(crate) fn with(self, queue: Queue) -> Self {
        QueueMask(self.0 | Self::of(queue).0)
    }

    /// Whether `queue` is in the mask.
    pub(crate) fn contains(self, queue: Queue) -> bool {
        self.0 & Self::of(queue).0 != 0
    }

    /// True for no queue.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The queues in the mask, in index order.
    pub(crate) fn queues(self) -> impl Iterator<Item = Queue> {
        Queue::ALL.into_iter().filter(move |q| self.contains(*q))
    }
}

/// A block of the caching allocator, with its fences while it is cached: for each queue that
/// used it, an event recorded after that queue's last use of it (shared with the other buffers
/// the same work used; recycled when the last holder drops it).
struct CachedBlock {
    ptr: driver_sys::CUdeviceptr,
    fences: Vec<(Queue, Arc<UseFence>)>,
}

impl CachedBlock {
    /// True when reusing the block on `queue` waits for nothing: each fence is on `queue`
    /// (ordered by the stream itself) or has completed.
    fn ready_for(&self, queue: Queue) -> bool {
        self.fences.iter().all(|(used_on, fence)| {
            *used_on == queue || fence.event.as_ref().is_none_or(|e| e.is_complete())
        })
    }
}

/// Allocator state and counters, under one lock.
struct State {
    pool: SizeClassPool<CachedBlock>,
    /// Bytes requested by live buffers (not rounded), for `TransferStats::peak_bytes`.
    live_requested: usize,
    stats: TransferStats,
}

/// What buffers, events and pending downloads share with their device (they may outlive it).
///
/// Lock order: `state`, then `events`; `staging` is never held with another lock.
struct Shared {
    ctx: Arc<CudaContext>,
    /// One stream per [`Queue`], by [`Queue::index`].
    streams: [Arc<CudaStream>; 3],
    state: Mutex<State>,
    /// Idle events (timing disabled) for fences and [`Device::record`]. An event goes back here
    /// only when nothing will wait for its last record any more: waits already enqueued with
    /// `cuStreamWaitEvent` are not affected by a later record of the same event.
    events: Mutex<Vec<CudaEvent>>,
    staging: Mutex<Staging>,
}

impl Shared {
    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))
    }

    fn stream(&self, queue: Queue) -> &CudaStream {
        &self.streams[queue.index()]
    }

    /// Waits for the work on every stream.
    fn synchronize(&self, what: &str) -> Result<()> {
        self.bind()?;
        let mut result = Ok(());
        for stream in &self.streams {
            if let Err(e) = stream.synchronize() {
                result = result.and(Err(gpu_err(what, e)));
            }
        }
        result
    }

    /// Waits for the work on `queue`'s stream.
    fn synchronize_queue(&self, queue: Queue, what: &str) -> Result<()> {
        self.bind()?;
        self.stream(queue)
            .synchronize()
            .map_err(|e| gpu_err(what, e))
    }

    /// An idle event from the pool, or a new one.
    fn take_event(&self) -> Result<CudaEvent> {
        if let Some(event) = lock(&self.events).pop() {
            return Ok(event);
        }
        self.ctx
            .new_event(None)
            .map_err(|e| gpu_err("creating an event", e))
    }

    /// Returns an event nobody waits for any more to the pool.
    fn recycle_event(&self, event: CudaEvent) {
        let mut events = lock(&self.events);
        if events.len() < EVENT_POOL_MAX {
            events.push(event);
        }
    }

    /// An event recorded on `queue`'s stream now.
    fn record_event(&self, queue: Queue) -> Result<CudaEvent> {
        let event = self.take_event()?;
        event
            .record(self.stream(queue))
            .map_err(|e| gpu_err(format_args!("recording an event on the {queue:?} queue"), e))?;
        Ok(event)
    }

    /// The fences of a dropped block: for each queue in `uses`, the event recorded after the
    /// block's last use there, or, when there is none (recording it failed), an event
    /// recorded on that stream now, after everything it was given so far (including every use
    /// of the block, since the buffer is being dropped). A stream whose event cannot be
    /// recorded is waited for on the host instead. `None` when even that fails: the block must
    /// not be reused.
    fn fences(self: &Arc<Self>, uses: Uses) -> Option<Vec<(Queue, Arc<UseFence>)>> {
        let mut fences = Vec::with_capacity(3);
        let Uses { queues, mut last } = uses;
        for queue in queues.queues() {
            if let Some(fence) = last[queue.index()].take() {
                fences.push((queue, fence));
                continue;
            }
            match self.record_event(queue) {
                Ok(event) => fences.push((queue, UseFence::new(event, self))),
                Err(e) => {
                    if let Err(sync) = self.synchronize_queue(queue, "waiting for a freed block") {
                        tracing::warn!(
                            "leaking a device block: no fence ({e}) and no synchronization ({sync})"
                        );
                        return None;
                    }
                }
            }
        }
        Some(fences)
    }

    /// Orders the first use of a reused block on `queue` after its earlier uses: `queue`'s
    /// stream waits (on the device) for each fence of another queue; fences of `queue` itself
    /// are already ordered by the stream. The fences are recycled once every one is handled
    /// (the waits enqueued here are not affected by later records). When a wait cannot be
    /// enqueued the host waits for the fence instead; `Err` when that fails, with every fence
    /// left in `block` (a later reuse, possibly on another queue, still needs all of them).
    fn order_reuse(&self, queue: Queue, block: &mut CachedBlock) -> Result<()> {
        for (used_on, fence) in &block.fences {
            let Some(fence) = fence.event.as_ref() else {
                continue;
            };
            if *used_on != queue && !fence.is_complete() {
                if let Err(e) = self.stream(queue).wait(fence) {
                    if let Err(e2) = fence.synchronize() {
                        return Err(gpu_err(
                            format_args!(
                                "ordering a reused block after its use on the {used_on:?} queue ({})",
                                driver_error_text(e)
                            ),
                            e2,
                        ));
                    }
                }
            }
        }
        // Dropping a fence recycles its event once no other block holds it.
        block.fences.clear();
        Ok(())
    }

    /// Frees the cached blocks in the driver, after the work on every stream (which may still
    /// use them).
    fn release_cached(&self, state: &mut State) -> Result<usize> {
        let blocks = state.pool.drain();
        if blocks.is_empty() {
            return Ok(0);
        }
        self.synchronize("synchronizing before freeing cached device memory")?;
        let mut freed = 0;
        for (class, block) in blocks {
            // SAFETY: `block.ptr` came from `malloc_sync`, is in no live buffer (it was cached),
            // and every stream has finished all work enqueued so far, which includes every use
            // of the block (its uses were enqueued before its buffer was dropped).
            unsafe { driver::free_sync(block.ptr) }
                .map_err(|e| gpu_err(format_args!("freeing {class} bytes"), e))?;
            freed += class;
        }
        Ok(freed)
    }

    /// A staging chunk (see [`ChunkPool::take`]) whose last copy has completed; `None` when no
    /// pinned memory can be allocated (the caller copies through pageable memory).
    fn take_chunk(&self) -> Result<Option<StagingChunk>> {
        self.bind()?;
        let decision = {
            let mut staging = lock(&self.staging);
            if staging
                .unavailable_until
                .is_some_and(|until| Instant::now() < until)
            {
                return Ok(None);
            }
            staging.pool.take(Pinned::is_idle)
        };
        match decision {
            ChunkTake::Ready(pinned) => Ok(Some(StagingChunk {
                pinned,
                pooled: true,
            })),
            ChunkTake::WaitFor(pinned) => {
                if let Err(e) = pinned.wait() {
                    lock(&self.staging).pool.give_back(pinned);
                    return Err(e);
                }
                Ok(Some(StagingChunk {
                    pinned,
                    pooled: true,
                }))
            }
            ChunkTake::Allocate => match Pinned::new(&self.ctx) {
                Ok(pinned) => Ok(Some(StagingChunk {
                    pinned,
                    pooled: true,
                })),
                Err(e) => {
                    tracing::warn!(
                        "no pinned staging memory ({e}); copying through pageable memory"
                    );
                    let mut staging = lock(&self.staging);
                    staging.pool.allocation_failed();
                    staging.unavailable_until = Some(Instant::now() + STAGING_RETRY);
                    Ok(None)
                }
            },
            ChunkTake::Overflow => match Pinned::new(&self.ctx) {
                Ok(pinned) => Ok(Some(StagingChunk {
                    pinned,
                    pooled: false,
                })),
                Err(e) => {
                    tracing::warn!(
                        "no extra pinned staging memory ({e}); copying through pageable memory"
                    );
                    Ok(None)
                }
            },
        }
    }

    /// Gives a staging chunk back: to the pool with its event (a later take respects it), or,
    /// for an overflow chunk, to the driver once its last copy has completed.
    fn return_chunk(&self, chunk: StagingChunk) {
        if chunk.pooled {
            lock(&self.staging).pool.give_back(chunk.pinned);
        }
        // An overflow chunk is dropped here: `Pinned::drop` waits for its event, then frees it.
    }

    /// Leaks a staging chunk a copy may still use (see [`Pinned::fence`]).
    fn leak_chunk(&self, chunk: StagingChunk) {
        if chunk.pooled {
            lock(&self.staging).pool.forget();
        }
        std::mem::forget(chunk);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let blocks = state.pool.drain();
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        let mut idle = true;
        for stream in &self.streams {
            idle &= stream.synchronize().is_ok();
        }
        if !idle {
            // Some work may still use the blocks: leak them rather than free them under it.
            std::mem::forget(blocks);
            return;
        }
        for (_, block) in blocks {
            // SAFETY: no buffer refers to `block.ptr` any more (every buffer holds this
            // `Shared`), and every stream is idle.
            let _ = unsafe { driver::free_sync(block.ptr) };
        }
        // The staging chunks are freed as the fields drop, each after waiting for its event.
    }
}

/// The device's own representation of a [`DeviceBuffer`]: one block of the caching allocator,
/// given back to the pool on drop with a fence for each queue that used it.
struct CudaAlloc {
    ptr: driver_sys::CUdeviceptr,
    class: usize,
    bytes: usize,
    shared: Arc<Shared>,
    /// Which queues used the block, and after which event each last did.
    uses: Mutex<Uses>,
}

/// The uses of a block by the queues.
#[derive(Default)]
struct Uses {
    /// The queues that used the block: set before each use is enqueued.
    queues: QueueMask,
    /// Per queue, an event recorded after its last use of the block, once recorded; `None`
    /// while a use is being enqueued (or when recording failed: the drop records one then).
    last: [Option<Arc<UseFence>>; 3],
}

/// An event recorded after work that used some blocks, shared by their fences. Its event
/// goes back to the device's pool when the last holder drops it. It holds the device weakly:
/// the pool's own blocks hold fences, and a strong reference would keep the device alive.
struct UseFence {
    event: Option<CudaEvent>,
    shared: std::sync::Weak<Shared>,
}

impl UseFence {
    fn new(event: CudaEvent, shared: &Arc<Shared>) -> Arc<UseFence> {
        Arc::new(UseFence {
            event: Some(event),
            shared: Arc::downgrade(shared),
        })
    }
}

impl Drop for UseFence {
    fn drop(&mut self) {
        if let (Some(event), Some(shared)) = (self.event.take(), self.shared.upgrade()) {
            shared.recycle_event(event);
        }
    }
}

impl CudaAlloc {
    /// Notes that work on `queue` is about to use the block (call before enqueueing it).
    fn touch(&self, queue: Queue) {
        let mut uses = lock(&self.uses);
        uses.queues = uses.queues.with(queue);
        uses.last[queue.index()] = None;
    }

    /// Notes that `fence` was recorded on `queue` after the work that used the block.
    fn used(&self, queue: Queue, fence: &Arc<UseFence>) {
        lock(&self.uses).last[queue.index()] = Some(fence.clone());
    }
}

impl Shared {
    /// After work on `queue` that used `allocs` was enqueued: one event after it, remembered
    /// by each block as its last use there, so that a later reuse of the block waits for that
    /// work only (not for whatever the stream runs by the time the buffer is dropped). When
    /// the event cannot be recorded, the blocks keep no last use and the drop records one.
    fn mark_used(self: &Arc<Self>, queue: Queue, allocs: &[&CudaAlloc]) {
        if allocs.is_empty() {
            return;
        }
        match self.record_event(queue) {
            Ok(event) => {
                let fence = UseFence::new(event, self);
                for alloc in allocs {
                    alloc.used(queue, &fence);
                }
            }
            Err(e) => tracing::debug!("no last-use event ({e}); the drop records a fence"),
        }
    }
}

impl Drop for CudaAlloc {
    fn drop(&mut self) {
        let uses = std::mem::take(self.uses.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Taken before the block is visible in the free list, so a reuse always finds them.
        let fences = self.shared.fences(uses);
        let mut state = lock(&self.shared.state);
        state.live_requested = state.live_requested.saturating_sub(self.bytes);
        match fences {
            Some(fences) => state.pool.give_back(
                self.class,
                CachedBlock {
                    ptr: self.ptr,
                    fences,
                },
            ),
            None => state.pool.forget(self.class),
        }
    }
}

/// An event of a [`CudaDevice`] ([`Device::record`]); back to the device's event pool on drop.
struct CudaFence {
    event: Option<CudaEvent>,
    shared: Arc<Shared>,
}

impl Drop for CudaFence {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.shared.recycle_event(event);
        }
    }
}

/// The device's own representation of a [`PendingDownload`]: where the bytes land.
struct CudaDownload {
    shared: Arc<Shared>,
    /// Staging chunks, one per [`STAGING_CHUNK`] of the download in order, each with its event
    /// recorded after its copy.
    chunks: Vec<StagingChunk>,
    /// The bytes, copied already (through pageable memory, without pinned memory).
    pageable: Option<Vec<u8>>,
    /// For a zero-byte download: an event after the queue's earlier work.
    event: Option<CudaEvent>,
}

impl CudaDownload {
    fn new(shared: &Arc<Shared>) -> Self {
        CudaDownload {
            shared: shared.clone(),
            chunks: Vec::new(),
            pageable: None,
            event: None,
        }
    }
}

impl Drop for CudaDownload {
    fn drop(&mut self) {
        // Finished or not: the chunks go back with their events, which the pool waits for
        // before anyone touches them again (overflow chunks are freed after their events).
        for chunk in self.chunks.drain(..) {
            self.shared.return_chunk(chunk);
        }
        if let Some(event) = self.event.take() {
            self.shared.recycle_event(event);
        }
    }
}

/// Counters of the caching allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocatorStats {
    /// Bytes in live buffers (rounded to their size classes).
    pub live_bytes: usize,
    /// Bytes in freed blocks kept for reuse.
    pub cached_bytes: usize,
    /// Freed blocks kept for reuse.
    pub cached_blocks: usize,
    /// Allocations served from the cache.
    pub reuses: u64,
    /// Allocations that called the driver.
    pub driver_allocations: u64,
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
    /// Returns `Error::GpuUnavailable` (never panics) when there is no usable driver or device,
    /// when NVRTC (which compiles the kernels) cannot be loaded, or when `ordinal` does not
    /// exist; `Error::Gpu` when the driver fails.
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
            shared: Arc::new(Shared {
                ctx,
                streams,
                state: Mutex::new(State {
                    pool: SizeClassPool::new(),
                    live_requested: 0,
                    stats: TransferStats::default(),
                }),
                events: Mutex::new(Vec::new()),
                staging: Mutex::new(Staging::default()),
            }),
            modules: ModuleCache::new(info.compute_capability, disk),
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
        lock(&self.shared.state).pool.set_budget(bytes);
    }

    /// The memory budget, if any.
    pub fn memory_budget(&self) -> Option<usize> {
        lock(&self.shared.state).pool.budget()
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
        let state = lock(&self.shared.state);
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
        let mut state = lock(&self.shared.state);
        self.shared.release_cached(&mut state)
    }

    fn alloc_of<'b>(&self, buf: &'b DeviceBuffer) -> Result<&'b CudaAlloc> {
        let alloc = buf.raw.downcast_ref::<CudaAlloc>().ok_or_else(|| {
            Error::Gpu(format!(
                "a buffer of another device was given to {}",
                self.name()
            ))
        })?;
        if !Arc::ptr_eq(&alloc.shared, &self.shared) {
            return Err(Error::Gpu(format!(
                "a buffer of another CUDA device was given to {}",
                self.name()
            )));
        }
        Ok(alloc)
    }

    /// The staging pool's chunks: `(held, idle)`, where `held` counts idle chunks and chunks in
    /// use by transfers (not overflow chunks).
    pub(crate) fn staging_chunks(&self) -> (usize, usize) {
        let staging = lock(&self.shared.staging);
        (staging.pool.chunks(), staging.pool.idle_chunks())
    }

    fn fence_of<'e>(&self, event: &'e Event) -> Result<&'e CudaEvent> {
        let fence = event.raw.downcast_ref::<CudaFence>().ok_or_else(|| {
            Error::Gpu(format!(
                "an event of another device was given to {}",
                self.name()
            ))
        })?;
        if !Arc::ptr_eq(&fence.shared, &self.shared) {
            return Err(Error::Gpu(format!(
                "an event of another CUDA device was given to {}",
                self.name()
            )));
        }
        fence
            .event
            .as_ref()
            .ok_or_else(|| Error::Gpu("an event that was given back".into()))
    }

    fn update(&self, f: impl FnOnce(&mut TransferStats)) {
        f(&mut lock(&self.shared.state).stats)
    }

    /// Driver's free memory; 0 when the query fails.
    fn driver_free(&self) -> usize {
        if self.shared.bind().is_err() {
            return 0;
        }
        driver::mem_get_info().map(|(free, _)| free).unwrap_or(0)
    }

    /// Allocates a fresh block in the driver; on out-of-memory, empties the cache and retries
    /// once.
    fn driver_alloc(
        &self,
        state: &mut State,
        class: usize,
        bytes: usize,
    ) -> Result<driver_sys::CUdeviceptr> {
        self.shared.bind()?;
        // SAFETY: allocates `class` bytes of device memory in the bound context; the block is
        // owned by the pool (live in a `CudaAlloc` or cached) until freed by `release_cached`
        // or `Shared::drop`.
        match unsafe { driver::malloc_sync(class) } {
            Ok(ptr) => return Ok(ptr),
            Err(e) if e.0 != driver_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                return Err(gpu_err(
                    format_args!("allocating {class} bytes ({bytes} requested)"),
                    e,
                ));
            }
            Err(_) => {}
        }
        let freed = self.shared.release_cached(state)?;
        tracing::info!(
            "device out of memory for {class} bytes: released {freed} cached bytes and retrying"
        );
        // SAFETY: as above.
        match unsafe { driver::malloc_sync(class) } {
            Ok(ptr) => Ok(ptr),
            Err(e) if e.0 == driver_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                Err(Error::DeviceOutOfMemory {
                    requested: bytes,
                    free: state.pool.free_memory(self.driver_free()),
                })
            }
            Err(e) => Err(gpu_err(
                format_args!("allocating {class} bytes ({bytes} requested)"),
                e,
            )),
        }
    }

    /// Copies `src` into the device at `dst` on `queue`'s stream through pinned staging chunks
    /// (or from pageable memory when there are none). Returns once `src` may be reused: each
    /// chunk's bytes are copied out of `src` on the host before its DMA is enqueued, and the
    /// DMA is not waited for.
    fn copy_in(&self, queue: Queue, src: &[u8], dst: driver_sys::CUdeviceptr) -> Result<()> {
        let stream = self.shared.stream(queue);
        for (offset, len) in chunk_ranges(src.len()) {
            let Some(mut chunk) = self.shared.take_chunk()? else {
                return self.copy_in_pageable(queue, &src[offset..], dst + offset as u64);
            };
            // The chunk's last copy has completed (`take_chunk`): the host may write it.
            copy_bytes(chunk.pinned.slice_mut(len), &src[offset..offset + len]);
            // A parallel copy may have run other rayon jobs on this thread, which may have bound
            // another context: bind this one again before the enqueue.
            if let Err(e) = self.shared.bind() {
                self.shared.return_chunk(chunk); // nothing enqueued: its event is unchanged
                return Err(e);
            }
            // SAFETY: `dst + offset .. + len` lies in a live device allocation (the caller
            // checked `src` against the buffer's size), whose earlier uses on other queues
            // precede this copy (`alloc_on` ordered its reuse; later cross-queue accesses are
            // ordered by the caller's events). The source is page-locked memory that nothing on
            // the host touches again before the event recorded below (by `fence`) completes.
            let copied = unsafe {
                driver::memcpy_htod_async(
                    dst + offset as u64,
                    chunk.pinned.slice(len),
                    stream.cu_stream(),
                )
            };
            if let Err(e) = chunk.pinned.fence(stream) {
                self.shared.leak_chunk(chunk);
                return Err(e);
            }
            self.shared.return_chunk(chunk);
            copied.map_err(|e| gpu_err(format_args!("copying {len} bytes to the device"), e))?;
        }
        Ok(())
    }

    fn copy_in_pageable(
        &self,
        queue: Queue,
        src: &[u8],
        dst: driver_sys::CUdeviceptr,
    ) -> Result<()> {
        // SAFETY: `dst .. dst + src.len()` lies in a live device allocation; `src` outlives the
        // copy because the stream is synchronized before returning (also when the enqueue
        // reported an error).
        let copied =
            unsafe { driver::memcpy_htod_async(dst, src, self.shared.stream(queue).cu_stream()) };
        let waited = self
            .shared
            .synchronize_queue(queue, "waiting for a copy to the device");
        if waited.is_err() {
            // The copy may still read `src` after this returns; nothing more can be done about
            // it than reporting the error (the context is broken).
            tracing::error!("a copy from pageable memory could not be waited for");
        }
        copied
            .map_err(|e| gpu_err(format_args!("copying {} bytes to the device", src.len()), e))?;
        waited
    }

    /// Enqueues a copy of `bytes` bytes from the device at `src` on `queue`'s stream into
    /// staging chunks (or copies them through pageable memory, waiting, when there are none).
    fn start_copy_out(
        &self,
        queue: Queue,
        src: driver_sys::CUdeviceptr,
        bytes: usize,
    ) -> Result<CudaDownload> {
        let mut download = CudaDownload::new(&self.shared);
        if bytes == 0 {
            download.event = Some(self.shared.record_event(queue)?);
            return Ok(download);
        }
        // All chunks first: a download lands in staging memory as a whole.
        for _ in 0..chunk_count(bytes) {
            match self.shared.take_chunk()? {
                Some(chunk) => download.chunks.push(chunk),
                None => {
                    drop(download); // gives the chunks taken back
                    return self.start_copy_out_pageable(queue, src, bytes);
                }
            }
        }
        let stream = self.shared.stream(queue);
        for (i, (offset, len)) in chunk_ranges(bytes).enumerate() {
            let chunk = &mut download.chunks[i];
            // SAFETY: `src + offset .. + len` lies in a live device allocation (checked by the
            // caller), whose writers on other queues precede this copy by the caller's events.
            // The destination is page-locked memory that nothing touches until the event
            // recorded below (by `fence`) has completed: `finish_copy_out` waits for it before
            // reading, and a dropped download gives the chunk back with that event, which
            // `take_chunk` respects.
            let copied = unsafe {
                driver::memcpy_dtoh_async(
                    chunk.pinned.slice_mut(len),
                    src + offset as u64,
                    stream.cu_stream(),
                )
            };
            if let Err(e) = chunk.pinned.fence(stream) {
                let chunk = download.chunks.swap_remove(i);
                self.shared.leak_chunk(chunk);
                return Err(e);
            }
            copied.map_err(|e| gpu_err(format_args!("copying {len} bytes from the device"), e))?;
        }
        Ok(download)
    }

    fn start_copy_out_pageable(
        &self,
        queue: Queue,
        src: driver_sys::CUdeviceptr,
        bytes: usize,
    ) -> Result<CudaDownload> {
        let mut host = vec![0u8; bytes];
        // SAFETY: the source range lies in a live device allocation; `host` is not touched (or
        // freed) before the stream is synchronized below, and is leaked if that fails.
        let copied = unsafe {
            driver::memcpy_dtoh_async(&mut host, src, self.shared.stream(queue).cu_stream())
        };
        if let Err(e) = self
            .shared
            .synchronize_queue(queue, "waiting for a copy from the device")
        {
            std::mem::forget(host);
            return Err(e);
        }
        copied.map_err(|e| gpu_err(format_args!("copying {bytes} bytes from the device"), e))?;
        let mut download = CudaDownload::new(&self.shared);
        download.pageable = Some(host);
        Ok(download)
    }

    /// Waits for a download's copies and copies the bytes into `dst` (of the download's length),
    /// chunk by chunk: the host copy of one chunk overlaps the DMA of the next.
    fn finish_copy_out(&self, download: &mut CudaDownload, dst: &mut [u8]) -> Result<()> {
        if let Some(event) = &download.event {
            event
                .synchronize()
                .map_err(|e| gpu_err("waiting for an empty download", e))?;
        }
        if let Some(host) = &download.pageable {
            copy_bytes(dst, host);
            return Ok(());
        }
        debug_assert_eq!(download.chunks.len(), chunk_count(dst.len()));
        for (chunk, (offset, len)) in download.chunks.iter_mut().zip(chunk_ranges(dst.len())) {
            chunk.pinned.wait()?;
            copy_bytes(&mut dst[offset..offset + len], chunk.pinned.slice(len));
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes from the device at `src` into `dst` on `queue`'s stream through
    /// the staging path of downloads, and waits for them.
    fn copy_out(&self, queue: Queue, src: driver_sys::CUdeviceptr, dst: &mut [u8]) -> Result<()> {
        let mut download = self.start_copy_out(queue, src, dst.len())?;
        self.finish_copy_out(&mut download, dst)
    }

    /// Launches `kernel` of `source` on `queue`'s stream over `n` elements with the kernel
    /// parameters `params` (`n` first, then the arguments as device pointers and values);
    /// `out_bytes` is the size of the output buffer (a reduction writes one partial per block
    /// into it). Counts nothing in the device's statistics.
    fn launch_params(
        &self,
        queue: Queue,
        source_code: &KernelSource,
        kernel: &str,
        n: usize,
        mut params: Vec<Param>,
        shape: LaunchShape,
    ) -> Result<()> {
        let source = source_code.name;
        self.shared.bind()?;
        let module = self.modules.get(source_code, |compiled| {
            LoadedModule::load(&self.shared.ctx, source, compiled)
        })?;
        let function = module.function(kernel)?;
        let blocks = match shape {
            LaunchShape::Reduction { partials: 0 } => {
                return Err(Error::Gpu(format!(
                    "reduction kernel `{kernel}` launched with no partials"
                )))
            }
            LaunchShape::Reduction { partials } => partials.min(i32::MAX as usize) as u32,
            LaunchShape::Elementwise => elementwise_blocks(n, self.sm_count),
        };
        let mut pointers: Vec<*mut c_void> = params
            .iter_mut()
            .map(|p| match p {
                Param::U64(v) => (v as *mut u64).cast(),
                Param::F32(v) => (v as *mut f32).cast(),
                Param::F64(v) => (v as *mut f64).cast(),
            })
            .collect();

        // SAFETY: `function` belongs to a module loaded in this context and kept alive by
        // `self.modules`. `pointers` holds one pointer per kernel parameter, in the kernel's
        // order (`unsigned long long n`, then the arguments as the launch convention of
        // numpy.cu lists them), each to a value of the parameter's type that lives in `params`
        // until this call returns (the driver copies the values). Device pointers are blocks of
        // live buffers of this device (or the calibration's blocks, see `CalibrationBlock`),
        // whose earlier uses on other queues precede this launch (`alloc_on` orders the reuse
        // of a block; the caller orders cross-queue reads with events);
        // the kernels walk `n` elements with grid-stride loops, and reductions write one
        // partial per block into an output holding `blocks` partials.
        unsafe {
            driver::launch_kernel(
                function,
                (blocks, 1, 1),
                (THREADS_PER_BLOCK, 1, 1),
                0,
                self.shared.stream(queue).cu_stream(),
                &mut pointers,
            )
        }
        .map_err(|e| {
            gpu_err(
                format_args!("launching `{kernel}` of {source} on {n} elements ({blocks} blocks)"),
                e,
            )
        })?;
        Ok(())
    }
}

// ---- cost calibration --------------------------------------------------------------------------

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
const CALIBRATION_KERNEL: &str = "bach_calibrate_add_f64";
/// Bytes of one bandwidth measurement copy.
const BANDWIDTH_BYTES: usize = 64 << 20;
/// Copies each way for the bandwidth (the median counts).
const BANDWIDTH_REPEATS: usize = 3;
/// Bytes of one latency round trip.
const LATENCY_BYTES: usize = 1 << 10;
/// Round trips for the latency.
const LATENCY_REPEATS: usize = 20;
/// Launches on one element for the launch overhead.
const LAUNCH_REPEATS: usize = 50;
/// Elements of one throughput launch.
const THROUGHPUT_ELEMENTS: usize = 1 << 24;
/// Launches for the throughput.
const THROUGHPUT_REPEATS: usize = 3;
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
    shared: &'d Shared,
}

impl<'d> CalibrationBlock<'d> {
    fn new(shared: &'d Shared, bytes: usize) -> Result<Self> {
        shared.bind()?;
        // SAFETY: allocates `bytes` of device memory in the bound context; freed in `drop`.
        let ptr = unsafe { driver::malloc_sync(bytes) }.map_err(|e| {
            gpu_err(
                format_args!("allocating {bytes} bytes for the cost calibration"),
                e,
            )
        })?;
        Ok(CalibrationBlock { ptr, shared })
    }
}

impl Drop for CalibrationBlock<'_> {
    fn drop(&mut self) {
        if self
            .shared
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

impl CudaDevice {
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

    /// Calibrations (measurements) this device has run: [`Device::costs`] measures at most
    /// once, and not at all when the cost cache has an entry for the device.
    pub fn cost_measurements(&self) -> u64 {
        self.cost_measurements.load(Ordering::Relaxed)
    }

    /// Measures the device's costs again (see [`Device::costs`]), keeps them for this process
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
        let costs =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_calibration()))
                .unwrap_or_else(|_| Err(Error::Gpu("the cost calibration panicked".into())))?;
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

    /// The micro-benchmarks, on the compute stream: bandwidth each way (median of 3 copies of
    /// 64 MiB through the staging path of `upload_on` and `start_download`; the link figure is the harmonic mean of the two
    /// directions), latency (median of 20 uploads of 1 KiB, each synchronized), launch overhead
    /// (median of 50 synchronized launches on 1 element) and throughput (median of 3
    /// synchronized launches on 2^24 elements, less the launch overhead).
    fn run_calibration(&self) -> Result<DeviceCosts> {
        let shared = &*self.shared;
        let sync = || shared.synchronize("synchronizing during the cost calibration");
        let n = THROUGHPUT_ELEMENTS;
        let a = CalibrationBlock::new(shared, n * 8)?;
        let b = CalibrationBlock::new(shared, n * 8)?;
        let out = CalibrationBlock::new(shared, n * 8)?;

        // Bandwidth, after a copy each way that allocates the staging chunks.
        let queue = Queue::Compute;
        let mut host = vec![1u8; BANDWIDTH_BYTES];
        shared.bind()?;
        self.copy_in(queue, &host, a.ptr)?;
        sync()?;
        self.copy_out(queue, a.ptr, &mut host)?;
        let mut up = Vec::with_capacity(BANDWIDTH_REPEATS);
        let mut down = Vec::with_capacity(BANDWIDTH_REPEATS);
        for _ in 0..BANDWIDTH_REPEATS {
            let t = Instant::now();
            self.copy_in(queue, &host, a.ptr)?;
            sync()?;
            up.push(BANDWIDTH_BYTES as f64 / seconds_since(t));
        }
        for _ in 0..BANDWIDTH_REPEATS {
            let t = Instant::now();
            self.copy_out(queue, a.ptr, &mut host)?;
            down.push(BANDWIDTH_BYTES as f64 / seconds_since(t));
        }
        let up = median(&up).unwrap_or(f64::NAN);
        let down = median(&down).unwrap_or(f64::NAN);
        let link_bytes_per_s = 2.0 / (1.0 / up + 1.0 / down);
        tracing::debug!(
            "{}: {:.1} GB/s up, {:.1} GB/s down",
            self.name,
            up / 1e9,
            down / 1e9
        );

        // Latency: small uploads, each waited for.
        let mut latency = Vec::with_capacity(LATENCY_REPEATS);
        for _ in 0..LATENCY_REPEATS {
            let t = Instant::now();
            self.copy_in(queue, &host[..LATENCY_BYTES], a.ptr)?;
            sync()?;
            latency.push(seconds_since(t));
        }

        // Launch overhead: the kernel on one element (the first launch loads the module).
        let stream = shared.stream(queue).cu_stream();
        for block in [&a, &b] {
            // SAFETY: `block` holds `n * 8` bytes of device memory allocated above.
            unsafe { driver::memset_d8_async(block.ptr, 0, n * 8, stream) }
                .map_err(|e| gpu_err("clearing the cost calibration's inputs", e))?;
        }
        let launch = |elements: usize| {
            let params = vec![
                Param::U64(elements as u64),
                Param::U64(a.ptr),
                Param::U64(b.ptr),
                Param::U64(out.ptr),
            ];
            self.launch_params(
                queue,
                &CALIBRATION_KERNELS,
                CALIBRATION_KERNEL,
                elements,
                params,
                LaunchShape::Elementwise,
            )
        };
        launch(1)?;
        sync()?;
        let mut launches = Vec::with_capacity(LAUNCH_REPEATS);
        for _ in 0..LAUNCH_REPEATS {
            let t = Instant::now();
            launch(1)?;
            sync()?;
            launches.push(seconds_since(t));
        }
        let launch_s = median(&launches).unwrap_or(f64::NAN);

        // Throughput, after a warm-up launch.
        launch(n)?;
        sync()?;
        let mut kernel = Vec::with_capacity(THROUGHPUT_REPEATS);
        for _ in 0..THROUGHPUT_REPEATS {
            let t = Instant::now();
            launch(n)?;
            sync()?;
            kernel.push(seconds_since(t));
        }
        let kernel_s = median(&kernel).unwrap_or(f64::NAN);
        let compute_s = (kernel_s - launch_s).max(kernel_s / 2.0);

        let costs = DeviceCosts {
            link_bytes_per_s,
            link_latency_s: median(&latency).unwrap_or(f64::NAN),
            launch_s,
            elements_per_s: n as f64 / compute_s,
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
            Err(Error::Gpu(format!(
                "the cost calibration measured nonsense: {costs:?}"
            )))
        }
    }
}

fn unavailable(reason: GpuUnavailable) -> Error {
    tracing::info!("no GPU: {reason}; running on the CPU");
    Error::GpuUnavailable(reason.to_string())
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // Let queued work on every stream finish before the modules it uses go away (the
        // staging memory and cached blocks go with the shared state, after their fences).
        let _ = self
            .shared
            .synchronize("synchronizing before closing the device");
    }
}

/// One kernel parameter's value, kept alive (and in place) until the launch call returns.
enum Param {
    U64(u64),
    F32(f32),
    F64(f64),
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
        lock(&self.shared.state).pool.free_memory(driver_free)
    }

    fn alloc_on(&self, queue: Queue, bytes: usize) -> Result<DeviceBuffer> {
        let mut state = lock(&self.shared.state);
        let Some(class) = SizeClassPool::<()>::class_size(bytes) else {
            return Err(Error::DeviceOutOfMemory {
                requested: bytes,
                free: state.pool.free_memory(self.driver_free()),
            });
        };
        let ptr = match state.pool.plan(class) {
            AllocPlan::OverBudget { free } => {
                return Err(Error::DeviceOutOfMemory {
                    requested: bytes,
                    free,
                })
            }
            AllocPlan::Reuse => {
                // A block that needs no wait on `queue`, else the newest.
                let mut block = state
                    .pool
                    .take_preferring(class, |b| b.ready_for(queue))
                    .expect("the plan saw a cached block");
                // The block's earlier uses on other queues come first, on the device.
                if let Err(e) = self
                    .shared
                    .bind()
                    .and_then(|()| self.shared.order_reuse(queue, &mut block))
                {
                    state.pool.give_back(class, block);
                    return Err(e);
                }
                block.ptr
            }
            plan => {
                if plan == AllocPlan::DrainThenFresh {
                    self.shared.release_cached(&mut state)?;
                }
                // A fresh block: no work has used it.
                let ptr = self.driver_alloc(&mut state, class, bytes)?;
                state.pool.add_fresh(class);
                ptr
            }
        };
        state.live_requested += bytes;
        let now = state.live_requested as u64;
        state.stats.peak_bytes = state.stats.peak_bytes.max(now);
        Ok(DeviceBuffer {
            bytes,
            raw: Box::new(CudaAlloc {
                ptr,
                class,
                bytes,
                shared: self.shared.clone(),
                uses: Mutex::new(Uses {
                    queues: QueueMask::of(queue),
                    last: Default::default(),
                }),
            }),
        })
    }

    fn upload_on(&self, queue: Queue, src: &[u8], dst: &DeviceBuffer) -> Result<()> {
        let alloc = self.alloc_of(dst)?;
        check_range("upload", 0, src.len(), alloc.bytes)?;
        if !src.is_empty() {
            alloc.touch(queue);
            self.shared.bind()?;
            self.copy_in(queue, src, alloc.ptr)?;
            self.shared.mark_used(queue, &[alloc]);
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
        self.shared.mark_used(queue, &buffers);
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
        self.shared.bind()?;
        // SAFETY: both ranges lie in live allocations of this device (checked above) and do
        // not overlap (different blocks); the stream orders the copy after earlier work on
        // `queue`, and the caller orders it after other queues' work with events (the trait's
        // rules); both blocks are marked as used on `queue`, so their reuse waits for it.
        unsafe {
            driver::memcpy_dtod_async(
                to.ptr + dst_offset as u64,
                from.ptr + src_offset as u64,
                bytes,
                self.shared.stream(queue).cu_stream(),
            )
        }
        .map_err(|e| gpu_err(format_args!("copying {bytes} bytes on the device"), e))?;
        self.shared.mark_used(queue, &[from, to]);
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
        self.shared.bind()?;
        let download = self.start_copy_out(queue, alloc.ptr, bytes)?;
        if bytes > 0 {
            self.shared.mark_used(queue, &[alloc]);
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
            Error::Gpu(format!(
                "a download of another device was given to {}",
                self.name()
            ))
        })?;
        if !Arc::ptr_eq(&download.shared, &self.shared) {
            return Err(Error::Gpu(format!(
                "a download of another CUDA device was given to {}",
                self.name()
            )));
        }
        if dst.len() != bytes {
            return Err(Error::Gpu(format!(
                "a download of {bytes} bytes finished into {} bytes",
                dst.len()
            )));
        }
        self.shared.bind()?;
        self.finish_copy_out(&mut download, dst)
        // `download` drops here: its chunks go back to the staging pool.
    }

    fn record(&self, queue: Queue) -> Result<Event> {
        self.shared.bind()?;
        let event = self.shared.record_event(queue)?;
        Ok(Event {
            raw: Box::new(CudaFence {
                event: Some(event),
                shared: self.shared.clone(),
            }),
        })
    }

    fn wait(&self, queue: Queue, event: &Event) -> Result<()> {
        let event = self.fence_of(event)?;
        self.shared.stream(queue).wait(event).map_err(|e| {
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
        self.shared.synchronize("synchronizing the device")
    }

    fn stats(&self) -> TransferStats {
        lock(&self.shared.state).stats
    }

    /// Calibrated on first call: read from the cost cache when it has an entry for this device
    /// model and driver (unless `BACH_COST_CACHE=off`), else measured by short micro-benchmarks
    /// (well under a second; see [`CudaDevice::recalibrate`]) and written to the cache. Later
    /// calls return the same figures. When measuring fails: a warning, and the typical figures
    /// of [`DeviceCosts::default`]. Calibration is not counted in [`stats`](Device::stats).
    fn costs(&self) -> DeviceCosts {
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
}

#[cfg(test)]
mod tests {
    //! Tests that need no GPU run everywhere (the NVRTC ones skip without NVRTC unless
    //! `BACH_REQUIRE_NVRTC=1`). Tests named `gpu_*` need a CUDA device: without one they print
    //! why and pass, unless `BACH_REQUIRE_GPU=1`, which makes them fail. On a GPU machine:
    //! `BACH_REQUIRE_GPU=1 cargo test -p bach-runtime --release -- device::cuda::tests::gpu_`.

    use super::*;
    use crate::cuda::discovery::nvrtc_present;

    const NUMPY_CU: KernelSource = KernelSource {
        name: "numpy.cu",
        code: include_str!("../../../annotated-libs/kernels/numpy.cu"),
    };
    const MIB: usize = 1 << 20;

    type Pool = SizeClassPool<u64>;

    // ---- size classes and the free lists -------------------------------------------------------

    #[test]
    fn size_classes_waste_at_most_a_quarter_or_one_granule() {
        assert_eq!(Pool::class_size(0), Some(MIN_CLASS));
        assert_eq!(Pool::class_size(1), Some(MIN_CLASS));
        assert_eq!(Pool::class_size(512), Some(512));
        assert_eq!(Pool::class_size(513), Some(640));
        assert_eq!(Pool::class_size(1024), Some(1024));
        assert_eq!(Pool::class_size(1025), Some(1280));
        assert_eq!(Pool::class_size(1537), Some(1792));
        assert_eq!(Pool::class_size(1793), Some(2048));
        assert_eq!(Pool::class_size(LARGE_GRANULE), Some(LARGE_GRANULE));
        assert_eq!(Pool::class_size(LARGE_GRANULE + 1), Some(2 * LARGE_GRANULE));
        assert_eq!(Pool::class_size(8_000_000), Some(8 * MIB));
        assert_eq!(Pool::class_size(usize::MAX), None);
        let mut bytes = 1;
        while bytes < 1 << 34 {
            for b in [bytes, bytes + 1, bytes * 3 / 2 + 7] {
                let class = Pool::class_size(b).unwrap();
                assert!(class >= b, "{b} -> {class}");
                assert!(
                    class <= (b + b / 4).max(MIN_CLASS) || class - b < LARGE_GRANULE,
                    "{b} -> {class}"
                );
                assert_eq!(
                    Pool::class_size(class),
                    Some(class),
                    "a class is its own class"
                );
            }
            bytes *= 2;
        }
    }

    #[test]
    fn the_pool_prefers_blocks_that_need_no_wait() {
        let mut pool = SizeClassPool::<(u64, bool)>::new();
        let class = SizeClassPool::<()>::class_size(1 << 20).unwrap();
        for (ptr, ready) in [(1, true), (2, false), (3, true), (4, false)] {
            pool.add_fresh(class);
            pool.give_back(class, (ptr, ready));
        }
        // The newest ready block, then the next, then the newest of the rest.
        assert_eq!(pool.take_preferring(class, |b| b.1), Some((3, true)));
        assert_eq!(pool.take_preferring(class, |b| b.1), Some((1, true)));
        assert_eq!(pool.take_preferring(class, |b| b.1), Some((4, false)));
        assert_eq!(pool.take_preferring(class, |b| b.1), Some((2, false)));
        assert_eq!(pool.take_preferring(class, |b| b.1), None);
        assert_eq!(pool.reuses(), 4);
        assert_eq!(pool.idle_bytes(), 0);
        assert_eq!(pool.live_bytes(), 4 * class);
    }

    #[test]
    fn the_pool_reuses_blocks_and_does_not_grow_over_10000_cycles() {
        // A driver stand-in: hands out numbered blocks and counts what is outstanding.
        let mut pool = Pool::new();
        let mut next_block = 0u64;
        let mut from_driver = 0usize;
        let mut alloc = |pool: &mut Pool, bytes: usize| -> (usize, u64) {
            let class = Pool::class_size(bytes).unwrap();
            match pool.plan(class) {
                AllocPlan::Reuse => (class, pool.take(class).unwrap()),
                AllocPlan::Fresh => {
                    pool.add_fresh(class);
                    from_driver += class;
                    next_block += 1;
                    (class, next_block)
                }
                other => panic!("no budget, yet {other:?}"),
            }
        };
        // An evaluate: three batch-sized buffers, a tail batch, and an output, all freed.
        let sizes = [8_000_000, 8_000_000, 8_000_000, 1_234_567, 800];
        let mut reserved_after_first = 0;
        for cycle in 0..10_000 {
            let held: Vec<(usize, u64)> = sizes.iter().map(|&b| alloc(&mut pool, b)).collect();
            let distinct: std::collections::HashSet<u64> = held.iter().map(|&(_, b)| b).collect();
            assert_eq!(distinct.len(), held.len(), "a block is handed out twice");
            for (class, block) in held.into_iter().rev() {
                pool.give_back(class, block);
            }
            assert_eq!(pool.live_bytes(), 0);
            if cycle == 0 {
                reserved_after_first = pool.reserved_bytes();
            }
            assert_eq!(
                pool.reserved_bytes(),
                reserved_after_first,
                "the cache grew in cycle {cycle}"
            );
        }
        assert_eq!(pool.fresh_allocations(), sizes.len() as u64);
        assert_eq!(
            pool.reuses(),
            10_000 * sizes.len() as u64 - sizes.len() as u64
        );
        assert_eq!(from_driver, pool.reserved_bytes());
        assert_eq!(pool.idle_blocks(), sizes.len());
        let drained = pool.drain();
        assert_eq!(drained.iter().map(|&(c, _)| c).sum::<usize>(), from_driver);
        assert_eq!(
            (pool.idle_bytes(), pool.idle_blocks(), pool.reserved_bytes()),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_budget_bounds_live_and_cached_bytes() {
        let mut pool = Pool::new();
        pool.set_budget(Some(10 * MIB));
        let four = Pool::class_size(4 * MIB).unwrap();
        assert_eq!(pool.plan(four), AllocPlan::Fresh);
        pool.add_fresh(four);
        pool.add_fresh(four);
        assert_eq!(pool.free_memory(usize::MAX), 2 * MIB);
        assert_eq!(
            pool.free_memory(MIB),
            MIB,
            "the driver's free memory caps it too"
        );
        assert_eq!(pool.plan(four), AllocPlan::OverBudget { free: 2 * MIB });
        // Freed blocks count as free (reusable) and are reused.
        pool.give_back(four, 1);
        assert_eq!(pool.free_memory(0), 4 * MIB);
        assert_eq!(pool.free_memory(usize::MAX), 6 * MIB);
        assert_eq!(pool.plan(four), AllocPlan::Reuse);
        // Another class fits in the budget only without the cached block.
        let six = Pool::class_size(6 * MIB).unwrap();
        assert_eq!(pool.plan(six), AllocPlan::DrainThenFresh);
        assert_eq!(pool.drain(), vec![(four, 1)]);
        assert_eq!(pool.plan(six), AllocPlan::Fresh);
        pool.set_budget(None);
        assert_eq!(pool.plan(64 * MIB), AllocPlan::Fresh);
        assert_eq!(pool.free_memory(123), 123);
    }

    #[test]
    fn a_forgotten_block_leaves_the_live_bytes() {
        let mut pool = Pool::new();
        let class = Pool::class_size(MIB).unwrap();
        pool.add_fresh(class);
        pool.add_fresh(class);
        pool.forget(class);
        assert_eq!((pool.live_bytes(), pool.idle_bytes()), (class, 0));
        assert_eq!(pool.plan(class), AllocPlan::Fresh, "not cached either");
    }

    // ---- queues, fences and staging (pure parts) -----------------------------------------------

    #[test]
    fn queue_masks_record_the_queues_that_used_a_buffer() {
        assert!(QueueMask::EMPTY.is_empty());
        assert_eq!(QueueMask::EMPTY.queues().count(), 0);
        for q in Queue::ALL {
            let m = QueueMask::of(q);
            assert!(m.contains(q) && !m.is_empty());
            assert_eq!(m.queues().collect::<Vec<_>>(), vec![q]);
            assert_eq!(QueueMask::from_bits(m.bits()), m);
            for other in Queue::ALL.into_iter().filter(|o| *o != q) {
                assert!(!m.contains(other), "{q:?} mask contains {other:?}");
            }
        }
        let m = QueueMask::of(Queue::Download).with(Queue::Upload);
        assert_eq!(
            m.queues().collect::<Vec<_>>(),
            vec![Queue::Upload, Queue::Download],
            "index order"
        );
        assert_eq!(m.with(Queue::Upload), m, "idempotent");
        let all = Queue::ALL
            .into_iter()
            .fold(QueueMask::EMPTY, QueueMask::with);
        assert_eq!(all.bits(), 0b111);
        assert_eq!(all.queues().collect::<Vec<_>>(), Queue::ALL.to_vec());
        assert_eq!(QueueMask::from_bits(0xFF), all, "unknown bits are dropped");
    }

    #[test]
    fn staging_chunks_cover_a_transfer_in_order() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_ranges(0).count(), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(STAGING_CHUNK), 1);
        assert_eq!(chunk_count(STAGING_CHUNK + 1), 2);
        assert_eq!(chunk_count(20 * MIB + 3), 3);
        for bytes in [
            1,
            1000,
            STAGING_CHUNK - 1,
            STAGING_CHUNK,
            STAGING_CHUNK + 1,
            3 * STAGING_CHUNK,
            20 * MIB + 3,
        ] {
            let ranges: Vec<(usize, usize)> = chunk_ranges(bytes).collect();
            assert_eq!(ranges.len(), chunk_count(bytes), "{bytes}");
            let mut next = 0;
            for &(offset, len) in &ranges {
                assert_eq!(offset, next, "{bytes}: contiguous");
                assert!(len > 0 && len <= STAGING_CHUNK, "{bytes}: {len}");
                next = offset + len;
            }
            assert_eq!(next, bytes, "{bytes}: covered");
        }
    }

    #[test]
    fn host_copies_are_exact_serial_and_parallel() {
        for len in [
            0,
            1,
            PARALLEL_COPY_MIN - 1,
            PARALLEL_COPY_MIN,
            PARALLEL_COPY_MIN + PARALLEL_COPY_PIECE / 2 + 3,
            STAGING_CHUNK,
        ] {
            let src: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4099) as u8).collect();
            let mut dst = vec![0xAAu8; len];
            copy_bytes(&mut dst, &src);
            assert!(dst == src, "copy of {len} bytes");
        }
    }

    #[test]
    #[should_panic(expected = "unequal lengths")]
    fn host_copies_of_unequal_lengths_panic() {
        copy_bytes(&mut [0u8; 3], &[1u8; 4]);
    }

    #[test]
    fn the_chunk_pool_takes_ready_chunks_then_grows_then_waits() {
        let mut pool = ChunkPool::<u32>::new(3);
        let never = |_: &u32| false;
        assert_eq!(pool.take(never), ChunkTake::Allocate);
        assert_eq!(pool.take(never), ChunkTake::Allocate);
        assert_eq!(pool.take(never), ChunkTake::Allocate);
        assert_eq!((pool.chunks(), pool.idle_chunks()), (3, 0));
        // Full, nothing idle: a chunk outside the pool.
        assert_eq!(pool.take(never), ChunkTake::Overflow);
        assert_eq!(pool.chunks(), 3);
        for c in [1, 2, 3] {
            pool.give_back(c);
        }
        // The oldest ready one, not merely the oldest.
        assert_eq!(pool.take(|c| *c >= 2), ChunkTake::Ready(2));
        assert_eq!(pool.take(|_| true), ChunkTake::Ready(1));
        // None ready and full: wait for the oldest idle one.
        pool.give_back(1);
        assert_eq!(pool.take(never), ChunkTake::WaitFor(3));
        assert_eq!((pool.chunks(), pool.idle_chunks()), (3, 1));
        // A failed allocation does not count; a forgotten chunk neither.
        let mut pool = ChunkPool::<u32>::new(2);
        assert_eq!(pool.take(never), ChunkTake::Allocate);
        pool.allocation_failed();
        assert_eq!(pool.chunks(), 0);
        assert_eq!(pool.take(never), ChunkTake::Allocate);
        pool.forget();
        assert_eq!(pool.chunks(), 0);
        assert_eq!(pool.take(never), ChunkTake::Allocate);
        pool.give_back(7);
        assert_eq!(pool.drain(), vec![7]);
        assert_eq!((pool.chunks(), pool.idle_chunks()), (0, 0));
    }

    #[test]
    fn the_chunk_pool_does_not_grow_over_1000_pipelined_cycles() {
        // A device stand-in: chunk `c` is busy until the device clock reaches `busy[c]`; each
        // copy takes one tick, and the clock only advances when the host waits (for a chunk, or
        // to finish a download). Each cycle uploads two chunks and starts a download of three;
        // downloads are finished two cycles later, as a pipelined executor does.
        let mut pool = ChunkPool::<usize>::new(STAGING_MAX_CHUNKS);
        let mut busy: Vec<u64> = Vec::new();
        let mut now = 0u64;
        let mut enqueued = 0u64;
        let mut take = |pool: &mut ChunkPool<usize>, busy: &mut Vec<u64>, now: &mut u64| {
            let current = *now;
            let c = match pool.take(|&c| busy[c] <= current) {
                ChunkTake::Ready(c) => c,
                ChunkTake::Allocate => {
                    busy.push(0);
                    busy.len() - 1
                }
                ChunkTake::WaitFor(c) => {
                    *now = (*now).max(busy[c]);
                    c
                }
                ChunkTake::Overflow => panic!("the pool is never all held"),
            };
            assert!(busy[c] <= *now, "a chunk handed out while its copy runs");
            enqueued += 1;
            busy[c] = enqueued;
            c
        };
        let mut in_flight: VecDeque<Vec<usize>> = VecDeque::new();
        let mut held_after_warmup = 0;
        for cycle in 0..1000 {
            for _ in 0..2 {
                let c = take(&mut pool, &mut busy, &mut now);
                pool.give_back(c);
            }
            in_flight.push_back(
                (0..3)
                    .map(|_| take(&mut pool, &mut busy, &mut now))
                    .collect(),
            );
            if in_flight.len() > 2 {
                for c in in_flight.pop_front().unwrap() {
                    now = now.max(busy[c]);
                    pool.give_back(c);
                }
            }
            if cycle == 10 {
                held_after_warmup = pool.chunks();
            }
            assert!(pool.chunks() <= STAGING_MAX_CHUNKS);
        }
        assert_eq!(
            pool.chunks(),
            held_after_warmup,
            "the pool grew after warming up"
        );
        for c in in_flight.into_iter().flatten() {
            pool.give_back(c);
        }
        assert_eq!(pool.idle_chunks(), pool.chunks(), "every chunk came back");
    }

    // ---- launch shape, names and messages ------------------------------------------------------

    #[test]
    fn elementwise_launches_cover_n_with_at_most_32_blocks_per_sm() {
        assert_eq!(elementwise_blocks(0, 132), 1);
        assert_eq!(elementwise_blocks(1, 132), 1);
        assert_eq!(elementwise_blocks(256, 132), 1);
        assert_eq!(elementwise_blocks(257, 132), 2);
        assert_eq!(elementwise_blocks(1_000_000, 132), 3907);
        assert_eq!(elementwise_blocks(100_000_000, 132), 132 * 32);
        assert_eq!(elementwise_blocks(100_000_000, 0), 32);
    }

    #[test]
    fn error_messages_carry_their_context() {
        assert_eq!(
            kernel_not_found("add_f64", "numpy.cu"),
            Error::Gpu("kernel `add_f64` not found in numpy.cu".into())
        );
        let oom = DriverError(driver_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        let Error::Gpu(text) = gpu_err("allocating 4096 bytes", oom) else {
            panic!("a driver error is Error::Gpu")
        };
        assert!(
            text.starts_with("allocating 4096 bytes: CUDA_ERROR_OUT_OF_MEMORY"),
            "{text}"
        );
        assert_eq!(
            from_cuda(CudaError::Unavailable(GpuUnavailable::NoNvrtc)),
            Error::GpuUnavailable(GpuUnavailable::NoNvrtc.to_string())
        );
    }

    // ---- cost calibration: the helpers and the cache file ----------------------------------------

    #[test]
    fn the_median_ignores_order_and_non_finite_values() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, f64::INFINITY]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, 9.0, f64::NAN, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[2.0, f64::NEG_INFINITY, 1.0, 100.0]), Some(2.0));
        assert_eq!(median(&[f64::MAX, f64::MAX]), Some(f64::MAX), "no overflow");
    }

    #[test]
    fn cost_cache_file_names_name_the_device_and_driver() {
        assert_eq!(
            cost_cache_file_name("NVIDIA H100 80GB HBM3", (9, 0), (13, 0)),
            "NVIDIA_H100_80GB_HBM3-cc90-driver13.0.txt"
        );
        assert_eq!(
            cost_cache_file_name("NVIDIA A100-SXM4-40GB", (8, 0), (12, 4)),
            "NVIDIA_A100-SXM4-40GB-cc80-driver12.4.txt"
        );
    }

    #[test]
    fn the_cost_cache_format_roundtrips() {
        let measured = DeviceCosts {
            link_bytes_per_s: 25.123456789e9,
            link_latency_s: 1.0 / 98_765.0,
            launch_s: 4.2e-6,
            elements_per_s: 1.4e11 / 3.0,
        };
        for costs in [measured, DeviceCosts::default()] {
            let text = format_costs(&costs);
            assert_eq!(text.lines().count(), 4, "{text}");
            for (line, key) in text.lines().zip(COST_KEYS) {
                assert_eq!(line.split_whitespace().next(), Some(key), "{text}");
            }
            assert_eq!(
                parse_costs(&text),
                Ok(costs),
                "exactly, bit for bit: {text}"
            );
        }
        // Any order, comments, blank lines, extra spaces, CRLF, other spellings of numbers.
        let text = "# device costs\r\n\nlaunch_s   5e-6\r\nelements_per_s 50000000000\n  link_latency_s\t0.00001\nlink_bytes_per_s 2e10";
        assert_eq!(parse_costs(text), Ok(DeviceCosts::default()));
    }

    #[test]
    fn the_cost_cache_parser_rejects_garbage() {
        let good = format_costs(&DeviceCosts::default());
        let without = |key: &str| -> String {
            good.lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let garbage = [
            String::new(),
            "garbage".to_string(),
            "\u{0}\u{1}\u{fffd}".to_string(),
            without("launch_s"),
            format!("{good}launch_s 5e-6\n"),
            format!("{good}warp_size 32\n"),
            good.replace("launch_s 5e-6", "launch_s"),
            good.replace("launch_s 5e-6", "launch_s 5e-6 us"),
            good.replace("launch_s 5e-6", "launch_s five"),
            good.replace("launch_s 5e-6", "launch_s NaN"),
            good.replace("launch_s 5e-6", "launch_s inf"),
            good.replace("launch_s 5e-6", "launch_s 0"),
            good.replace("launch_s 5e-6", "launch_s -5e-6"),
            good.replace("launch_s 5e-6", "launch_s=5e-6"),
            good.replace("launch_s", "LAUNCH_S"),
        ];
        for text in &garbage {
            assert!(parse_costs(text).is_err(), "accepted {text:?}");
        }
        assert_eq!(
            parse_costs(&without("elements_per_s")),
            Err("`elements_per_s` is missing".to_string())
        );
        assert!(parse_costs(&good.replace("launch_s 5e-6", "launch_s 0"))
            .unwrap_err()
            .contains("line 3"));
    }

    #[test]
    fn the_cost_cache_is_written_atomically() {
        let dir = std::env::temp_dir().join(format!("bach-cost-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("costs").join(cost_cache_file_name(
            "NVIDIA H100 80GB HBM3",
            (9, 0),
            (13, 0),
        ));
        let first = DeviceCosts::default();
        write_atomically(&path, &format_costs(&first)).unwrap();
        assert_eq!(
            parse_costs(&std::fs::read_to_string(&path).unwrap()),
            Ok(first)
        );
        let second = DeviceCosts {
            launch_s: 7e-6,
            ..first
        };
        write_atomically(&path, &format_costs(&second)).unwrap();
        assert_eq!(
            parse_costs(&std::fs::read_to_string(&path).unwrap()),
            Ok(second)
        );
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file left: {entries:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    // ---- opening without a GPU -----------------------------------------------------------------

    #[test]
    fn open_without_a_gpu_is_gpu_unavailable_not_a_panic() {
        match discovery::availability() {
            Err(reason) => {
                let err = CudaDevice::open(0).unwrap_err();
                assert_eq!(err, Error::GpuUnavailable(reason.to_string()));
                assert!(err.to_string().starts_with("GPU unavailable: "), "{err}");
                eprintln!("no GPU here: {err}");
            }
            Ok(devices) => {
                let missing = CudaDevice::open(devices.len()).unwrap_err();
                assert!(matches!(missing, Error::GpuUnavailable(_)), "{missing:?}");
            }
        }
    }

    // ---- compiling through the launch path (NVRTC, no GPU) -------------------------------------

    /// `true` when NVRTC is loadable; otherwise prints why and returns `false`, or panics when
    /// `BACH_REQUIRE_NVRTC=1`.
    fn nvrtc_or_skip() -> bool {
        if nvrtc_present() {
            return true;
        }
        if std::env::var("BACH_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("BACH_REQUIRE_NVRTC=1 but {}", GpuUnavailable::NoNvrtc);
        }
        eprintln!("skipping: {}", GpuUnavailable::NoNvrtc);
        false
    }

    fn temp_cache(tag: &str) -> (KernelCache, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("bach-cuda-device-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (KernelCache::new(&dir), dir)
    }

    /// The kernel names in PTX text (`.entry name(`).
    fn ptx_entries(ptx: &str) -> Vec<String> {
        ptx.lines()
            .filter_map(|l| l.split(".entry ").nth(1))
            .map(|rest| rest.split('(').next().unwrap_or("").trim().to_string())
            .collect()
    }

    /// Whether `name` is a NUL-terminated string in `image` (an ELF string table entry).
    fn has_symbol(image: &[u8], name: &str) -> bool {
        let needle: Vec<u8> = [&[0u8][..], name.as_bytes(), &[0u8][..]].concat();
        image.windows(needle.len()).any(|w| w == needle.as_slice())
    }

    #[test]
    fn every_numpy_cu_kernel_compiles_through_the_launch_path() {
        if !nvrtc_or_skip() {
            return;
        }
        let (disk, dir) = temp_cache("numpy");
        // The names every module must define: the PTX entries of the whole source.
        let ptx = compile::compile_for_target(
            &compile::KernelSource::new(NUMPY_CU.name, NUMPY_CU.code),
            compile::Target::ptx(ComputeCapability::new(8, 0)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let names = ptx_entries(ptx.ptx().unwrap());
        assert!(
            names.len() >= 100,
            "only {} kernels in numpy.cu",
            names.len()
        );
        for expected in [
            "add_f64",
            "add_scalar_f32",
            "where_f64",
            "sum_f64",
            "logical_not_bool",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }

        for cc in [ComputeCapability::new(8, 0), ComputeCapability::new(9, 0)] {
            let cache = ModuleCache::<CompiledModule>::new(cc, Some(disk.clone()));
            let mut loads = 0;
            let module = cache
                .get(&NUMPY_CU, |m| {
                    loads += 1;
                    Ok(m.clone())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(module.target, compile::Target::cubin(cc));
            assert_eq!(&module.code[..4], b"\x7fELF");
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !has_symbol(&module.code, n))
                .collect();
            assert!(
                missing.is_empty(),
                "kernels missing from the sm_{} CUBIN: {missing:?}",
                cc.arch()
            );
            // Cached per source: no second compilation or load, also for a copy of the source
            // at another address.
            let again = cache.get(&NUMPY_CU, |_| panic!("loaded twice")).unwrap();
            assert!(Arc::ptr_eq(&module, &again));
            let copy: &'static str = Box::leak(NUMPY_CU.code.to_string().into_boxed_str());
            let moved = KernelSource {
                name: "numpy.cu",
                code: copy,
            };
            let third = cache.get(&moved, |_| panic!("loaded twice")).unwrap();
            assert!(Arc::ptr_eq(&module, &third));
            assert_eq!(loads, 1);
        }
        // A new cache (a new device) reads the compiled code from disk.
        let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(9, 0), Some(disk));
        let module = cache.get(&NUMPY_CU, |m| Ok(m.clone())).unwrap();
        assert!(module.from_cache);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_calibration_kernel_compiles_through_the_launch_path() {
        if !nvrtc_or_skip() {
            return;
        }
        for cc in [ComputeCapability::new(8, 0), ComputeCapability::new(99, 0)] {
            let cache = ModuleCache::<CompiledModule>::new(cc, None);
            let module = cache
                .get(&CALIBRATION_KERNELS, |m| Ok(m.clone()))
                .unwrap_or_else(|e| panic!("{e}"));
            match module.ptx() {
                Some(ptx) => assert_eq!(ptx_entries(ptx), vec![CALIBRATION_KERNEL.to_string()]),
                None => assert!(has_symbol(&module.code, CALIBRATION_KERNEL)),
            }
        }
    }

    #[test]
    fn a_device_newer_than_nvrtc_gets_ptx_through_the_launch_path() {
        if !nvrtc_or_skip() {
            return;
        }
        let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(99, 0), None);
        let module = cache
            .get(&NUMPY_CU, |m| Ok(m.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(module.target.kind, CodeKind::Ptx);
        assert!(module.ptx().unwrap().contains(".entry add_f64("));
    }

    #[test]
    fn a_broken_source_fails_once_with_the_nvrtc_log() {
        if !nvrtc_or_skip() {
            return;
        }
        const BROKEN: KernelSource = KernelSource {
            name: "broken.cu",
            code: "extern \"C\" __global__ void k(unsigned long long n, float* x) { x[0] = undefined_thing; }",
        };
        let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(9, 0), None);
        let err = cache
            .get(&BROKEN, |_| panic!("nothing to load"))
            .unwrap_err();
        let Error::Gpu(text) = &err else {
            panic!("expected Error::Gpu, got {err:?}")
        };
        assert!(
            text.contains("broken.cu") && text.contains("undefined_thing"),
            "{text}"
        );
        assert!(text.contains("NVRTC log"), "{text}");
        // Kept: the same error again, without recompiling.
        let start = std::time::Instant::now();
        assert_eq!(
            cache
                .get(&BROKEN, |_| panic!("nothing to load"))
                .unwrap_err(),
            err
        );
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn without_nvrtc_the_launch_path_reports_gpu_unavailable() {
        if nvrtc_present() {
            return;
        }
        let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(9, 0), None);
        let err = cache.get(&NUMPY_CU, |m| Ok(m.clone())).unwrap_err();
        assert_eq!(
            err,
            Error::GpuUnavailable(GpuUnavailable::NoNvrtc.to_string())
        );
    }

    // ---- on a GPU ----------------------------------------------------------------------------------

    /// The first CUDA device, or `None` (printing why) when there is none; panics instead when
    /// `BACH_REQUIRE_GPU=1`.
    fn gpu_or_skip() -> Option<(MutexGuard<'static, ()>, Arc<CudaDevice>)> {
        // One GPU test at a time, so that memory measurements see only their own allocations.
        static GPU_TESTS: Mutex<()> = Mutex::new(());
        let guard = lock(&GPU_TESTS);
        match CudaDevice::open(0) {
            Ok(device) => Some((guard, device)),
            Err(e) => {
                if std::env::var("BACH_REQUIRE_GPU").as_deref() == Ok("1") {
                    panic!("BACH_REQUIRE_GPU=1 but {e}");
                }
                eprintln!("skipping (needs a CUDA device): {e}");
                None
            }
        }
    }

    fn no_emulation(_: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        unreachable!("a CUDA device runs compiled kernels")
    }

    fn f64_bytes(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    fn f64s(bytes: &[u8]) -> Vec<f64> {
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn upload_f64(device: &CudaDevice, v: &[f64]) -> DeviceBuffer {
        let buf = device.alloc(v.len() * 8).unwrap();
        device.upload(&f64_bytes(v), &buf).unwrap();
        buf
    }

    fn download_f64(device: &CudaDevice, buf: &DeviceBuffer, n: usize) -> Vec<f64> {
        let mut bytes = vec![0u8; n * 8];
        device.download(buf, &mut bytes).unwrap();
        f64s(&bytes)
    }

    fn launch(device: &CudaDevice, kernel: &str, n: usize, args: Vec<KernelArg<'_>>) -> Result<()> {
        launch_shaped(device, kernel, n, LaunchShape::Elementwise, args)
    }

    fn launch_shaped(
        device: &CudaDevice,
        kernel: &str,
        n: usize,
        shape: LaunchShape,
        args: Vec<KernelArg<'_>>,
    ) -> Result<()> {
        device.launch(&Launch {
            source: NUMPY_CU,
            kernel: kernel.to_string(),
            n,
            args,
            shape,
            reference: &no_emulation,
        })
    }

    #[test]
    fn gpu_alloc_upload_download_roundtrip() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        eprintln!("{}", device.name());
        assert!(device.free_memory() > 0);
        let before = device.stats();
        // Sizes around the staging chunk (8 MiB), odd ones, and several chunks.
        for bytes in [
            0,
            1,
            1000,
            4096,
            3 * MIB + 7,
            STAGING_CHUNK,
            STAGING_CHUNK + 1,
            20 * MIB + 3,
        ] {
            let data: Vec<u8> = (0..bytes).map(|i| (i * 7 + i / 251) as u8).collect();
            let buf = device.alloc(bytes).unwrap();
            assert_eq!(buf.len(), bytes);
            device.upload(&data, &buf).unwrap();
            let mut back = vec![0xAAu8; bytes];
            device.download(&buf, &mut back).unwrap();
            assert!(back == data, "roundtrip of {bytes} bytes");
            if bytes > 10 {
                let mut prefix = vec![0u8; 10];
                device.download(&buf, &mut prefix).unwrap();
                assert_eq!(prefix, data[..10]);
            }
        }
        let small = device.alloc(16).unwrap();
        assert!(matches!(
            device.upload(&[0u8; 17], &small),
            Err(Error::Gpu(_))
        ));
        assert!(matches!(
            device.download(&small, &mut [0u8; 17]),
            Err(Error::Gpu(_))
        ));
        let simulated = crate::device::SimulatedDevice::with_capacity(1024)
            .alloc(16)
            .unwrap();
        assert!(matches!(
            device.upload(&[0u8; 4], &simulated),
            Err(Error::Gpu(_))
        ));
        let stats = device.stats();
        assert_eq!(stats.uploads - before.uploads, 8);
        assert_eq!(stats.downloads - before.downloads, 8 + 6);
        assert!(stats.peak_bytes >= 20 * MIB as u64);
    }

    #[test]
    fn gpu_add_f64_on_1e6_elements_matches_the_cpu() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 1_000_000;
        let a: Vec<f64> = (0..n).map(|i| (i as f64).sin() * 1e3).collect();
        let b: Vec<f64> = (0..n).map(|i| 1.0 / (i as f64 + 0.5)).collect();
        let (da, db) = (upload_f64(&device, &a), upload_f64(&device, &b));
        let out = device.alloc(n * 8).unwrap();
        launch(
            &device,
            "add_f64",
            n,
            vec![KernelArg::In(&da), KernelArg::In(&db), KernelArg::Out(&out)],
        )
        .unwrap();
        let got = download_f64(&device, &out, n);
        let mismatches = (0..n)
            .filter(|&i| got[i].to_bits() != (a[i] + b[i]).to_bits())
            .count();
        assert_eq!(
            mismatches, 0,
            "add_f64 differs from the CPU in {mismatches} elements"
        );
        assert_eq!(device.stats().launches, 1);
    }

    #[test]
    fn gpu_scalar_arguments_and_f32_kernels() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 300_001;
        let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
        let da = device.alloc(n * 4).unwrap();
        device
            .upload(
                &a.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>(),
                &da,
            )
            .unwrap();
        let out = device.alloc(n * 4).unwrap();
        // out = 10 - a
        launch(
            &device,
            "scalar_subtract_f32",
            n,
            vec![
                KernelArg::In(&da),
                KernelArg::F32(10.0),
                KernelArg::Out(&out),
            ],
        )
        .unwrap();
        let mut bytes = vec![0u8; n * 4];
        device.download(&out, &mut bytes).unwrap();
        let got: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        for i in 0..n {
            assert_eq!(got[i], 10.0 - a[i], "element {i}");
        }
        // f64 scalar: out = a * 3
        let x: Vec<f64> = (0..n).map(|i| i as f64 - 7.5).collect();
        let dx = upload_f64(&device, &x);
        let out64 = device.alloc(n * 8).unwrap();
        launch(
            &device,
            "multiply_scalar_f64",
            n,
            vec![
                KernelArg::In(&dx),
                KernelArg::F64(3.0),
                KernelArg::Out(&out64),
            ],
        )
        .unwrap();
        let got = download_f64(&device, &out64, n);
        assert!((0..n).all(|i| got[i] == x[i] * 3.0));
    }

    #[test]
    fn gpu_sum_f64_writes_one_partial_per_output_entry() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 1_000_003;
        let a: Vec<f64> = (0..n).map(|i| (i % 1000) as f64).collect();
        let da = upload_f64(&device, &a);
        for partials in [1, 7, 1024] {
            let out = upload_f64(&device, &vec![f64::NAN; partials]);
            launch_shaped(
                &device,
                "sum_f64",
                n,
                LaunchShape::Reduction { partials },
                vec![KernelArg::In(&da), KernelArg::Out(&out)],
            )
            .unwrap();
            let got = download_f64(&device, &out, partials);
            assert!(
                got.iter().all(|p| p.is_finite()),
                "every partial written: {got:?}"
            );
            assert_eq!(
                got.iter().sum::<f64>(),
                a.iter().sum::<f64>(),
                "{partials} partials"
            );
        }
        let none = device.alloc(8).unwrap();
        assert!(matches!(
            launch_shaped(
                &device,
                "sum_f64",
                n,
                LaunchShape::Reduction { partials: 0 },
                vec![KernelArg::In(&da), KernelArg::Out(&none)]
            ),
            Err(Error::Gpu(_))
        ));
    }

    #[test]
    fn gpu_missing_kernel_is_an_error() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let buf = device.alloc(8).unwrap();
        let err = launch(
            &device,
            "add_f128",
            1,
            vec![KernelArg::In(&buf), KernelArg::Out(&buf)],
        )
        .unwrap_err();
        assert_eq!(
            err,
            Error::Gpu("kernel `add_f128` not found in numpy.cu".into())
        );
        // The device still works.
        launch(
            &device,
            "negative_f64",
            1,
            vec![KernelArg::In(&buf), KernelArg::Out(&buf)],
        )
        .unwrap();
        device.synchronize().unwrap();
    }

    #[test]
    fn gpu_the_allocator_reuses_buffers_over_10000_cycles() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 1 << 20;
        let first = device.allocator_stats();
        let mut free_after_first = 0;
        let mut reserved = None;
        for cycle in 0..10_000 {
            // An evaluate-sized batch: two inputs, an output, a tail-batch buffer.
            let a = device.alloc(n * 8).unwrap();
            let b = device.alloc(n * 8).unwrap();
            let out = device.alloc(n * 8).unwrap();
            let tail = device.alloc(12_345 * 8).unwrap();
            if cycle % 1000 == 0 {
                let x: Vec<f64> = (0..n).map(|i| (i + cycle) as f64).collect();
                device.upload(&f64_bytes(&x), &a).unwrap();
                device.upload(&f64_bytes(&x), &b).unwrap();
                launch(
                    &device,
                    "add_f64",
                    n,
                    vec![KernelArg::In(&a), KernelArg::In(&b), KernelArg::Out(&out)],
                )
                .unwrap();
                let got = download_f64(&device, &out, n);
                assert!((0..n).all(|i| got[i] == 2.0 * x[i]), "cycle {cycle}");
            }
            drop((a, b, out, tail));
            let s = device.allocator_stats();
            assert_eq!(s.live_bytes, first.live_bytes);
            let now = s.live_bytes + s.cached_bytes;
            assert_eq!(
                *reserved.get_or_insert(now),
                now,
                "the cache grew in cycle {cycle}"
            );
            if cycle == 0 {
                // After the module is loaded and the staging buffers exist.
                free_after_first = device.free_memory();
            }
        }
        let s = device.allocator_stats();
        assert!(
            s.driver_allocations - first.driver_allocations <= 4,
            "{s:?}"
        );
        assert!(s.reuses - first.reuses >= 4 * 9_999, "{s:?}");
        // The cached blocks count as free memory, and nothing leaked: free memory did not shrink.
        let slack = 16 * MIB; // other processes
        assert!(
            device.free_memory() + slack >= free_after_first,
            "{} < {free_after_first}",
            device.free_memory()
        );
        let freed = device.empty_cache().unwrap();
        assert_eq!(freed, s.cached_bytes);
        assert_eq!(device.allocator_stats().cached_blocks, 0);
    }

    #[test]
    fn gpu_a_reused_block_is_ordered_after_the_kernel_that_read_it() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 1 << 22;
        let outs: Vec<(f64, DeviceBuffer)> = (0..8)
            .map(|k| {
                let input = upload_f64(&device, &vec![k as f64; n]);
                let out = device.alloc(n * 8).unwrap();
                launch(
                    &device,
                    "square_f64",
                    n,
                    vec![KernelArg::In(&input), KernelArg::Out(&out)],
                )
                .unwrap();
                drop(input); // reused by the next iteration's upload, while the kernel may still run
                ((k * k) as f64, out)
            })
            .collect();
        for (expected, out) in &outs {
            assert!(
                download_f64(&device, out, n).iter().all(|x| x == expected),
                "{expected}"
            );
        }
    }

    #[test]
    fn gpu_the_memory_budget_is_enforced() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let device = device.with_memory_budget(64 * MIB);
        assert_eq!(device.memory_budget(), Some(64 * MIB));
        assert!(device.free_memory() <= 64 * MIB);
        let a = device.alloc(48 * MIB).unwrap();
        assert_eq!(device.free_memory(), 16 * MIB);
        match device.alloc(32 * MIB) {
            Err(Error::DeviceOutOfMemory { requested, free }) => {
                assert_eq!((requested, free), (32 * MIB, 16 * MIB))
            }
            other => panic!("expected DeviceOutOfMemory, got {other:?}"),
        }
        drop(a);
        assert_eq!(device.free_memory(), 64 * MIB);
        // Another size class: the cached 48 MiB block is released to stay in the budget.
        let b = device.alloc(32 * MIB).unwrap();
        let s = device.allocator_stats();
        assert!(s.live_bytes + s.cached_bytes <= 64 * MIB, "{s:?}");
        drop(b);
        device.set_memory_budget(None);
        assert!(device.free_memory() > 64 * MIB);
    }

    #[test]
    fn gpu_driver_out_of_memory_is_typed_and_recoverable() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let cached = device.alloc(16 * MIB).unwrap();
        drop(cached);
        match device.alloc(device.total_memory() * 2) {
            Err(Error::DeviceOutOfMemory { requested, .. }) => {
                assert_eq!(requested, device.total_memory() * 2)
            }
            other => panic!("expected DeviceOutOfMemory, got {other:?}"),
        }
        assert_eq!(
            device.allocator_stats().cached_bytes,
            0,
            "the cache was emptied before giving up"
        );
        let again = upload_f64(&device, &[1.0, 2.0]);
        assert_eq!(download_f64(&device, &again, 2), vec![1.0, 2.0]);
    }

    #[test]
    fn gpu_calibration_gives_plausible_costs() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let plausible = |c: &DeviceCosts| {
            assert!(
                (1e9..=1e12).contains(&c.link_bytes_per_s),
                "bandwidth: {c:?}"
            );
            assert!(
                c.link_latency_s > 0.0 && c.link_latency_s < 1e-3,
                "latency: {c:?}"
            );
            assert!(c.launch_s > 0.0 && c.launch_s < 1e-3, "launch: {c:?}");
            assert!(
                c.elements_per_s > 1e8 && c.elements_per_s.is_finite(),
                "throughput: {c:?}"
            );
        };
        let stats = device.stats();
        let start = std::time::Instant::now();
        let first = device.costs();
        eprintln!(
            "{}: {first:?} in {:?} ({} measurement(s); cache {:?})",
            device.name(),
            start.elapsed(),
            device.cost_measurements(),
            device.cost_cache_path()
        );
        assert_ne!(
            first,
            DeviceCosts::default(),
            "the calibration failed (see the warning)"
        );
        plausible(&first);
        // The second call is served from memory.
        let measurements = device.cost_measurements();
        assert!(measurements <= 1);
        let again = std::time::Instant::now();
        assert_eq!(device.costs(), first);
        assert!(
            again.elapsed() < std::time::Duration::from_millis(1),
            "{:?}",
            again.elapsed()
        );
        assert_eq!(device.cost_measurements(), measurements);

        // A fresh measurement (not from the cache), well under a second once the kernel is loaded.
        let start = std::time::Instant::now();
        let measured = device.recalibrate().unwrap();
        let took = start.elapsed();
        eprintln!("recalibrated in {took:?}: {measured:?}");
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        plausible(&measured);
        assert_eq!(device.cost_measurements(), measurements + 1);
        assert_eq!(device.costs(), measured);
        assert_eq!(device.cost_measurements(), measurements + 1);
        if let Some(path) = device.cost_cache_path() {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(parse_costs(&text), Ok(measured), "{}", path.display());
        }
        // The calibration does not show in the device's counters.
        assert_eq!(device.stats(), stats);
        assert_eq!(device.allocator_stats().live_bytes, 0);
    }

    #[test]
    fn gpu_buffers_may_outlive_their_device() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let buf = upload_f64(&device, &[1.0; 1000]);
        drop(device);
        drop(buf); // returned to the pool of the shared state, freed with it
    }

    fn launch_on(
        device: &CudaDevice,
        queue: Queue,
        kernel: &str,
        n: usize,
        args: Vec<KernelArg<'_>>,
    ) -> Result<()> {
        device.launch_on(
            queue,
            &Launch {
                source: NUMPY_CU,
                kernel: kernel.to_string(),
                n,
                args,
                shape: LaunchShape::Elementwise,
                reference: &no_emulation,
            },
        )
    }

    fn finish_f64(device: &CudaDevice, pending: PendingDownload) -> Vec<f64> {
        let mut bytes = vec![0u8; pending.len()];
        device.finish_download(pending, &mut bytes).unwrap();
        f64s(&bytes)
    }

    #[test]
    fn gpu_pipelined_batches_on_three_queues_give_the_right_values() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 1 << 20;
        let before = device.stats();
        // Two rounds, so that the second one reuses the first one's blocks across queues.
        for round in 0..2 {
            let mut pending = Vec::new();
            for batch in 0..8 {
                let x: Vec<f64> = (0..n)
                    .map(|i| (round * 8 + batch) as f64 * 1e3 + i as f64 * 0.5)
                    .collect();
                let input = device.alloc_on(Queue::Upload, n * 8).unwrap();
                device
                    .upload_on(Queue::Upload, &f64_bytes(&x), &input)
                    .unwrap();
                let uploaded = device.record(Queue::Upload).unwrap();
                device.wait(Queue::Compute, &uploaded).unwrap();
                let out = device.alloc_on(Queue::Compute, n * 8).unwrap();
                launch_on(
                    &device,
                    Queue::Compute,
                    "square_f64",
                    n,
                    vec![KernelArg::In(&input), KernelArg::Out(&out)],
                )
                .unwrap();
                let computed = device.record(Queue::Compute).unwrap();
                device.wait(Queue::Download, &computed).unwrap();
                pending.push((
                    x,
                    device.start_download(Queue::Download, &out, n * 8).unwrap(),
                ));
                // Dropped while the copies and the kernel may still run: later batches reuse
                // the blocks, ordered by their fences.
                drop((input, out, uploaded, computed));
            }
            for (batch, (x, download)) in pending.into_iter().enumerate() {
                let got = finish_f64(&device, download);
                let wrong = (0..n).filter(|&i| got[i] != x[i] * x[i]).count();
                assert_eq!(
                    wrong, 0,
                    "round {round}, batch {batch}: {wrong} wrong values"
                );
            }
        }
        let stats = device.stats();
        assert_eq!(stats.uploads - before.uploads, 16);
        assert_eq!(stats.launches - before.launches, 16);
        assert_eq!(stats.downloads - before.downloads, 16);
        assert_eq!(
            stats.download_bytes - before.download_bytes,
            16 * n as u64 * 8
        );
        device.synchronize().unwrap();
        let s = device.allocator_stats();
        assert_eq!(s.live_bytes, 0, "{s:?}");
    }

    #[test]
    fn gpu_a_block_reused_on_another_queue_waits_for_its_last_kernel() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let n = 1 << 24;
        let input = upload_f64(&device, &vec![3.0; n]);
        let x = device.alloc(n * 8).unwrap();
        // Keep the compute queue busy writing `x`, then free it at once.
        for _ in 0..20 {
            launch(
                &device,
                "negative_f64",
                n,
                vec![KernelArg::In(&input), KernelArg::Out(&x)],
            )
            .unwrap();
        }
        drop(x);
        let reuses = device.allocator_stats().reuses;
        let y = device.alloc_on(Queue::Upload, n * 8).unwrap();
        assert_eq!(
            device.allocator_stats().reuses,
            reuses + 1,
            "the freed block is reused"
        );
        let fresh: Vec<f64> = (0..n).map(|i| i as f64 + 0.25).collect();
        device
            .upload_on(Queue::Upload, &f64_bytes(&fresh), &y)
            .unwrap();
        let uploaded = device.record(Queue::Upload).unwrap();
        // Read back on the download queue: no kernel may overwrite the upload.
        device.wait(Queue::Download, &uploaded).unwrap();
        let back = device.start_download(Queue::Download, &y, n * 8).unwrap();
        // And computed on the compute queue.
        device.wait(Queue::Compute, &uploaded).unwrap();
        let out = device.alloc(n * 8).unwrap();
        launch(
            &device,
            "square_f64",
            n,
            vec![KernelArg::In(&y), KernelArg::Out(&out)],
        )
        .unwrap();
        let got = finish_f64(&device, back);
        assert_eq!((0..n).filter(|&i| got[i] != fresh[i]).count(), 0);
        let squared = download_f64(&device, &out, n);
        assert_eq!(
            (0..n)
                .filter(|&i| squared[i] != fresh[i] * fresh[i])
                .count(),
            0
        );
    }

    #[test]
    fn gpu_a_pending_download_may_be_dropped_unfinished() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let bytes = 3 * STAGING_CHUNK + 5;
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        let buf = device.alloc(bytes).unwrap();
        device.upload(&data, &buf).unwrap();
        let uploaded = device.record(Queue::Compute).unwrap();
        device.wait(Queue::Download, &uploaded).unwrap();
        for _ in 0..20 {
            let pending = device.start_download(Queue::Download, &buf, bytes).unwrap();
            drop(pending); // the copies may still be writing the staging chunks
        }
        let empty = device.start_download(Queue::Compute, &buf, 0).unwrap();
        assert!(empty.is_empty());
        drop(empty);
        // The chunks came back and are reused once their copies are done, with the right bytes.
        let mut back = vec![0u8; bytes];
        device.download(&buf, &mut back).unwrap();
        assert!(back == data);
        device.synchronize().unwrap();
        let (held, idle) = device.staging_chunks();
        assert_eq!(held, idle, "every chunk is back in the pool");
        assert!(held <= STAGING_MAX_CHUNKS);
        // Finishing into a slice of the wrong length is an error, as is another device's download.
        let pending = device.start_download(Queue::Download, &buf, 16).unwrap();
        assert!(matches!(
            device.finish_download(pending, &mut [0u8; 15]),
            Err(Error::Gpu(_))
        ));
        let sim = crate::device::SimulatedDevice::with_capacity(1024);
        let sim_buf = sim.alloc(16).unwrap();
        let foreign = sim.start_download(Queue::Download, &sim_buf, 16).unwrap();
        assert!(matches!(
            device.finish_download(foreign, &mut [0u8; 16]),
            Err(Error::Gpu(_))
        ));
        // A pending download may outlive its device.
        let late = device.start_download(Queue::Download, &buf, bytes).unwrap();
        drop(buf);
        drop(device);
        drop(late);
    }

    #[test]
    fn gpu_zero_byte_transfers_need_no_copy() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let buf = device.alloc_on(Queue::Upload, 0).unwrap();
        device.upload_on(Queue::Upload, &[], &buf).unwrap();
        let pending = device.start_download(Queue::Download, &buf, 0).unwrap();
        assert_eq!(pending.len(), 0);
        device.finish_download(pending, &mut []).unwrap();
        device.download(&buf, &mut []).unwrap();
    }

    #[test]
    fn gpu_the_pinned_pool_does_not_grow_over_1000_cycles() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let sizes = [1000, 3 * MIB + 7, STAGING_CHUNK + 1];
        let buffers: Vec<(Vec<u8>, DeviceBuffer)> = sizes
            .iter()
            .map(|&bytes| {
                let data: Vec<u8> = (0..bytes).map(|i| (i * 13 % 256) as u8).collect();
                (data, device.alloc(bytes).unwrap())
            })
            .collect();
        // Uploads and downloads on one queue: a finished download has waited for every earlier
        // copy, so each cycle needs at most 2 chunks in flight each way.
        let mut back = vec![0u8; STAGING_CHUNK + 1];
        for cycle in 0..1000 {
            for (data, buf) in &buffers {
                device.upload(data, buf).unwrap();
                let dst = &mut back[..data.len()];
                device.download(buf, dst).unwrap();
                if cycle % 100 == 0 {
                    assert!(dst == &data[..], "cycle {cycle}");
                }
            }
            let (held, idle) = device.staging_chunks();
            assert!(held <= 4, "cycle {cycle}: {held} chunks");
            assert_eq!(held, idle, "cycle {cycle}: a chunk was not given back");
        }
        // Pipelined on three queues, with overlapping downloads: bounded by the pool's cap.
        for cycle in 0..1000 {
            let mut pending = Vec::new();
            for (data, buf) in &buffers {
                device.upload_on(Queue::Upload, data, buf).unwrap();
                let uploaded = device.record(Queue::Upload).unwrap();
                device.wait(Queue::Download, &uploaded).unwrap();
                pending.push(
                    device
                        .start_download(Queue::Download, buf, data.len())
                        .unwrap(),
                );
            }
            for ((data, _), download) in buffers.iter().zip(pending) {
                let dst = &mut back[..data.len()];
                device.finish_download(download, dst).unwrap();
                if cycle % 100 == 0 {
                    assert!(dst == &data[..], "cycle {cycle}");
                }
            }
            assert!(device.staging_chunks().0 <= STAGING_MAX_CHUNKS);
        }
        let (held, idle) = device.staging_chunks();
        assert_eq!(held, idle);
        assert!(held <= 8, "{held} chunks");
    }

    #[test]
    fn gpu_events_order_queues_and_belong_to_their_device() {
        let Some((_gpu, device)) = gpu_or_skip() else {
            return;
        };
        let event = device.record(Queue::Compute).unwrap();
        device.wait(Queue::Download, &event).unwrap();
        device.host_wait(&event).unwrap();
        // Recycled events keep working.
        for _ in 0..1000 {
            let e = device.record(Queue::Upload).unwrap();
            device.wait(Queue::Compute, &e).unwrap();
        }
        device.synchronize().unwrap();
        let other = CudaDevice::open(device.ordinal()).unwrap();
        let foreign = other.record(Queue::Compute).unwrap();
        assert!(matches!(
            device.wait(Queue::Compute, &foreign),
            Err(Error::Gpu(_))
        ));
        assert!(matches!(device.host_wait(&foreign), Err(Error::Gpu(_))));
        let simulated = crate::device::SimulatedDevice::with_capacity(1024)
            .record(Queue::Compute)
            .unwrap();
        assert!(matches!(
            device.wait(Queue::Upload, &simulated),
            Err(Error::Gpu(_))
        ));
        drop(other);
        drop(foreign); // outlives its device
    }
}
