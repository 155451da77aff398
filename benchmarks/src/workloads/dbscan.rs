//! DBSCAN: scikit-learn blobs (2^LOG2 rows x 256 features, 32 centers),
//! standardized in place (`X -= X.mean(axis=0); X /= X.std(axis=0)`), then
//! `DBSCAN(eps=16, min_samples=ceil(max(2, n / 32 * 0.05)))`; the result is
//! the labels (noise `-1`).
//!
//! - cpu: ndarray (`annotated_libs::workloads::ndarray_cpu::standardize`) and
//!   linfa-clustering's `Dbscan` as a user calls it (its k-d tree).
//! - bach: the same standardization source on lazy arrays, and DBSCAN through
//!   the annotated linfa (`annotated_libs::linfa::clustering::dbscan`: region
//!   queries split by rows, linfa's own expansion).
//! - gpu: the standardization on the host (ndarray, O(n d)), then the device
//!   DBSCAN (`clustering::device`: O(n^2 d) pair tiles over paged row blocks).
//!
//! Labels are compared up to a renaming of cluster ids.

use annotated_libs::linfa::clustering::{self as cl, device, eager, DbscanParams};
use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{ndarray_bach, ndarray_cpu};
use bach_runtime::Lazy;
use ndarray::{Array1, Array2};

use super::{inputs_of, time_lazy, Anchor, Check, Inputs, Outputs, Timed, Workload, WorkloadError};
use crate::blobs::make_blobs;

/// Features per row.
pub const FEATURES: usize = 256;
/// Blob centers.
pub const CENTERS: usize = 32;

/// The workload's inputs: the blobs and DBSCAN's parameters for their size.
pub struct DbscanInputs {
    /// The points, before standardization.
    pub x: Array2<f64>,
    /// `eps = sqrt(256 * 1.0^2) = 16`, `min_samples = ceil(max(2, n / 32 * 0.05))`.
    pub params: DbscanParams,
}

/// The seed's parameters for `n` rows.
pub fn params_for(n: usize) -> DbscanParams {
    let eps = (FEATURES as f64 * 1.0f64.powi(2)).sqrt();
    let min_samples = (n as f64 / CENTERS as f64 * 0.05).max(2.0).ceil() as usize;
    DbscanParams::new(eps, min_samples).expect("the seed's parameters are valid")
}

fn generate(log2: u32, seed: u64) -> Result<Box<Inputs>, WorkloadError> {
    let n = 1usize << log2;
    let (x, _) = make_blobs(n, FEATURES, CENTERS, 1.0, (-2.0, 2.0), seed);
    Ok(Box::new(DbscanInputs {
        x,
        params: params_for(n),
    }))
}

pub(super) static WORKLOAD: Workload = Workload {
    name: "dbscan",
    description:
        "standardize blobs (256 features, 32 centers) and cluster them with DBSCAN (linfa)",
    default_size: 13,
    size_meaning: "2^LOG2 rows x 256 features",
    sweep_sizes: &[8, 10, 12, 13, 14],
    generate,
    outputs: &["labels"],
    cpu: run_cpu,
    bach: run_bach,
    fused: None,
    gpu: Some(run_gpu),
    explain: |x| {
        let x = inputs_of::<DbscanInputs>(x)?;
        Ok(bach_runtime::Graph::current().explain(&record(x))?)
    },
    check: Check::Custom(same_clusters),
    result_line: Some(result_line),
    anchors: &[Anchor {
        label: "scikit-learn",
        script: "ml_workloads.py",
        workload: "dbscan",
        modules: &["sklearn", "numpy"],
    }],
};

fn as_outputs(labels: Array1<i64>) -> Outputs {
    vec![labels.mapv(|l| l as f64)]
}

fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let inputs = inputs_of::<DbscanInputs>(x)?;
    let mut z = inputs.x.clone();
    ndarray_cpu::standardize(&mut z);
    Ok(as_outputs(eager::dbscan(&z, inputs.params)?))
}

/// The workload on a lazy array reading the inputs in place.
fn record(inputs: &DbscanInputs) -> Lazy<'_, Array1<i64>> {
    let mut x = LazyArray::from(&inputs.x);
    ndarray_bach::standardize(&mut x);
    cl::dbscan(&x, inputs.params)
}

fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let inputs = inputs_of::<DbscanInputs>(x)?;
    time_lazy(|| record(inputs), as_outputs)
}

fn run_gpu(g: &crate::gpu::Gpu<'_>, x: &Inputs) -> Result<Outputs, WorkloadError> {
    let inputs = inputs_of::<DbscanInputs>(x)?;
    let mut z = inputs.x.clone();
    ndarray_cpu::standardize(&mut z);
    Ok(as_outputs(device::dbscan(g.device(), &z, inputs.params)?))
}

/// `clusters=N noise=M`.
fn result_line(out: &Outputs) -> String {
    let labels = &out[0];
    let clusters = labels.iter().fold(-1.0f64, |m, &l| m.max(l)) + 1.0;
    let noise = labels.iter().filter(|&&l| l == -1.0).count();
    format!("clusters={clusters} noise={noise}")
}

/// Labels equal up to a renaming of cluster ids (noise stays noise).
pub fn same_clusters(got: &Outputs, expected: &Outputs) -> Result<(), String> {
    let (got, want) = (&got[0], &expected[0]);
    if got.len() != want.len() {
        return Err(format!("{} labels, expected {}", got.len(), want.len()));
    }
    let mut forward = std::collections::HashMap::new();
    let mut backward = std::collections::HashMap::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as i64, w as i64);
        let consistent = (g == -1) == (w == -1)
            && *forward.entry(g).or_insert(w) == w
            && *backward.entry(w).or_insert(g) == g;
        if !consistent {
            return Err(format!(
                "row {i}: label {g}, expected {w} (or the cluster renamed consistently)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_is_allowed_merging_is_not() {
        let o = |v: &[f64]| vec![Array1::from_vec(v.to_vec())];
        assert!(same_clusters(&o(&[0., 0., 1., -1.]), &o(&[1., 1., 0., -1.])).is_ok());
        assert!(same_clusters(&o(&[0., 0., 0., -1.]), &o(&[1., 1., 0., -1.])).is_err());
        assert!(same_clusters(&o(&[0., 1., 2., -1.]), &o(&[0., 0., 1., -1.])).is_err());
        assert!(same_clusters(&o(&[0., 0., 1., 1.]), &o(&[0., 0., 1., -1.])).is_err());
        assert_eq!(
            result_line(&o(&[0., 2., 1., -1., -1.])),
            "clusters=3 noise=2"
        );
    }

    #[test]
    fn every_mode_agrees_on_small_blobs() {
        let inputs = generate(9, 42).unwrap();
        let cpu = run_cpu(&*inputs).unwrap();
        assert_eq!(result_line(&cpu), "clusters=32 noise=0");
        let bach = run_bach(&*inputs).unwrap().outputs;
        same_clusters(&bach, &cpu).unwrap();
        // 1 MiB: the rows page through the device in blocks.
        let dev = bach_runtime::SimulatedDevice::with_capacity(1 << 20);
        let gpu = run_gpu(&crate::gpu::Gpu::new(&dev), &*inputs).unwrap();
        same_clusters(&gpu, &cpu).unwrap();
    }
}
