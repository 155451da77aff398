//! Accelerator devices: the [`Device`] trait, implemented side by side by the
//! CUDA device (`cuda/`, through cudarc) and by [`SimulatedDevice`] (host
//! memory with a hard capacity and counted transfers, for tests).
//!
//! The device executor (`exec/device.rs`) only talks to this trait: it
//! allocates buffers, uploads pieces, launches one kernel per call, and
//! downloads the outputs that escape a stage. Kernels follow one launch
//! convention (see `annotated-libs/kernels/numpy.cu`): `name_{dtype}(n, args...)`
//! where each function parameter becomes a device pointer (arrays) or a value
//! (scalars), in declaration order, followed by the output pointer.

pub(crate) mod codec;
mod costs;
pub(crate) mod cuda;
mod linalg;
mod simulated;

use std::any::Any;

pub use costs::DeviceCosts;
pub use cuda::CudaDevice;
pub use linalg::{Gemm, MatrixRef, SymmetricEigen};
pub use simulated::{SimulatedDevice, SimulatedDeviceConfig};

use crate::error::Result;

/// CUDA C source of a family of kernels, shipped by an annotated library and
/// compiled at first use for the device's architecture.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// The source's name, e.g. `numpy.cu` (appears in errors and cache names).
    pub name: &'static str,
    /// The CUDA C text.
    pub code: &'static str,
}

/// Memory on a device. Freed (returned to the device's pool) on drop.
pub struct DeviceBuffer {
    pub(crate) bytes: usize,
    /// The device's own representation (a CUDA slice, a simulated allocation).
    pub(crate) raw: Box<dyn Any + Send + Sync>,
}

impl DeviceBuffer {
    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// True for a zero-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({} bytes)", self.bytes)
    }
}

/// One kernel parameter after the element count.
#[derive(Debug, Clone, Copy)]
pub enum KernelArg<'b> {
    /// A device pointer the kernel reads.
    In(&'b DeviceBuffer),
    /// A device pointer the kernel writes.
    Out(&'b DeviceBuffer),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A 32-bit signed integer.
    I32(i32),
    /// A 64-bit unsigned integer (a count, such as a number of components).
    U64(u64),
}

/// How a kernel's threads are laid out over its `n` elements: said by the
/// launch, never inferred from the kernel's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchShape {
    /// Grid-stride loop over the elements; the device picks the grid.
    Elementwise,
    /// A block-level reduction: `partials` blocks, each reducing its share of
    /// the elements into one partial of the output (which holds `partials`
    /// values).
    Reduction {
        /// Blocks, and partials written (at least 1).
        partials: usize,
    },
}

/// One kernel launch over `n` elements.
pub struct Launch<'b> {
    /// The kernel source the kernel lives in.
    pub source: KernelSource,
    /// The kernel's full name, e.g. `add_f64`.
    pub kernel: String,
    /// Elements to process.
    pub n: usize,
    /// How the kernel's threads cover the elements.
    pub shape: LaunchShape,
    /// The parameters after `n`.
    pub args: Vec<KernelArg<'b>>,
    /// What the kernel computes, defined on the host: the output buffers'
    /// bytes from the input buffers' bytes (for a reduction, every partial).
    /// It is the annotated CPU function the kernel implements; devices that
    /// run compiled kernels ignore it, the simulated device runs it in their
    /// place.
    pub reference: &'b HostFn<'b>,
}

/// A computation over host copies of device buffers: input bytes in, output
/// bytes out (see [`Launch::reference`] and [`DeviceCall::host`]).
pub type HostFn<'b> = dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>> + Sync + 'b;

/// One array argument of a [`DeviceCall`], on the device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceInput<'b> {
    /// The argument's bytes: `rows` rows of `width` numbers, row-major, or a
    /// value passed whole, laid out as its codec says.
    pub buf: &'b DeviceBuffer,
    /// Rows of this batch (`Some(n)`) for an argument split by rows; `None`
    /// for a value passed whole to every batch (a fitted model, a matrix
    /// broadcast).
    pub rows: Option<usize>,
    /// Numbers per row (a matrix's columns; 1 for a 1-D array or a value
    /// passed whole).
    pub width: usize,
    /// The host value of an argument passed whole, when it lives on the host
    /// (it does for values read before the stage): a device function reads
    /// its small metadata there (a model's dimensions, its class labels)
    /// and its parameters from `buf`. `None` for split arguments.
    pub host: Option<&'b (dyn std::any::Any + Send + Sync)>,
}

