//! The CUDA backend: device discovery, NVRTC compilation of kernel sources, device memory.
//!
//! - [`discovery`]: is a CUDA driver / NVRTC loadable, which devices exist, and why a GPU
//!   cannot be used ([`GpuUnavailable`](discovery::GpuUnavailable)), summed up for users by
//!   [`gpu_status`](discovery::gpu_status). Nothing here panics when CUDA is missing.
//! - [`compile`]: NVRTC compilation of kernel sources (CUBIN preferred, PTX fallback) with an
//!   on-disk cache.
//! - [`error`]: [`CudaError`](error::CudaError), the error type of this module.

pub mod compile;
pub mod discovery;
pub mod error;
