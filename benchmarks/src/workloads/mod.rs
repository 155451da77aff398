//! The registry of benchmark workloads.
//!
//! Each workload lives in its own file and provides one [`Workload`]: its
//! inputs, and one function per mode over the same inputs. Registering a new
//! workload is one line in [`REGISTRY`]; the CLI, the sweep and the tests pick
//! it up from there. Only workloads that run in every CPU mode belong here.

mod blackscholes;
mod haversine;

use std::time::{Duration, Instant};

use bach_runtime::Evaluate;
use ndarray::Array1;

use crate::inputs::InputSpec;

/// A workload's results, in the order of [`Workload::outputs`].
pub type Outputs = Vec<Array1<f64>>;

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

/// A benchmark workload: its inputs and its implementation in each mode.
pub struct Workload {
    /// The name given to `--benchmark`.
    pub name: &'static str,
    /// One line for `--help` and the README.
    pub description: &'static str,
    /// The input arrays, generated with `inputs::generate`.
    pub inputs: &'static [InputSpec],
    /// Names of the result arrays (for `--check` messages).
    pub outputs: &'static [&'static str],
    /// `cpu` mode: plain ndarray, op at a time (`annotated_libs::workloads::ndarray_cpu`).
    pub cpu: fn(&[Array1<f64>]) -> Outputs,
    /// `bach` mode: the same source on lazy arrays (`annotated_libs::ndarray`), recorded and
    /// evaluated in the thread's current graph. Times itself (see [`time_lazy`]).
    pub bach: fn(&[Array1<f64>]) -> bach_runtime::Result<Timed>,
    /// `fused` mode: one hand-written rayon loop computing the same formula
    /// per element in the same operation order (bit-identical to `cpu`).
    pub fused: fn(&[Array1<f64>]) -> Outputs,
    /// `gpu` mode: hand-written device code, one kernel per operation, with
    /// explicit transfers (see [`crate::gpu`]).
    pub gpu: fn(&crate::gpu::Gpu<'_>, &[Array1<f64>]) -> bach_runtime::Result<Outputs>,
    /// Bach's plan for the workload in the current graph (`--explain`).
    pub explain: fn(&[Array1<f64>]) -> bach_runtime::Result<bach_runtime::Explain>,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every workload the CLI can run, in the order listed in `--help`.
pub static REGISTRY: &[&Workload] = &[&blackscholes::WORKLOAD, &haversine::WORKLOAD];

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
) -> bach_runtime::Result<Timed> {
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
