//! Benchmarks of the paper's workloads.
