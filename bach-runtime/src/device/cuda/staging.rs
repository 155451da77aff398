//! Pinned staging: transfers go through a pool of pinned (page-locked) host chunks of
//! [`STAGING_CHUNK`] bytes, each with an event recorded after the last copy that used it.
//!
//! A chunk is taken when idle and its event has completed (else a new one is allocated, up to
//! [`STAGING_MAX_CHUNKS`], else the host waits for the oldest idle one). An upload copies the
//! caller's bytes into chunks on the host (in parallel for large copies, [`copy_bytes`]),
//! enqueues `cuMemcpyHtoDAsync` from each on its stream and returns the chunk to the pool at
//! once: it returns once the source has been copied out of the caller's slice, without waiting
//! for the DMA. A download ([`Device::start_download`](crate::Device::start_download)) enqueues
//! `cuMemcpyDtoHAsync` into as many chunks as it needs and keeps them in its
//! [`PendingDownload`](crate::PendingDownload);
//! [`Device::finish_download`](crate::Device::finish_download) waits for each chunk's event and
//! copies it out. A pending download dropped unfinished returns its chunks with their events,
//! which the pool respects. When a chunk cannot be allocated (pinned memory is a shared,
//! limited resource), transfers that would need a new chunk fall back to synchronous copies
//! from pageable memory for [`STAGING_RETRY`], while the idle chunks keep serving.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::result as driver;
use cudarc::driver::sys as driver_sys;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream};
use rayon::prelude::*;

use super::error::{driver_error_text, gpu_err};
use super::lock;
use super::streams::Streams;
use crate::device::Queue;
use crate::error::Result;

/// Size of one pinned staging chunk; transfers are split into chunks of this size.
pub const STAGING_CHUNK: usize = 8 << 20;
/// Most staging chunks the pool keeps (512 MiB of pinned memory); a transfer that finds them
/// all held by pending downloads gets extra chunks, freed when given back.
pub const STAGING_MAX_CHUNKS: usize = 64;
/// How long the pool allocates no new chunk after pinned memory could not be allocated.
const STAGING_RETRY: Duration = Duration::from_secs(1);
/// Host copies of at least this many bytes (into or out of staging chunks) run in parallel.
const PARALLEL_COPY_MIN: usize = 1 << 20;
/// The piece of a parallel host copy each task copies.
const PARALLEL_COPY_PIECE: usize = 256 << 10;

/// Staging chunks a transfer of `bytes` needs: `ceil(bytes / STAGING_CHUNK)` (0 for 0 bytes).
pub(super) fn chunk_count(bytes: usize) -> usize {
    bytes.div_ceil(STAGING_CHUNK)
}

/// The `(offset, len)` of each staging chunk of a transfer of `bytes`, in order.
pub(super) fn chunk_ranges(bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..chunk_count(bytes)).map(move |i| {
        let offset = i * STAGING_CHUNK;
        (offset, STAGING_CHUNK.min(bytes - offset))
    })
}

