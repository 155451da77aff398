//! The CUDA backend's errors: [`CudaError`] (discovery and NVRTC compilation), and how driver
//! and backend errors become the runtime's [`Error`]: `Error::DeviceUnavailable` when the GPU
//! cannot be used at all, else `Error::Device` with what was being done and the driver's words.

use std::fmt;

use cudarc::driver::result::DriverError;

use super::discovery::{self, GpuUnavailable};
use crate::error::Error;

/// An error of the CUDA backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// The GPU (driver, device or NVRTC) cannot be used at all.
    #[error("GPU unavailable: {0}")]
    Unavailable(#[from] GpuUnavailable),

    /// NVRTC rejected a kernel source; `log` is NVRTC's compilation log.
    #[error(
        "NVRTC could not compile kernel source `{source_name}` for {target}: {status}\n\
         --- NVRTC log ---\n{log}"
    )]
    Compile {
        /// The name the source was compiled under (e.g. `numpy.cu`).
        source_name: String,
        /// The target, e.g. `sm_90 (CUBIN)`.
        target: String,
        /// NVRTC's status string, e.g. `NVRTC_ERROR_COMPILATION`.
        status: String,
        /// NVRTC's program log (the compiler's diagnostics).
        log: String,
    },

    /// An NVRTC call other than the compilation itself failed.
    #[error("NVRTC call `{call}` failed for kernel source `{source_name}`: {status}")]
    Nvrtc {
        /// The name the source was compiled under.
        source_name: String,
        /// The NVRTC function, e.g. `nvrtcGetCUBIN`.
        call: &'static str,
        /// NVRTC's status string.
        status: String,
    },

    /// NVRTC supports no architecture usable for the requested compute capability.
    #[error(
        "NVRTC {nvrtc_version} cannot compile kernel source `{source_name}` for sm_{arch}: \
         it supports only {supported:?}"
    )]
    UnsupportedArch {
        /// The name of the source being compiled.
        source_name: String,
        /// The requested architecture as `10 * major + minor` (e.g. 90).
        arch: u32,
        /// NVRTC's version, `major.minor`.
        nvrtc_version: String,
        /// The architectures NVRTC supports (`nvrtcGetSupportedArchs`).
        supported: Vec<u32>,
    },

    /// A kernel source or its name contains a NUL byte and cannot be passed to NVRTC.
    #[error("kernel source `{source_name}` (or its name) contains a NUL byte")]
    NulInSource {
        /// The name of the source.
        source_name: String,
    },
}

/// A driver error as text: its name (`CUDA_ERROR_OUT_OF_MEMORY`) and, when the driver is
/// loaded, its description. Never calls into a driver that is not loaded.
pub(super) fn driver_error_text(e: DriverError) -> String {
    let name = format!("{:?}", e.0);
    if !discovery::libcuda_present() {
        return name;
    }
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// `Error::Device` for a failed driver call: `what` says which operation (and on what).
pub(super) fn gpu_err(what: impl fmt::Display, e: DriverError) -> Error {
    Error::Device(format!("{what}: {}", driver_error_text(e)))
}

/// The runtime's error for an error of the CUDA backend: `GpuUnavailable` when the GPU cannot
/// be used at all, else `Gpu` with the full message (for a compile error, NVRTC's log).
pub(super) fn from_cuda(e: CudaError) -> Error {
    match e {
        CudaError::Unavailable(reason) => Error::DeviceUnavailable(reason.to_string()),
        other => Error::Device(other.to_string()),
    }
}

/// The error of a launch of a kernel that its source does not define.
pub(super) fn kernel_not_found(kernel: &str, source: &str) -> Error {
    Error::Device(format!("kernel `{kernel}` not found in {source}"))
}

/// `Error::DeviceUnavailable` for `reason`, logged: the caller runs on the CPU.
pub(super) fn unavailable(reason: GpuUnavailable) -> Error {
    tracing::info!("no GPU: {reason}; running on the CPU");
    Error::DeviceUnavailable(reason.to_string())
}
