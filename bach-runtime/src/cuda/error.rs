//! [`CudaError`]: the error type of the CUDA backend (discovery and NVRTC compilation).

use super::discovery::GpuUnavailable;

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

    /// A CUDA driver call failed.
    #[error("CUDA driver call `{call}` failed: {status}")]
    Driver {
        /// The driver function, e.g. `cuDeviceGetName`.
        call: &'static str,
        /// The driver's error.
        status: String,
    },
}
