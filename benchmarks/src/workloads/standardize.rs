//! The DBSCAN workload's standardization alone: the same blobs (2^LOG2 rows
//! x 256 features), `X -= X.mean(axis=0); X /= X.std(axis=0)`, with a
//! hand-fused mode to measure the annotated version against.

use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{ndarray_bach, ndarray_cpu};
use ndarray::{Array1, Array2, Axis, Zip};
use rayon::prelude::*;

use super::dbscan::{CENTERS, FEATURES};
use super::{inputs_of, time_lazy, Check, Inputs, Outputs, Timed, Workload, WorkloadError};
use crate::blobs::make_blobs;

fn generate(log2: u32, seed: u64) -> Result<Box<Inputs>, WorkloadError> {
    let (x, _) = make_blobs(1 << log2, FEATURES, CENTERS, 1.0, (-2.0, 2.0), seed);
    Ok(Box::new(x))
}

pub(super) static WORKLOAD: Workload = Workload {
    name: "standardize",
    description: "the DBSCAN workload's column standardization alone (blobs, 256 features)",
    default_size: 13,
    size_meaning: "2^LOG2 rows x 256 features",
    sweep_sizes: &[10, 13, 16],
    generate,
    outputs: &["standardized"],
    cpu: run_cpu,
    bach: run_bach,
    fused: Some(run_fused),
    gpu: None,
    explain: |x| {
        let x = inputs_of::<Array2<f64>>(x)?;
        Ok(bach_runtime::Graph::current().explain(&record(x))?)
    },
    // Column moments merge batch partials in another order than one pass.
    check: Check::Within(1e-12),
    result_line: None,
    anchors: &[],
};

fn flat(z: Array2<f64>) -> Outputs {
    let n = z.len();
    vec![z
        .into_shape_with_order(n)
        .expect("a standard-layout matrix")]
}

fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let mut z = inputs_of::<Array2<f64>>(x)?.clone();
    ndarray_cpu::standardize(&mut z);
    Ok(flat(z))
}

fn record(x: &Array2<f64>) -> annotated_libs::ndarray::Array2<'_, f64> {
    let mut l = LazyArray::from(x);
    ndarray_bach::standardize(&mut l);
    l
}

fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let x = inputs_of::<Array2<f64>>(x)?;
    time_lazy(|| record(x), flat)
}

/// Rows per parallel chunk of the hand-fused passes.
const ROWS: usize = 256;

/// Column sums of `f(row)` over row chunks in parallel, merged in chunk order.
fn column_sums(
    x: &Array2<f64>,
    f: impl Fn(&mut Array1<f64>, ndarray::ArrayView1<'_, f64>) + Sync,
) -> Array1<f64> {
    let partials: Vec<Array1<f64>> = x
        .axis_chunks_iter(Axis(0), ROWS)
        .into_par_iter()
        .map(|chunk| {
            let mut acc = Array1::zeros(x.ncols());
            for row in chunk.outer_iter() {
                f(&mut acc, row);
            }
            acc
        })
        .collect();
    partials
        .into_iter()
        .fold(Array1::zeros(x.ncols()), |a, p| a + p)
}

/// Hand-written: column sums, then squared deviations, then one pass writing
/// `(x - mean) / sd` into the result (each pass parallel over row chunks).
fn run_fused(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = inputs_of::<Array2<f64>>(x)?;
    let n = x.nrows() as f64;
    let mean = column_sums(x, |acc, row| *acc += &row) / n;
    let var = column_sums(x, |acc, row| {
        Zip::from(acc)
            .and(row)
            .and(&mean)
            .for_each(|a, &v, &m| *a += (v - m) * (v - m))
    }) / n;
    let sd = var.mapv(f64::sqrt);
    let mut z = Array2::<f64>::uninit(x.raw_dim());
    z.axis_chunks_iter_mut(Axis(0), ROWS)
        .into_par_iter()
        .zip(x.axis_chunks_iter(Axis(0), ROWS))
        .for_each(|(mut out, rows)| {
            Zip::from(out.rows_mut()).and(rows.rows()).for_each(|o, r| {
                Zip::from(o)
                    .and(r)
                    .and(&mean)
                    .and(&sd)
                    .for_each(|o, &v, &m, &s| {
                        o.write((v - m) / s);
                    })
            })
        });
    // SAFETY: the chunks tile the rows and every element was written.
    Ok(flat(unsafe { z.assume_init() }))
}
