//! Accelerator devices: the [`Device`] trait, implemented side by side by the
//! CUDA device (`cuda.rs`, through cudarc) and by [`SimulatedDevice`] (host
//! memory with a hard capacity and counted transfers, for tests).
//!
//! The device executor (`exec/device.rs`) only talks to this trait: it
//! allocates buffers, uploads pieces, launches one kernel per call, and
//! downloads the outputs that escape a stage. Kernels follow one launch
//! convention (see `annotated-libs/kernels/numpy.cu`): `name_{dtype}(n, args...)`
//! where each function parameter becomes a device pointer (arrays) or a value
//! (scalars), in declaration order, followed by the output pointer.

pub(crate) mod codec;
pub(crate) mod cuda;
mod simulated;

use std::any::Any;

pub use cuda::CudaDevice;
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
#[derive(Debug)]
pub enum KernelArg<'b> {
    /// A device pointer the kernel reads.
    In(&'b DeviceBuffer),
    /// A device pointer the kernel writes.
    Out(&'b DeviceBuffer),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
}

/// One kernel launch over `n` elements.
pub struct Launch<'b> {
    /// The kernel source the kernel lives in.
    pub source: KernelSource,
    /// The kernel's full name, e.g. `add_f64`.
    pub kernel: String,
    /// Elements to process.
    pub n: usize,
    /// The parameters after `n`.
    pub args: Vec<KernelArg<'b>>,
    /// What the kernel computes, run on host copies of the buffers. Simulated
    /// devices use it in place of compiled kernels; real devices ignore it.
    pub emulate: &'b HostFn<'b>,
}

/// A computation over host copies of device buffers: input bytes in, output
/// bytes out (see [`Launch::emulate`] and [`GpuCall::host`]).
pub type HostFn<'b> = dyn Fn(&[&[u8]]) -> Result<Vec<Vec<u8>>> + Sync + 'b;

/// One call of a [`GpuFn`]: the device, this batch's buffers and the call's
/// scalars. The function writes its result into `output`.
pub struct GpuCall<'b> {
    /// The device the stage runs on.
    pub device: &'b dyn Device,
    /// Elements in this batch.
    pub n: usize,
    /// The array arguments' buffers, in declaration order.
    pub inputs: Vec<&'b DeviceBuffer>,
    /// The scalar arguments, in declaration order.
    pub scalars: Vec<KernelArg<'b>>,
    /// Where the result goes (`n` elements).
    pub output: &'b DeviceBuffer,
    /// The call's CPU function over host copies of `inputs`, returning the
    /// result's bytes: what a [`Launch::emulate`] inside the function can use
    /// on simulated devices.
    pub host: &'b HostFn<'b>,
}

/// A Rust function implementing an annotated function on device values
/// (`#[offload(gpu_fn = path)]`).
pub type GpuFn = fn(&GpuCall<'_>) -> Result<()>;

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
    /// Nanoseconds the transfers and launches would take by the device's
    /// [`DeviceCosts`](crate::DeviceCosts) (simulated devices; 0 elsewhere).
    pub modelled_ns: u64,
}

/// An accelerator Bach can run stages on.
pub trait Device: Send + Sync {
    /// A name for messages and `explain`.
    fn name(&self) -> String;
    /// Bytes Bach may allocate on the device now.
    fn free_memory(&self) -> usize;
    /// Allocates `bytes` of device memory; `Error::DeviceOutOfMemory` when it does not fit.
    fn alloc(&self, bytes: usize) -> Result<DeviceBuffer>;
    /// Copies `src` into the start of `dst`.
    fn upload(&self, src: &[u8], dst: &DeviceBuffer) -> Result<()>;
    /// Copies the start of `src` into `dst`.
    fn download(&self, src: &DeviceBuffer, dst: &mut [u8]) -> Result<()>;
    /// Launches a kernel (asynchronously on real devices; ordered before later
    /// launches and downloads).
    fn launch(&self, launch: &Launch<'_>) -> Result<()>;
    /// Waits for all launched work.
    fn synchronize(&self) -> Result<()>;
    /// Counters since the device was created.
    fn stats(&self) -> TransferStats;
    /// What transfers and kernels cost on this device (for placement).
    fn costs(&self) -> crate::cost::DeviceCosts {
        crate::cost::DeviceCosts::default()
    }
}

/// The process's GPU, discovered on first need: the first CUDA device, or why
/// there is none (no driver, no device, no NVRTC). Never panics.
pub(crate) fn default_device() -> std::result::Result<std::sync::Arc<dyn Device>, String> {
    static DEVICE: std::sync::OnceLock<std::result::Result<std::sync::Arc<dyn Device>, String>> =
        std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let found = open_cuda();
            if let Err(reason) = &found {
                tracing::info!("no GPU: {reason}; running on the CPU");
            }
            found
        })
        .clone()
}

fn open_cuda() -> std::result::Result<std::sync::Arc<dyn Device>, String> {
    let device = CudaDevice::open(0).map_err(|e| match e {
        crate::Error::GpuUnavailable(reason) => reason,
        e => e.to_string(),
    })?;
    Ok(device)
}
