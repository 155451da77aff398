//! Libraries annotated for Bach.
//!
//! - [`ndarray`]: ndarray itself, annotated: lazy arrays with ndarray's operators,
//!   float methods and reductions ([`ndarray::LazyArray`]), generated from one op
//!   table; [`ndarray::eager`] gives plain ndarray the same names, so one source
//!   compiles both ways.
//! - [`cpu::numpy`]: a plain NumPy-style library over ndarray. It knows nothing of Bach.
//! - [`numpy`]: the same functions, annotated with `#[offload]`: swapping
//!   `use annotated_libs::cpu::numpy as np` for `use annotated_libs::numpy as np`
//!   makes a program lazy, batched and offloadable.
//! - [`linfa`]: linfa's PCA, truncated SVD, standard scaler and nearest
//!   neighbours, annotated: fitted models are graph values, broadcast to row batches.
//! - [`polars`]: polars' eager column API, annotated (lazy columns, CSV
//!   columns parsed batch by batch inside the plan); [`polars::eager`] gives plain
//!   polars the same names.
//! - [`workloads`]: the paper's workloads, each written once and compiled eagerly and lazily.

pub mod cpu;
pub mod linfa;
pub mod ndarray;
pub mod numpy;
pub mod polars;
pub mod workloads;
