//! The caching allocator: a freed [`DeviceBuffer`](crate::DeviceBuffer) returns its block to a
//! per-size-class free list ([`SizeClassPool`]) and a later allocation of the same class reuses
//! it without calling the driver.
//!
//! Because work on other streams may still use a freed block, every buffer remembers which
//! queues used it ([`QueueMask`]: the queue it was allocated for, uploads, launches that read
//! or write it, device copies, downloads) and, per queue, an event recorded right after its
//! last use there (one event per enqueued operation, shared by the buffers it used). Dropping
//! the buffer caches the block with those events (its *fences*; a use whose event could not be
//! recorded gets one recorded at the drop); the host never waits. An
//! [`alloc_on`](crate::Device::alloc_on) prefers a cached block whose fences are on its own
//! stream or complete, and otherwise makes its stream wait (on the device) for the fences of
//! the other streams: the first use is ordered after every earlier use, and work on the same
//! stream is ordered by the stream itself. Because fences mark the last use (not the drop), a
//! block freed while later batches are already enqueued is reusable as soon as its own work
//! is done, which keeps the pipelined batches from waiting for each other.
//!
//! Releasing the cache (a driver out-of-memory, the budget,
//! [`CudaDevice::empty_cache`](super::CudaDevice::empty_cache)) synchronizes all streams
//! before freeing. A driver out-of-memory first empties the cache and retries once. An optional
//! budget ([`CudaDevice::with_memory_budget`](super::CudaDevice::with_memory_budget)) makes a
//! large GPU behave like a small one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::result as driver;
use cudarc::driver::sys as driver_sys;
use cudarc::driver::CudaEvent;

use super::error::{driver_error_text, gpu_err};
use super::lock;
use super::streams::Streams;
use crate::device::{Queue, TransferStats};
use crate::error::{Error, Result};

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

/// The queues that used a buffer, one bit per [`Queue::index`]; empty by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueMask(u8);

impl QueueMask {
    /// Only `queue`.
    pub fn of(queue: Queue) -> Self {
        QueueMask(1 << queue.index())
    }

    /// This mask and `queue`.
    pub fn with(self, queue: Queue) -> Self {
        QueueMask(self.0 | Self::of(queue).0)
    }

    /// Whether `queue` is in the mask.
    pub fn contains(self, queue: Queue) -> bool {
        self.0 & Self::of(queue).0 != 0
    }

    /// The queues in the mask, in index order.
    pub fn queues(self) -> impl Iterator<Item = Queue> {
        Queue::ALL.into_iter().filter(move |q| self.contains(*q))
    }
}

/// A block of the caching allocator, with its fences while it is cached: for each queue that
/// used it, an event recorded after that queue's last use of it (shared with the other buffers
/// the same work used; recycled when the last holder drops it).
pub(super) struct CachedBlock {
    pub(super) ptr: driver_sys::CUdeviceptr,
    pub(super) fences: Vec<(Queue, Arc<UseFence>)>,
}

impl CachedBlock {
    /// True when reusing the block on `queue` waits for nothing: each fence is on `queue`
    /// (ordered by the stream itself) or has completed.
    pub(super) fn ready_for(&self, queue: Queue) -> bool {
        self.fences.iter().all(|(used_on, fence)| {
            *used_on == queue || fence.event.as_ref().is_none_or(|e| e.is_complete())
        })
    }
}

/// Allocator state and counters, under one lock.
pub(super) struct State {
    pub(super) pool: SizeClassPool<CachedBlock>,
    /// Bytes requested by live buffers (not rounded), for `TransferStats::peak_bytes`.
    pub(super) live_requested: usize,
    pub(super) stats: TransferStats,
}

/// The caching allocator of a device: its state, and the streams that use its blocks. Every
/// buffer holds it (and so does the device): it drops once no buffer refers to a block any
/// more.
///
/// Lock order: `state`, then the event pool of `streams`.
pub(super) struct Allocator {
    pub(super) streams: Arc<Streams>,
    pub(super) state: Mutex<State>,
}

