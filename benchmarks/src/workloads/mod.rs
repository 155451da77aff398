//! The registry of benchmark workloads.
//!
//! Each workload lives in its own file and provides one [`Workload`]: how to
//! make its inputs, and one function per mode over the same inputs. Inputs
//! are of any type (arrays, CSV files, matrices and labels): each workload
//! generates its own and downcasts them back with [`inputs_of`]. Registering
//! a new workload is one line in [`REGISTRY`]; the CLI, the sweep and the
//! tests pick it up from there.

mod blackscholes;
mod crime_index;
mod dbscan;
mod haversine;
mod pca;
mod standardize;
mod tsvd;

use std::any::Any;
use std::time::{Duration, Instant};

use bach_runtime::Evaluate;
use ndarray::Array1;

use crate::inputs::{self, InputSpec};

/// A workload's inputs, generated outside the timed region. Any type: each
/// workload downcasts its own (see [`inputs_of`]).
pub type Inputs = dyn Any + Send + Sync;

/// An error of a workload's own code (a bad input file, a library's error);
/// `bach_runtime::Error` converts into it with `?`.
pub type WorkloadError = Box<dyn std::error::Error + Send + Sync>;

/// A workload's results, in the order of [`Workload::outputs`]: arrays of
/// `f64` (matrices flattened, labels and counts as `f64`).
pub type Outputs = Vec<Array1<f64>>;

/// A mode's implementation of a workload (cpu, fused): results from inputs.
pub type RunFn = fn(&Inputs) -> Result<Outputs, WorkloadError>;

/// Hand-written device code for a workload (gpu mode), on the device `Gpu` wraps.
pub type GpuFn = fn(&crate::gpu::Gpu<'_>, &Inputs) -> Result<Outputs, WorkloadError>;

/// One timed run of a workload.
#[derive(Debug)]
pub struct Timed {
    /// Building the computation before it runs (for bach: recording the graph).
    pub init: Duration,
    /// The computation (for bach: `evaluate`).
    pub runtime: Duration,
    /// The results, dropped by the caller outside the timed region.
    pub outputs: Outputs,
}

/// How `--check` compares a mode's results with cpu mode's.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Bit for bit; within [`crate::bench::GPU_TOLERANCE`] when the work ran on a GPU.
    Exact,
    /// `|got - expected| <= rel * max(1, |expected|)` per element, NaN matching NaN
    /// (or the GPU tolerance, when larger and the work ran on a GPU).
    Within(f64),
    /// The workload's own comparison (up to sign, labels up to renaming, ...):
    /// `Err` says what differs.
    Custom(fn(got: &Outputs, expected: &Outputs) -> Result<(), String>),
}

/// A Python peer the sweep times beside a workload (the sweep's `anchors`
/// mode): `python3 benchmarks/anchors/SCRIPT WORKLOAD LOG2 TRIALS`, which
/// prints one line with `median_s=SECONDS` (and optionally `ns_per_elem=NS`,
/// preferred for its precision). Skipped, with the reason printed, when
/// python3 or one of `modules` is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The label in the sweep's records, table and charts (`numpy`, `pandas`,
    /// `polars-lazy`, `scikit-learn`, ...).
    pub label: &'static str,
    /// The script's file name in `benchmarks/anchors`.
    pub script: &'static str,
    /// Its first argument: the workload as the script names it.
    pub workload: &'static str,
    /// Python modules it imports (checked before it runs).
    pub modules: &'static [&'static str],
}

/// A benchmark workload: its inputs and its implementation in each mode.
pub struct Workload {
    /// The name given to `--benchmark`.
    pub name: &'static str,
    /// One line for `--help` and the README.
    pub description: &'static str,
    /// The default of `--size` (LOG2) for this workload.
    pub default_size: u32,
    /// What `--size` counts, for reports: e.g. `"2^LOG2 elements"`.
    pub size_meaning: &'static str,
    /// The sizes (LOG2) `bach-sweep` runs when `--sizes` is not given: the
    /// range in which the workload's every mode finishes in seconds to a
    /// minute on a small machine.
    pub sweep_sizes: &'static [u32],
    /// The inputs for size `2^log2` from `seed` (generated, or loaded from an
    /// on-disk cache). Not timed.
    pub generate: fn(log2: u32, seed: u64) -> Result<Box<Inputs>, WorkloadError>,
    /// Names of the result arrays (for `--check` messages).
    pub outputs: &'static [&'static str],
    /// `cpu` mode: the plain CPU library, op at a time.
    pub cpu: RunFn,
    /// `bach` mode: the same source on the annotated library, recorded and
    /// evaluated in the thread's current graph. Times itself (see [`time_lazy`]).
    pub bach: fn(&Inputs) -> Result<Timed, WorkloadError>,
    /// `fused` mode: one hand-written loop computing the same result (the CPU
    /// limit); `None` when the workload has none.
    pub fused: Option<RunFn>,
    /// `gpu` mode: hand-written device code with explicit transfers (see
    /// [`crate::gpu`]); `None` when the workload has none.
    pub gpu: Option<GpuFn>,
    /// Bach's plan for the workload in the current graph (`--explain`).
    pub explain: fn(&Inputs) -> Result<bach_runtime::Explain, WorkloadError>,
    /// How `--check` compares results with cpu mode's.
    pub check: Check,
    /// The line printed as `Result: LINE` before the median lines (`None`: none).
    pub result_line: Option<fn(&Outputs) -> String>,
    /// Python peers the sweep times beside this workload.
    pub anchors: &'static [Anchor],
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every workload the CLI can run, in the order listed in `--help`.
pub static REGISTRY: &[&Workload] = &[
    &blackscholes::WORKLOAD,
    &haversine::WORKLOAD,
    &tsvd::WORKLOAD,
    &pca::WORKLOAD,
    &dbscan::WORKLOAD,
    &standardize::WORKLOAD,
    &crime_index::WORKLOAD,
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    REGISTRY.iter().copied().find(|w| w.name == name)
}

