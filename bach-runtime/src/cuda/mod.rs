//! The CUDA backend: device discovery, NVRTC compilation of kernel sources, device memory.
