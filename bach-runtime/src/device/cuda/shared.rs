//! [`Shared`]: what a [`CudaDevice`](super::CudaDevice) shares with its events, which may
//! outlive it: the streams and event pool ([`Streams`]), the caching allocator ([`Allocator`])
//! and the staging pool ([`Staging`]). Buffers hold the allocator and pending downloads the
//! staging pool, each with the streams.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream};

use super::alloc::Allocator;
use super::staging::Staging;
use super::streams::Streams;

/// What the device and its events share (they may outlive it).
///
/// Lock order: the allocator's state, then the event pool of the streams; the staging pool's
/// lock is never held with another lock.
pub(super) struct Shared {
    pub(super) streams: Arc<Streams>,
    pub(super) alloc: Arc<Allocator>,
    pub(super) staging: Arc<Staging>,
}

impl Shared {
    /// The shared state of a device with context `ctx` and one stream per queue.
    pub(super) fn new(ctx: Arc<CudaContext>, streams: [Arc<CudaStream>; 3]) -> Self {
        let streams = Arc::new(Streams::new(ctx, streams));
        Shared {
            alloc: Arc::new(Allocator::new(streams.clone())),
            staging: Arc::new(Staging::new(streams.clone())),
            streams,
        }
    }
}

/// An event of a [`CudaDevice`](super::CudaDevice) ([`Device::record`](crate::Device::record));
/// back to the device's event pool on drop.
pub(super) struct CudaFence {
    pub(super) event: Option<CudaEvent>,
    pub(super) shared: Arc<Shared>,
}

impl Drop for CudaFence {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.shared.streams.recycle_event(event);
        }
    }
}