/// Copies `src` into `dst` (of equal lengths) on the host: in parallel pieces on rayon's pool
/// from [`PARALLEL_COPY_MIN`] bytes on (one thread cannot fill a PCIe 5 link), else directly.
pub(super) fn copy_bytes(dst: &mut [u8], src: &[u8]) {
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
pub(super) enum ChunkTake<C> {
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
    /// A new chunk would be needed, but allocating pinned memory failed less than the pool's
    /// back-off ago: copy through pageable memory instead.
    Pageable,
}

/// The pinned staging pool's bookkeeping, independent of CUDA: idle chunks oldest first (in
/// the order they were given back), how many chunks the pool holds in all (idle or in use),
/// at most `cap`, and until when it allocates no new chunk after an allocation failed (pinned
/// memory is a shared, limited resource: a failure may be transient, so it is retried after
/// `retry`).
#[derive(Debug)]
pub(super) struct ChunkPool<C> {
    idle: VecDeque<C>,
    chunks: usize,
    cap: usize,
    retry: Duration,
    no_allocation_until: Option<Instant>,
}

impl<C> ChunkPool<C> {
    /// An empty pool of at most `cap` chunks that waits `retry` after a failed allocation
    /// before it allocates again.
    pub(super) fn new(cap: usize, retry: Duration) -> Self {
        ChunkPool {
            idle: VecDeque::new(),
            chunks: 0,
            cap,
            retry,
            no_allocation_until: None,
        }
    }

    /// Takes a chunk at time `now`: the oldest idle one that is `ready` (its last copy has
    /// completed), else a new one while the pool has fewer than `cap`, else the oldest idle one
    /// to wait for, else (all in use) one outside the pool. Within `retry` of a failed
    /// allocation the idle chunks still serve (ready or waited for), and only a transfer that
    /// would need a new chunk copies through pageable memory.
    pub(super) fn take(&mut self, mut ready: impl FnMut(&C) -> bool, now: Instant) -> ChunkTake<C> {
        if let Some(i) = self.idle.iter().position(&mut ready) {
            let chunk = self.idle.remove(i).expect("the position is in range");
            return ChunkTake::Ready(chunk);
        }
        let backing_off = self.no_allocation_until.is_some_and(|until| now < until);
        if self.chunks < self.cap && !backing_off {
            self.chunks += 1;
            return ChunkTake::Allocate;
        }
        match self.idle.pop_front() {
            Some(chunk) => ChunkTake::WaitFor(chunk),
            None if backing_off => ChunkTake::Pageable,
            None => ChunkTake::Overflow,
        }
    }

    /// The allocation [`take`](Self::take) asked for failed at time `now`: the pool holds one
    /// chunk less, and allocates none for `retry`.
    pub(super) fn allocation_failed(&mut self, now: Instant) {
        self.chunks = self.chunks.saturating_sub(1);
        self.no_allocation_until = Some(now + self.retry);
    }

    /// A chunk of the pool (not an overflow chunk) is idle again.
    pub(super) fn give_back(&mut self, chunk: C) {
        self.idle.push_back(chunk);
    }

    /// A chunk of the pool is lost (leaked, or freed outside the pool).
    pub(super) fn forget(&mut self) {
        self.chunks = self.chunks.saturating_sub(1);
    }

    /// Chunks the pool holds, idle or in use.
    #[cfg(test)]
    pub(super) fn chunks(&self) -> usize {
        self.chunks
    }

    /// Idle chunks.
    #[cfg(test)]
    pub(super) fn idle_chunks(&self) -> usize {
        self.idle.len()
    }
}

/// [`STAGING_CHUNK`] bytes of page-locked host memory for asynchronous copies (not
/// write-combined: downloads read it on the host), with an event recorded after the last copy
/// that uses it. Nobody touches the memory on the host before that event has completed.
pub(super) struct Pinned {
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
pub(super) struct StagingChunk {
    pinned: Pinned,
    pooled: bool,
}

/// The pinned staging pool (see the module docs), and the streams its copies run on.
///
/// Lock order: `pool` is never held with another lock.
pub(super) struct Staging {
    streams: Arc<Streams>,
    pool: Mutex<ChunkPool<Pinned>>,
}

impl Staging {
    /// An empty staging pool for copies on `streams`.
    pub(super) fn new(streams: Arc<Streams>) -> Self {
        Staging {
            streams,
            pool: Mutex::new(ChunkPool::new(STAGING_MAX_CHUNKS, STAGING_RETRY)),
        }
    }

    /// A staging chunk (see [`ChunkPool::take`]) whose last copy has completed; `None` when no
    /// pinned memory can be allocated (the caller copies through pageable memory).
    pub(super) fn take_chunk(&self) -> Result<Option<StagingChunk>> {
        self.streams.bind()?;
        let decision = lock(&self.pool).take(Pinned::is_idle, Instant::now());
        match decision {
            ChunkTake::Ready(pinned) => Ok(Some(StagingChunk {
                pinned,
                pooled: true,
            })),
            ChunkTake::WaitFor(pinned) => {
                if let Err(e) = pinned.wait() {
                    lock(&self.pool).give_back(pinned);
                    return Err(e);
                }
                Ok(Some(StagingChunk {
                    pinned,
                    pooled: true,
                }))
            }
            ChunkTake::Allocate => match Pinned::new(&self.streams.ctx) {
                Ok(pinned) => Ok(Some(StagingChunk {
                    pinned,
                    pooled: true,
                })),
                Err(e) => {
                    tracing::warn!(
                        "no pinned staging memory ({e}); copying through pageable memory"
                    );
                    lock(&self.pool).allocation_failed(Instant::now());
                    Ok(None)
                }
            },
            ChunkTake::Overflow => match Pinned::new(&self.streams.ctx) {
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
            ChunkTake::Pageable => Ok(None),
        }
    }

    /// Gives a staging chunk back: to the pool with its event (a later take respects it), or,
    /// for an overflow chunk, to the driver once its last copy has completed.
    pub(super) fn return_chunk(&self, chunk: StagingChunk) {
        if chunk.pooled {
            lock(&self.pool).give_back(chunk.pinned);
        }
        // An overflow chunk is dropped here: `Pinned::drop` waits for its event, then frees it.
    }

    /// Leaks a staging chunk a copy may still use (see [`Pinned::fence`]).
    pub(super) fn leak_chunk(&self, chunk: StagingChunk) {
        if chunk.pooled {
            lock(&self.pool).forget();
        }
        std::mem::forget(chunk);
    }
}

/// The device's own representation of a [`PendingDownload`]: where the bytes land.
pub(super) struct CudaDownload {
    pub(super) staging: Arc<Staging>,
    /// Staging chunks, one per [`STAGING_CHUNK`] of the download in order, each with its event
    /// recorded after its copy.
    pub(super) chunks: Vec<StagingChunk>,
    /// The bytes, copied already (through pageable memory, without pinned memory).
    pub(super) pageable: Option<Vec<u8>>,
    /// For a zero-byte download: an event after the queue's earlier work.
    pub(super) event: Option<CudaEvent>,
}

impl CudaDownload {
    fn new(staging: &Arc<Staging>) -> Self {
        CudaDownload {
            staging: staging.clone(),
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
            self.staging.return_chunk(chunk);
        }
        if let Some(event) = self.event.take() {
            self.staging.streams.recycle_event(event);
        }
    }
}

impl Staging {
    /// The staging pool's chunks: `(held, idle)`, where `held` counts idle chunks and chunks in
    /// use by transfers (not overflow chunks).
    #[cfg(test)]
    pub(super) fn staging_chunks(&self) -> (usize, usize) {
        let pool = lock(&self.pool);
        (pool.chunks(), pool.idle_chunks())
    }

    /// Copies `src` into the device at `dst` on `queue`'s stream through pinned staging chunks
    /// (or from pageable memory when there are none). Returns once `src` may be reused: each
    /// chunk's bytes are copied out of `src` on the host before its DMA is enqueued, and the
    /// DMA is not waited for.
    pub(super) fn copy_in(
        &self,
        queue: Queue,
        src: &[u8],
        dst: driver_sys::CUdeviceptr,
    ) -> Result<()> {
        let stream = self.streams.stream(queue);
        for (offset, len) in chunk_ranges(src.len()) {
            let Some(mut chunk) = self.take_chunk()? else {
                return self.copy_in_pageable(queue, &src[offset..], dst + offset as u64);
            };
            // The chunk's last copy has completed (`take_chunk`): the host may write it.
            copy_bytes(chunk.pinned.slice_mut(len), &src[offset..offset + len]);
            // A parallel copy may have run other rayon jobs on this thread, which may have bound
            // another context: bind this one again before the enqueue.
            if let Err(e) = self.streams.bind() {
                self.return_chunk(chunk); // nothing enqueued: its event is unchanged
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
                self.leak_chunk(chunk);
                return Err(e);
            }
            self.return_chunk(chunk);
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
            unsafe { driver::memcpy_htod_async(dst, src, self.streams.stream(queue).cu_stream()) };
        let waited = self
            .streams
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
    pub(super) fn start_copy_out(
        self: &Arc<Self>,
        queue: Queue,
        src: driver_sys::CUdeviceptr,
        bytes: usize,
    ) -> Result<CudaDownload> {
        let mut download = CudaDownload::new(self);
        if bytes == 0 {
            download.event = Some(self.streams.record_event(queue)?);
            return Ok(download);
        }
        // All chunks first: a download lands in staging memory as a whole.
        for _ in 0..chunk_count(bytes) {
            match self.take_chunk()? {
                Some(chunk) => download.chunks.push(chunk),
                None => {
                    drop(download); // gives the chunks taken back
                    return self.start_copy_out_pageable(queue, src, bytes);
                }
            }
        }
        let stream = self.streams.stream(queue);
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
                self.leak_chunk(chunk);
                return Err(e);
            }
            copied.map_err(|e| gpu_err(format_args!("copying {len} bytes from the device"), e))?;
        }
        Ok(download)
    }

    fn start_copy_out_pageable(
        self: &Arc<Self>,
        queue: Queue,
        src: driver_sys::CUdeviceptr,
        bytes: usize,
    ) -> Result<CudaDownload> {
        let mut host = vec![0u8; bytes];
        // SAFETY: the source range lies in a live device allocation; `host` is not touched (or
        // freed) before the stream is synchronized below, and is leaked if that fails.
        let copied = unsafe {
            driver::memcpy_dtoh_async(&mut host, src, self.streams.stream(queue).cu_stream())
        };
        if let Err(e) = self
            .streams
            .synchronize_queue(queue, "waiting for a copy from the device")
        {
            std::mem::forget(host);
            return Err(e);
        }
        copied.map_err(|e| gpu_err(format_args!("copying {bytes} bytes from the device"), e))?;
        let mut download = CudaDownload::new(self);
        download.pageable = Some(host);
        Ok(download)
    }

    /// Waits for a download's copies and copies the bytes into `dst` (of the download's length),
    /// chunk by chunk: the host copy of one chunk overlaps the DMA of the next.
    pub(super) fn finish_copy_out(
        &self,
        download: &mut CudaDownload,
        dst: &mut [u8],
    ) -> Result<()> {
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
    pub(super) fn copy_out(
        self: &Arc<Self>,
        queue: Queue,
        src: driver_sys::CUdeviceptr,
        dst: &mut [u8],
    ) -> Result<()> {
        let mut download = self.start_copy_out(queue, src, dst.len())?;
        self.finish_copy_out(&mut download, dst)
    }
}

#[cfg(test)]
mod tests;