/// The registered names, in registry order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|w| w.name).collect()
}

/// Times a lazy workload in the current graph: `record` (Init) returns the
/// lazy handles, `evaluate` on them is the Runtime, and `collect` turns the
/// evaluated values into [`Outputs`] after the clock stops.
pub fn time_lazy<E: Evaluate>(
    record: impl FnOnce() -> E,
    collect: impl FnOnce(E::Output) -> Outputs,
) -> Result<Timed, WorkloadError> {
    let t0 = Instant::now();
    let handles = record();
    let init = t0.elapsed();
    let t1 = Instant::now();
    let values = bach_runtime::evaluate(handles)?;
    let runtime = t1.elapsed();
    Ok(Timed {
        init,
        runtime,
        outputs: collect(values),
    })
}

/// The inputs a workload generated, as their own type `T`. `Err` when they
/// are another workload's (a registry mistake, reported rather than a panic).
pub fn inputs_of<T: Any>(x: &Inputs) -> Result<&T, WorkloadError> {
    x.downcast_ref::<T>().ok_or_else(|| {
        format!(
            "inputs of another workload (expected {})",
            std::any::type_name::<T>()
        )
        .into()
    })
}

/// The inputs of the elementwise workloads (Black-Scholes, Haversine): one
/// uniform array per [`InputSpec`], each `2^log2` long.
pub(crate) fn uniform_arrays(
    specs: &[InputSpec],
    log2: u32,
    seed: u64,
) -> Result<Box<Inputs>, WorkloadError> {
    let n = 1usize
        .checked_shl(log2)
        .filter(|_| log2 < usize::BITS)
        .ok_or_else(|| format!("2^{log2} elements do not fit in memory"))?;
    Ok(Box::new(inputs::generate(specs, n, seed)))
}

/// The arrays [`uniform_arrays`] made.
pub(crate) fn arrays(x: &Inputs) -> Result<&[Array1<f64>], WorkloadError> {
    inputs_of::<Vec<Array1<f64>>>(x).map(Vec::as_slice)
}

/// The NumPy anchor of an elementwise workload (`anchors/numpy_workloads.py`).
pub(crate) const fn numpy_anchor(workload: &'static str) -> Anchor {
    Anchor {
        label: "numpy",
        script: "numpy_workloads.py",
        workload,
        modules: &["numpy", "scipy"],
    }
}

/// The contiguous data of an input array (inputs are generated contiguous).
pub(crate) fn slice(a: &Array1<f64>) -> &[f64] {
    a.as_slice().expect("benchmark inputs are contiguous")
}

/// Elements per task in the fused loops: large enough to amortise rayon's
/// scheduling, small enough to balance two to a few dozen cores.
pub(crate) const FUSED_CHUNK: usize = 1 << 14;

/// Wraps a fully written buffer of `n` elements as an array.
///
/// # Safety
/// Every element of `buf[..n]` has been initialised.
pub(crate) unsafe fn assume_init(mut buf: Vec<f64>, n: usize) -> Array1<f64> {
    // SAFETY: the caller guarantees elements 0..n are initialised.
    unsafe { buf.set_len(n) };
    Array1::from_vec(buf)
}

/// A graph that places every eligible stage on `device` (tests of the
/// workloads' bach plans on a simulated device).
#[cfg(test)]
pub(crate) fn forced_device_graph(
    device: std::sync::Arc<bach_runtime::SimulatedDevice>,
) -> bach_runtime::Graph {
    let g = bach_runtime::Graph::with_config(bach_runtime::Config {
        device: bach_runtime::DevicePolicy::Device,
        ..Default::default()
    });
    g.set_device(Some(device));
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        let names = names();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "duplicate workload {n}");
            assert_eq!(find(n).unwrap().name, *n);
        }
        assert!(find("nope").is_none());
    }
}
