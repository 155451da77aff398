//! [`Streams`]: the context, one stream per [`Queue`] and the event pool of a
//! [`CudaDevice`](super::CudaDevice), which the allocator, the staging pool and the device's
//! events all use.
//!
//! Queues are three non-blocking CUDA streams, one per [`Queue`] (upload, compute, download),
//! so that host-to-device copies, kernels and device-to-host copies of different batches
//! overlap. Work on one stream runs in order; across streams it is ordered only by events:
//! [`Device::record`](crate::Device::record) records a (pooled, timing-disabled) CUDA event on
//! a stream ([`CudaFence`](super::shared::CudaFence)), [`Device::wait`](crate::Device::wait)
//! makes another stream wait for it (`cuStreamWaitEvent`, the host does not wait) and
//! [`Device::host_wait`](crate::Device::host_wait) blocks the host on it.

use std::sync::{Arc, Mutex};

use cudarc::driver::result as driver;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream};

use super::error::gpu_err;
use super::lock;
use crate::device::Queue;
use crate::error::Result;

/// Most idle events the device keeps for reuse.
const EVENT_POOL_MAX: usize = 256;

/// The context, its streams and the event pool.
///
/// Lock order: `events` is taken last (after the allocator's state, never with the staging
/// pool's lock).
pub(super) struct Streams {
    pub(super) ctx: Arc<CudaContext>,
    /// One stream per [`Queue`], by [`Queue::index`].
    pub(super) streams: [Arc<CudaStream>; 3],
    /// Idle events (timing disabled) for fences and [`Device::record`](crate::Device::record).
    /// An event goes back here only when nothing will wait for its last record any more: waits
    /// already enqueued with `cuStreamWaitEvent` are not affected by a later record of the same
    /// event.
    events: Mutex<Vec<CudaEvent>>,
}

impl Streams {
    pub(super) fn new(ctx: Arc<CudaContext>, streams: [Arc<CudaStream>; 3]) -> Self {
        Streams {
            ctx,
            streams,
            events: Mutex::new(Vec::new()),
        }
    }

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

    /// Driver's free memory; 0 when the query fails.
    pub(super) fn driver_free(&self) -> usize {
        if self.bind().is_err() {
            return 0;
        }
        driver::mem_get_info().map(|(free, _)| free).unwrap_or(0)
    }
}
