//! `#[offload(cost = ...)]`: the annotator's estimate of the CPU cost replaces
//! calibration in the cost model, and so drives automatic placement.

use std::sync::Arc;

use bach_runtime::{
    offload, Config, Graph, KernelSource, NdArraySplit, Placement, SimulatedDevice,
};
use ndarray::Array1;

/// A kernel source for `gpu = "..."`: `explain` compiles and launches nothing,
/// so the code is a placeholder.
const BACH_KERNELS: KernelSource = KernelSource {
    name: "cost_estimate.cu",
    code: "/* not compiled: explain only */",
};

/// Estimated expensive: 1000 ns per element.
#[offload(split = NdArraySplit, gpu = "twice", cost = 1000.0)]
pub fn twice_expensive(a: &Array1<f64>) -> Array1<f64> {
    a * 2.0
}

/// The same function without an estimate: calibration measures it.
#[offload(split = NdArraySplit, gpu = "twice")]
pub fn twice_measured(a: &Array1<f64>) -> Array1<f64> {
    a * 2.0
}

/// Estimated nearly free: 0.001 ns per element.
#[offload(split = NdArraySplit, gpu = "twice", cost = 0.001)]
pub fn twice_cheap(a: &Array1<f64>) -> Array1<f64> {
    a * 2.0
}

const N: usize = 10_000;

/// Workers the CPU prediction divides by: the pool's threads, but no more than
/// the stage's CPU batches of 4096 elements (`cost::predict`).
fn workers() -> f64 {
    rayon::current_num_threads().min(N.div_ceil(4096)).max(1) as f64
}

/// A graph with the default configuration (automatic placement) and a large
/// simulated device.
fn graph() -> Graph {
    let g = Graph::with_config(Config::default());
    g.set_device(Some(Arc::new(SimulatedDevice::with_capacity(1 << 30))));
    g
}

#[test]
fn the_estimate_is_the_cpu_prediction_and_sends_the_stage_to_the_device() {
    let x = Array1::linspace(0.0, 1.0, N);
    let g = graph();
    let e = g
        .enter(|| g.explain(&twice_expensive(&x)))
        .expect("explain");
    assert_eq!(e.stages.len(), 1, "{e}");
    let stage = &e.stages[0];
    assert_eq!(stage.ops, ["twice_expensive"], "{e}");
    assert_eq!(stage.elements, Some(N), "{e}");
    let expected = 1000e-9 * N as f64 / workers();
    assert!(
        (stage.cost.cpu_s - expected).abs() <= expected * 0.01,
        "predicted {} s on the CPU, expected {expected} s\n{e}",
        stage.cost.cpu_s
    );
    assert_eq!(stage.placement, Placement::Device, "{e}");
}

#[test]
fn without_an_estimate_the_function_is_measured() {
    let x = Array1::linspace(0.0, 1.0, N);
    let g = graph();
    let e = g.enter(|| g.explain(&twice_measured(&x))).expect("explain");
    assert_eq!(e.stages.len(), 1, "{e}");
    let cpu_s = e.stages[0].cost.cpu_s;
    let estimated = 1000e-9 * N as f64 / workers();
    // Doubling an element takes nanoseconds, not a microsecond.
    assert!(
        cpu_s > 0.0 && cpu_s < estimated / 2.0,
        "measured {cpu_s} s, the estimate of the same function gives {estimated} s\n{e}"
    );
}

#[test]
fn a_tiny_estimate_keeps_the_stage_on_the_cpu() {
    let x = Array1::linspace(0.0, 1.0, N);
    let g = graph();
    let e = g.enter(|| g.explain(&twice_cheap(&x))).expect("explain");
    assert_eq!(e.stages.len(), 1, "{e}");
    let stage = &e.stages[0];
    let expected = 0.001e-9 * N as f64 / workers();
    assert!(
        (stage.cost.cpu_s - expected).abs() <= expected * 0.01,
        "predicted {} s on the CPU, expected {expected} s\n{e}",
        stage.cost.cpu_s
    );
    // The stage is eligible: only the cost keeps it on the CPU (here the CPU
    // beats even the device's launch, so the full prediction is skipped).
    assert!(
        stage.reason.contains("launch(es) alone"),
        "the stage is eligible: only the cost keeps it on the CPU\n{e}"
    );
    assert_eq!(stage.placement, Placement::Cpu, "{e}");
}
