//! Helpers shared by the integration tests (each test binary uses some).
#![allow(dead_code)]

use std::sync::Arc;

use bach_runtime::{DeviceCosts, SimulatedDevice, SimulatedDeviceConfig};
use ndarray::Array1;

/// Deterministic uniform values in `lo..hi` (xorshift; no dependency needed).
pub fn uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Array1<f64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    Array1::from_shape_fn(n, |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
    })
}

/// The bit patterns of `a`, for exact comparisons.
pub fn bits(a: &Array1<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

/// A simulated device predicted far faster than the CPU (so `auto` places work
/// on it); `fail_kernel` names a kernel that fails.
pub fn fast_device(fail_kernel: Option<&str>) -> Arc<SimulatedDevice> {
    Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
        capacity: 1 << 32,
        fail_kernel: fail_kernel.map(Into::into),
        costs: DeviceCosts {
            link_bytes_per_s: 1e13,
            link_latency_s: 1e-9,
            launch_s: 1e-9,
            elements_per_s: 1e13,
        },
        ..Default::default()
    }))
}