impl<'b> DeviceInput<'b> {
    /// The host value of an argument passed whole, as a `T` (`None` when it
    /// is not one, or not on the host).
    pub fn host_value<T: 'static>(&self) -> Option<&'b T> {
        self.host.and_then(|v| v.downcast_ref::<T>())
    }
}

/// One call of a [`DeviceFn`]: the device, this batch's buffers and the call's
/// scalars. The function allocates its result on the device and returns it.
pub struct DeviceCall<'b> {
    /// The device the stage runs on.
    pub device: &'b dyn Device,
    /// Rows in this batch.
    pub n: usize,
    /// The array arguments, in declaration order.
    pub inputs: Vec<DeviceInput<'b>>,
    /// The scalar arguments, in declaration order.
    pub scalars: Vec<KernelArg<'b>>,
    /// The call's CPU function over host copies of `inputs` (the bytes of
    /// each, in order), returning the result's bytes: the
    /// [`Launch::reference`] of a launch inside the function.
    pub host: &'b HostFn<'b>,
}

/// What a [`DeviceFn`] produced: for a function split by rows, `n` rows of
/// `width` numbers; for a reduction (its result merged across batches by its
/// split type), this batch's partial, one value in its codec's layout.
#[derive(Debug)]
pub struct DeviceOutput {
    /// The result on the device, written by work on [`Queue::Compute`].
    pub buf: DeviceBuffer,
    /// Numbers per row of the result (its codec's width; 1 for a 1-D array).
    pub width: usize,
}

/// A Rust function implementing an annotated function on device values
/// (`#[offload(gpu_fn = path)]`). It enqueues its work on [`Queue::Compute`].
pub type DeviceFn = fn(&DeviceCall<'_>) -> Result<DeviceOutput>;

/// Transfers and launches a device has performed (for tests and `explain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Host-to-device copies.
    pub uploads: u64,
    /// Bytes copied host to device.
    pub upload_bytes: u64,
    /// Device-to-host copies.
    pub downloads: u64,
    /// Bytes copied device to host.
    pub download_bytes: u64,
    /// Kernel launches.
    pub launches: u64,
    /// Most bytes allocated at once.
    pub peak_bytes: u64,
    /// Nanoseconds from the device's creation to the end of its last transfer
    /// or launch, by its [`DeviceCosts`](super::DeviceCosts) with the queues
    /// overlapping as their events allow (simulated devices; 0 elsewhere).
    pub modelled_ns: u64,
    /// Nanoseconds the transfers and launches would take one after another, with no overlap
    /// (simulated devices; 0 elsewhere). `modelled_ns` below this is overlap.
    pub serial_ns: u64,
}

/// The device's work queues (CUDA streams on a GPU). Work on one queue runs in
/// the order it was enqueued; work on different queues may overlap, ordered
/// only by [`Event`]s. The device executor keeps all three busy at once: while
/// batch `i` computes, batch `i + 1` uploads and batch `i - 1` downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Host-to-device copies.
    Upload,
    /// Kernels (and the default queue of [`Device::alloc`], [`Device::upload`],
    /// [`Device::launch`] and [`Device::download`]).
    Compute,
    /// Device-to-host copies.
    Download,
}

impl Queue {
    /// Every queue, in index order.
    pub const ALL: [Queue; 3] = [Queue::Upload, Queue::Compute, Queue::Download];

    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A point in one queue's work ([`Device::record`]): it completes when
/// everything enqueued on that queue before it has.
pub struct Event {
    /// The device's own representation (a CUDA event, a simulated clock).
    pub(crate) raw: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Event")
    }
}

