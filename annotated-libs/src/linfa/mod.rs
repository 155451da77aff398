//! linfa, annotated: the ML workloads' functions of the linfa crates as lazy stubs.

pub mod clustering;