impl Allocator {
    /// An allocator without blocks or a budget, for work on `streams`.
    pub(super) fn new(streams: Arc<Streams>) -> Self {
        Allocator {
            streams,
            state: Mutex::new(State {
                pool: SizeClassPool::new(),
                live_requested: 0,
                stats: TransferStats::default(),
            }),
        }
    }

    /// The fences of a dropped block: for each queue in `uses`, the event recorded after the
    /// block's last use there, or, when there is none (recording it failed), an event
    /// recorded on that stream now, after everything it was given so far (including every use
    /// of the block, since the buffer is being dropped). A stream whose event cannot be
    /// recorded is waited for on the host instead. `None` when even that fails: the block must
    /// not be reused.
    pub(super) fn fences(&self, uses: Uses) -> Option<Vec<(Queue, Arc<UseFence>)>> {
        let mut fences = Vec::with_capacity(3);
        let Uses { queues, mut last } = uses;
        for queue in queues.queues() {
            if let Some(fence) = last[queue.index()].take() {
                fences.push((queue, fence));
                continue;
            }
            match self.streams.record_event(queue) {
                Ok(event) => fences.push((queue, UseFence::new(event, &self.streams))),
                Err(e) => {
                    if let Err(sync) = self
                        .streams
                        .synchronize_queue(queue, "waiting for a freed block")
                    {
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
    pub(super) fn order_reuse(&self, queue: Queue, block: &mut CachedBlock) -> Result<()> {
        for (used_on, fence) in &block.fences {
            let Some(fence) = fence.event.as_ref() else {
                continue;
            };
            if *used_on != queue && !fence.is_complete() {
                if let Err(e) = self.streams.stream(queue).wait(fence) {
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
    pub(super) fn release_cached(&self, state: &mut State) -> Result<usize> {
        let blocks = state.pool.drain();
        if blocks.is_empty() {
            return Ok(0);
        }
        self.streams
            .synchronize("synchronizing before freeing cached device memory")?;
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
}

/// The device's own representation of a [`DeviceBuffer`]: one block of the caching allocator,
/// given back to the pool on drop with a fence for each queue that used it.
pub(super) struct CudaAlloc {
    pub(super) ptr: driver_sys::CUdeviceptr,
    pub(super) class: usize,
    pub(super) bytes: usize,
    pub(super) allocator: Arc<Allocator>,
    /// Which queues used the block, and after which event each last did.
    pub(super) uses: Mutex<Uses>,
}

/// The uses of a block by the queues.
#[derive(Default)]
pub(super) struct Uses {
    /// The queues that used the block: set before each use is enqueued.
    pub(super) queues: QueueMask,
    /// Per queue, an event recorded after its last use of the block, once recorded; `None`
    /// while a use is being enqueued (or when recording failed: the drop records one then).
    pub(super) last: [Option<Arc<UseFence>>; 3],
}

/// An event recorded after work that used some blocks, shared by their fences. Its event
/// goes back to the device's event pool when the last holder drops it. It holds the streams
/// weakly, so that fences (which the allocator's own cached blocks hold) never keep them alive
/// on their own; once the streams are gone, the event is destroyed instead.
pub(super) struct UseFence {
    pub(super) event: Option<CudaEvent>,
    pub(super) streams: std::sync::Weak<Streams>,
}

impl UseFence {
    fn new(event: CudaEvent, streams: &Arc<Streams>) -> Arc<UseFence> {
        Arc::new(UseFence {
            event: Some(event),
            streams: Arc::downgrade(streams),
        })
    }
}

impl Drop for UseFence {
    fn drop(&mut self) {
        if let (Some(event), Some(streams)) = (self.event.take(), self.streams.upgrade()) {
            streams.recycle_event(event);
        }
    }
}

impl CudaAlloc {
    /// Notes that work on `queue` is about to use the block (call before enqueueing it).
    pub(super) fn touch(&self, queue: Queue) {
        let mut uses = lock(&self.uses);
        uses.queues = uses.queues.with(queue);
        uses.last[queue.index()] = None;
    }

    /// Notes that `fence` was recorded on `queue` after the work that used the block.
    pub(super) fn used(&self, queue: Queue, fence: &Arc<UseFence>) {
        lock(&self.uses).last[queue.index()] = Some(fence.clone());
    }
}

impl Allocator {
    /// After work on `queue` that used `allocs` was enqueued: one event after it, remembered
    /// by each block as its last use there, so that a later reuse of the block waits for that
    /// work only (not for whatever the stream runs by the time the buffer is dropped). When
    /// the event cannot be recorded, the blocks keep no last use and the drop records one.
    pub(super) fn mark_used(&self, queue: Queue, allocs: &[&CudaAlloc]) {
        if allocs.is_empty() {
            return;
        }
        match self.streams.record_event(queue) {
            Ok(event) => {
                let fence = UseFence::new(event, &self.streams);
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
        let fences = self.allocator.fences(uses);
        let mut state = lock(&self.allocator.state);
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

impl Allocator {
    /// A block of at least `bytes` for work on `queue`: a cached block of its size class (its
    /// earlier uses on other queues ordered before the first use on `queue`), else a fresh one.
    pub(super) fn alloc_block(self: &Arc<Self>, queue: Queue, bytes: usize) -> Result<CudaAlloc> {
        let mut state = lock(&self.state);
        let Some(class) = SizeClassPool::<()>::class_size(bytes) else {
            return Err(Error::DeviceOutOfMemory {
                requested: bytes,
                free: state.pool.free_memory(self.streams.driver_free()),
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
                    .streams
                    .bind()
                    .and_then(|()| self.order_reuse(queue, &mut block))
                {
                    state.pool.give_back(class, block);
                    return Err(e);
                }
                block.ptr
            }
            plan => {
                if plan == AllocPlan::DrainThenFresh {
                    self.release_cached(&mut state)?;
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
        Ok(CudaAlloc {
            ptr,
            class,
            bytes,
            allocator: self.clone(),
            uses: Mutex::new(Uses {
                queues: QueueMask::of(queue),
                last: Default::default(),
            }),
        })
    }

    /// Allocates a fresh block in the driver; on out-of-memory, empties the cache and retries
    /// once.
    pub(super) fn driver_alloc(
        &self,
        state: &mut State,
        class: usize,
        bytes: usize,
    ) -> Result<driver_sys::CUdeviceptr> {
        self.streams.bind()?;
        // SAFETY: allocates `class` bytes of device memory in the bound context; the block is
        // owned by the pool (live in a `CudaAlloc` or cached) until freed by `release_cached`
        // or `Allocator::drop`.
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
        let freed = self.release_cached(state)?;
        tracing::info!(
            "device out of memory for {class} bytes: released {freed} cached bytes and retrying"
        );
        // SAFETY: as above.
        match unsafe { driver::malloc_sync(class) } {
            Ok(ptr) => Ok(ptr),
            Err(e) if e.0 == driver_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                Err(Error::DeviceOutOfMemory {
                    requested: bytes,
                    free: state.pool.free_memory(self.streams.driver_free()),
                })
            }
            Err(e) => Err(gpu_err(
                format_args!("allocating {class} bytes ({bytes} requested)"),
                e,
            )),
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let blocks = state.pool.drain();
        if self.streams.ctx.bind_to_thread().is_err() {
            return;
        }
        let mut idle = true;
        for stream in &self.streams.streams {
            idle &= stream.synchronize().is_ok();
        }
        if !idle {
            // Some work may still use the blocks: leak them rather than free them under it.
            std::mem::forget(blocks);
            return;
        }
        for (_, block) in blocks {
            // SAFETY: no buffer refers to `block.ptr` any more (every buffer holds this
            // `Allocator`), and every stream is idle.
            let _ = unsafe { driver::free_sync(block.ptr) };
        }
    }
}

#[cfg(test)]
mod tests;