/// A device-to-host copy in flight ([`Device::start_download`]): the bytes land
/// in memory the device owns (pinned staging memory on a GPU), and
/// [`Device::finish_download`] waits for them and copies them out.
pub struct PendingDownload {
    /// Bytes being copied.
    pub(crate) bytes: usize,
    /// The device's own representation.
    pub(crate) raw: Box<dyn Any + Send>,
}

impl PendingDownload {
    /// Bytes being copied.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// True for a zero-byte download.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

impl std::fmt::Debug for PendingDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingDownload({} bytes)", self.bytes)
    }
}

/// An accelerator Bach can run stages on.
///
/// Work is enqueued on [`Queue`]s and may still be running when a method
/// returns; [`Event`]s order work across queues and let the host wait. The
/// rules every implementation keeps (and [`SimulatedDevice`] checks):
/// - a buffer from [`alloc_on`](Device::alloc_on)`(q, ..)` is first used by
///   work on `q` (or work ordered after it). Blocks freed by earlier work, on
///   any queue, are reused only after that work: the device orders the reuse
///   itself, the host never has to wait before dropping a buffer;
/// - [`upload_on`](Device::upload_on) returns once `src` may be reused;
/// - work on one queue that reads what another queue wrote must be ordered
///   after it with [`record`](Device::record) and [`wait`](Device::wait).
pub trait Device: Send + Sync {
    /// A name for messages and `explain`.
    fn name(&self) -> String;
    /// Bytes Bach may allocate on the device now.
    fn free_memory(&self) -> usize;
    /// Allocates `bytes` of device memory whose first use is work on `queue`;
    /// `Error::DeviceOutOfMemory` when it does not fit.
    fn alloc_on(&self, queue: Queue, bytes: usize) -> Result<DeviceBuffer>;
    /// Enqueues a copy of `src` into the start of `dst` on `queue`. Returns once
    /// `src` may be reused (the copy itself may still be running).
    fn upload_on(&self, queue: Queue, src: &[u8], dst: &DeviceBuffer) -> Result<()>;
    /// Enqueues a kernel on `queue`.
    fn launch_on(&self, queue: Queue, launch: &Launch<'_>) -> Result<()>;
    /// Enqueues a device-to-device copy of `bytes` bytes from `src` at byte
    /// `src_offset` to `dst` at byte `dst_offset` on `queue` (two different
    /// buffers; ranges checked).
    fn copy_on(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        src_offset: usize,
        dst: &DeviceBuffer,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<()>;
    /// Enqueues a copy of the first `bytes` of `src` to the host on `queue`.
    /// `src` may be dropped once this returns.
    fn start_download(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        bytes: usize,
    ) -> Result<PendingDownload>;
    /// Waits for a download and copies its bytes into `dst` (of exactly its length).
    fn finish_download(&self, pending: PendingDownload, dst: &mut [u8]) -> Result<()>;
    /// An event that completes when the work enqueued on `queue` so far has.
    fn record(&self, queue: Queue) -> Result<Event>;
    /// Makes work enqueued on `queue` from now on wait for `event` (the host
    /// does not wait).
    fn wait(&self, queue: Queue, event: &Event) -> Result<()>;
    /// Blocks the host until `event` has completed.
    fn host_wait(&self, event: &Event) -> Result<()>;
    /// Waits for all enqueued work, on every queue.
    fn synchronize(&self) -> Result<()>;
    /// Counters since the device was created.
    fn stats(&self) -> TransferStats;
    /// What transfers and kernels cost on this device (for placement).
    fn costs(&self) -> DeviceCosts {
        DeviceCosts::default()
    }

    /// Allocates `bytes` for work on [`Queue::Compute`].
    fn alloc(&self, bytes: usize) -> Result<DeviceBuffer> {
        self.alloc_on(Queue::Compute, bytes)
    }
    /// Copies `src` into the start of `dst` on [`Queue::Compute`] (ordered
    /// before later launches there); returns once `src` may be reused.
    fn upload(&self, src: &[u8], dst: &DeviceBuffer) -> Result<()> {
        self.upload_on(Queue::Compute, src, dst)
    }
    /// Launches a kernel on [`Queue::Compute`].
    fn launch(&self, launch: &Launch<'_>) -> Result<()> {
        self.launch_on(Queue::Compute, launch)
    }
    /// Copies the start of `src` into `dst` after the work on
    /// [`Queue::Compute`], and waits for it.
    fn download(&self, src: &DeviceBuffer, dst: &mut [u8]) -> Result<()> {
        let pending = self.start_download(Queue::Compute, src, dst.len())?;
        self.finish_download(pending, dst)
    }

    /// Enqueues the matrix product `g` on `queue` (cuBLAS's `gemm` on a GPU), counted as a
    /// launch. It reads `A` and `B` (and `C` unless `beta` is 0) and writes `C`; other queues'
    /// work on them must be ordered with events, as for a launch. Every device checks `g`
    /// first (dimensions, leading dimensions, offsets, ranges): `Error::Device`. The default
    /// is for devices without linear algebra: `Error::Device` saying so.
    fn gemm_on(&self, queue: Queue, g: &Gemm<'_>) -> Result<()> {
        let _ = queue;
        g.check()?;
        Err(crate::error::Error::Device(format!(
            "{} has no matrix product ({})",
            self.name(),
            g.name()
        )))
    }
    /// Enqueues the symmetric eigensolve `e` on `queue` (cuSOLVER's `syevd` on a GPU, the
    /// solve's [`reference`](SymmetricEigen::reference) on the simulated device), counted
    /// as a launch: it reads the matrix and writes the eigenvalues and eigenvectors. A device
    /// may wait for the solve to check its status (the CUDA device does). The default is for
    /// devices without linear algebra: `Error::Device` saying so.
    fn symmetric_eigen_on(&self, queue: Queue, e: &SymmetricEigen<'_>) -> Result<()> {
        let _ = queue;
        e.check()?;
        Err(crate::error::Error::Device(format!(
            "{} has no symmetric eigensolver ({})",
            self.name(),
            e.name()
        )))
    }
}

/// An error unless bytes `offset..offset + bytes` lie within a `len`-byte
/// buffer (`what`: the transfer, for the message). Every device checks its
/// transfers with it before enqueueing them.
pub(crate) fn check_range(what: &str, offset: usize, bytes: usize, len: usize) -> Result<()> {
    match offset.checked_add(bytes) {
        Some(end) if end <= len => Ok(()),
        _ => Err(crate::error::Error::Device(format!(
            "{what} of {bytes} bytes at offset {offset} overruns a {len}-byte buffer"
        ))),
    }
}

/// The checks of [`Device::copy_on`], the same on every device: two different
/// buffers (each owns its block, so two references to one buffer are the only
/// overlap), and both ranges within them.
pub(crate) fn check_copy(
    src: &DeviceBuffer,
    src_offset: usize,
    dst: &DeviceBuffer,
    dst_offset: usize,
    bytes: usize,
) -> Result<()> {
    if std::ptr::eq(src, dst) {
        return Err(crate::error::Error::Device(
            "a device copy within one buffer is not supported".into(),
        ));
    }
    check_range("device copy source", src_offset, bytes, src.bytes)?;
    check_range("device copy destination", dst_offset, bytes, dst.bytes)
}

/// The process's GPU, discovered on first need: the first CUDA device, or why
/// there is none (no driver, no device, no NVRTC). Never panics.
pub(crate) fn default_device() -> &'static std::result::Result<std::sync::Arc<dyn Device>, String> {
    static DEVICE: std::sync::OnceLock<std::result::Result<std::sync::Arc<dyn Device>, String>> =
        std::sync::OnceLock::new();
    DEVICE.get_or_init(|| {
        let found = open_cuda();
        if let Err(reason) = &found {
            tracing::info!("no GPU: {reason}; running on the CPU");
        }
        found
    })
}

fn open_cuda() -> std::result::Result<std::sync::Arc<dyn Device>, String> {
    let device = CudaDevice::open(0).map_err(|e| match e {
        crate::error::Error::DeviceUnavailable(reason) => reason,
        e => e.to_string(),
    })?;
    Ok(device)
}
