//! Libraries annotated for Bach.
//!
//! - [`cpu::numpy`]: a plain NumPy-style library over ndarray. It knows nothing of Bach.
//! - [`numpy`]: the same functions, annotated with `#[offload]`: swapping
//!   `use annotated_libs::cpu::numpy as np` for `use annotated_libs::numpy as np`
//!   makes a program lazy, batched and offloadable.
//! - [`workloads`]: the paper's workloads, written once and compiled against both.

pub mod cpu;
pub mod ndarray;
pub mod numpy;
pub mod workloads;
