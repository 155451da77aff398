//! Kernel launches: the grid, and the launch itself.
//!
//! 256 threads per block; elementwise kernels get `min(ceil(n / 256), 32 * SMs)` blocks (at
//! least one) and walk the rest with grid-stride loops. Reductions (a launch whose shape is
//! [`LaunchShape::Reduction`]) get exactly `partials` blocks, one per entry of their output
//! buffer, so every partial the host reads back is written.

use std::ffi::c_void;

use cudarc::driver::result as driver;

use super::error::gpu_err;
use super::module::LoadedModule;
use super::CudaDevice;
use crate::device::{KernelSource, LaunchShape, Queue};
use crate::error::{Error, Result};

/// Threads per block of every launch.
pub const THREADS_PER_BLOCK: u32 = 256;
/// Elementwise launches use at most this many blocks per multiprocessor.
pub const BLOCKS_PER_SM: u32 = 32;

/// Blocks of an elementwise launch over `n` elements on a device with `sm_count`
/// multiprocessors: `min(ceil(n / 256), 32 * sm_count)`, at least 1.
pub fn elementwise_blocks(n: usize, sm_count: u32) -> u32 {
    let needed = n.div_ceil(THREADS_PER_BLOCK as usize);
    let cap = (sm_count.max(1) as usize).saturating_mul(BLOCKS_PER_SM as usize);
    needed.min(cap).clamp(1, u32::MAX as usize) as u32
}

/// Blocks of a launch of `kernel` over `n` elements shaped `shape` on a device with `sm_count`
/// multiprocessors: [`elementwise_blocks`] for an elementwise kernel, one per partial for a
/// reduction (an error for none).
pub(super) fn grid_blocks(
    kernel: &str,
    n: usize,
    shape: LaunchShape,
    sm_count: u32,
) -> Result<u32> {
    match shape {
        LaunchShape::Reduction { partials: 0 } => Err(Error::Device(format!(
            "reduction kernel `{kernel}` launched with no partials"
        ))),
        LaunchShape::Reduction { partials } => Ok(partials.min(i32::MAX as usize) as u32),
        LaunchShape::Elementwise => Ok(elementwise_blocks(n, sm_count)),
    }
}

/// One kernel parameter's value, kept alive (and in place) until the launch call returns.
pub(super) enum Param {
    U64(u64),
    F32(f32),
    F64(f64),
    I32(i32),
}

impl CudaDevice {
    /// Launches `kernel` of `source` on `queue`'s stream over `n` elements with the kernel
    /// parameters `params` (`n` first, then the arguments as device pointers and values), on
    /// the grid of [`grid_blocks`] (a reduction writes one partial per block). Counts nothing in
    /// the device's statistics.
    pub(super) fn launch_params(
        &self,
        queue: Queue,
        source_code: &KernelSource,
        kernel: &str,
        n: usize,
        mut params: Vec<Param>,
        shape: LaunchShape,
    ) -> Result<()> {
        let source = source_code.name;
        self.shared.streams.bind()?;
        let module = self.modules.get(source_code, |compiled| {
            LoadedModule::load(&self.shared.streams.ctx, source, compiled)
        })?;
        let function = module.function(kernel)?;
        let blocks = grid_blocks(kernel, n, shape, self.sm_count)?;
        let mut pointers: Vec<*mut c_void> = params
            .iter_mut()
            .map(|p| match p {
                Param::U64(v) => (v as *mut u64).cast(),
                Param::F32(v) => (v as *mut f32).cast(),
                Param::F64(v) => (v as *mut f64).cast(),
                Param::I32(v) => (v as *mut i32).cast(),
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
                self.shared.streams.stream(queue).cu_stream(),
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
