//! [`Shared`]: what a [`CudaDevice`](super::CudaDevice) shares with its buffers, events and
//! pending downloads, which may outlive it: the context, one stream per [`Queue`] and the
//! event pool, beside the allocator's state ([`State`]) and the staging pool ([`Staging`]).
//!
//! Queues are three non-blocking CUDA streams, one per [`Queue`] (upload, compute, download),
//! so that host-to-device copies, kernels and device-to-host copies of different batches
//! overlap. Work on one stream runs in order; across streams it is ordered only by events:
//! [`Device::record`](crate::Device::record) records a (pooled, timing-disabled) CUDA event on
//! a stream ([`CudaFence`]), [`Device::wait`](crate::Device::wait) makes another stream wait
//! for it (`cuStreamWaitEvent`, the host does not wait) and
//! [`Device::host_wait`](crate::Device::host_wait) blocks the host on it.

use std::sync::{Arc, Mutex};

use cudarc::driver::result as driver;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream};

use super::alloc::State;
use super::error::gpu_err;
use super::lock;
use super::staging::Staging;
use crate::device::Queue;
use crate::error::Result;

/// Most idle events the device keeps for reuse.
const EVENT_POOL_MAX: usize = 256;

/// What buffers, events and pending downloads share with their device (they may outlive it).
///
/// Lock order: `state`, then `events`; `staging` is never held with another lock.
pub(super) struct Shared {
    pub(super) ctx: Arc<CudaContext>,
    /// One stream per [`Queue`], by [`Queue::index`].
    pub(super) streams: [Arc<CudaStream>; 3],
    pub(super) state: Mutex<State>,
    /// Idle events (timing disabled) for fences and [`Device::record`]. An event goes back here
    /// only when nothing will wait for its last record any more: waits already enqueued with
    /// `cuStreamWaitEvent` are not affected by a later record of the same event.
    pub(super) events: Mutex<Vec<CudaEvent>>,
    pub(super) staging: Mutex<Staging>,
}

impl Shared {
    pub(super) fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| gpu_err("binding the CUDA context", e))
    }

    pub(super) fn stream(&self, queue: Queue) -> &CudaStream {
        &self.streams[queue.index()]
    }

    /// Waits for the work on every stream.
    pub(super) fn synchronize(&self, what: &str) -> Result<()> {
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
    pub(super) fn synchronize_queue(&self, queue: Queue, what: &str) -> Result<()> {
        self.bind()?;
        self.stream(queue)
            .synchronize()
            .map_err(|e| gpu_err(what, e))
    }

    /// An idle event from the pool, or a new one.
    pub(super) fn take_event(&self) -> Result<CudaEvent> {
        if let Some(event) = lock(&self.events).pop() {
            return Ok(event);
        }
        self.ctx
            .new_event(None)
            .map_err(|e| gpu_err("creating an event", e))
    }

    /// Returns an event nobody waits for any more to the pool.
    pub(super) fn recycle_event(&self, event: CudaEvent) {
        let mut events = lock(&self.events);
        if events.len() < EVENT_POOL_MAX {
            events.push(event);
        }
    }

    /// An event recorded on `queue`'s stream now.
    pub(super) fn record_event(&self, queue: Queue) -> Result<CudaEvent> {
        let event = self.take_event()?;
        event
            .record(self.stream(queue))
            .map_err(|e| gpu_err(format_args!("recording an event on the {queue:?} queue"), e))?;
        Ok(event)
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

/// An event of a [`CudaDevice`] ([`Device::record`]); back to the device's event pool on drop.
pub(super) struct CudaFence {
    pub(super) event: Option<CudaEvent>,
    pub(super) shared: Arc<Shared>,
}

impl Drop for CudaFence {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.shared.recycle_event(event);
        }
    }
}
