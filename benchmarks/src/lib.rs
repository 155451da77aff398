//! Benchmarks of the paper's workloads: the `bach-bench` CLI (one workload in
//! one mode, timed) and the `bach-sweep` driver (workloads x modes x sizes,
//! with a markdown table and SVG charts). See `benchmarks/README.md`.
//!
//! Modes: `cpu` (the plain CPU library, op at a time), `bach` (the same
//! workload source through the annotated library and `evaluate`), `fused`
//! (one hand-written rayon loop: the CPU limit), `gpu` (hand-written device code, one kernel per operation).
//! Workloads are registered in one place, [`workloads::REGISTRY`].

pub mod bench;
pub mod blobs;
pub mod cli;
pub mod gpu;
pub mod inputs;
pub mod record;
pub mod report;
pub mod sweep;
pub mod term;
pub mod workloads;
