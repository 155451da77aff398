//! The crime index (the paper's third workload) on polars: three
//! single-column CSV files are read and combined row by row into one number.
//!
//! Where the reading is counted: every mode reads the files inside its timed
//! region (the inputs are only the cached files' paths). In `bach` mode, Init
//! is opening the files (a memory map and the line-index pass that counts
//! their rows, which planning needs) and recording; Runtime is `evaluate`,
//! which parses each batch's lines and computes on them in the same pass.
//! `cpu` mode parses each whole file, then runs polars op at a time; `fused`
//! parses and computes in one parallel loop over row blocks. `gpu` mode's
//! Runtime is everything: parsing the three files on the CPU (in parallel
//! over row blocks), uploading the three columns, one kernel launch per
//! operation of the formula (polars' total-order comparisons, masks,
//! arithmetic, then a sum writing one partial per block), and downloading
//! the partials, which the host adds in order.

mod data;

use std::path::PathBuf;
use std::time::Instant;

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::polars::polars_core::prelude::Float64Chunked;
use annotated_libs::polars::{ops, CsvColumn, CsvOptions, LazySeries};
use annotated_libs::workloads::{polars_bach, polars_cpu};
use ndarray::{array, Array1};
use rayon::prelude::*;

use super::{Anchor, Check, Inputs, Outputs, Timed, Workload, WorkloadError};

pub(super) static WORKLOAD: Workload = Workload {
    name: "crime_index",
    description: "the crime index over three CSV columns read inside the plan \
                  (polars; reading counted in every mode: bach Init = opening and \
                  line-indexing the files + recording, Runtime = parsing and computing; \
                  BACH_CRIME_DATA=constant for the seed's constant-valued files)",
    default_size: 26,
    size_meaning: "2^LOG2 rows in each of three CSV files",
    sweep_sizes: &[16, 20, 22, 24],
    generate,
    outputs: &["crime_index"],
    cpu: run_cpu,
    bach: run_bach,
    fused: Some(run_fused),
    gpu: Some(run_gpu),
    explain: |x| {
        let files = open(x)?;
        let lazy = record(&files);
        Ok(bach_runtime::Graph::current().explain(&lazy)?)
    },
    // One sum of 2^LOG2 terms, added in a different order by each mode.
    check: Check::Within(1e-9),
    result_line: Some(|o| format!("crime index {:.6}", o[0][0])),
    anchors: &[
        Anchor {
            label: "pandas",
            script: "crime_index.py",
            workload: "crime_pandas",
            modules: &["pandas", "numpy"],
        },
        Anchor {
            label: "polars-eager",
            script: "crime_index.py",
            workload: "crime_polars_eager",
            modules: &["polars", "numpy"],
        },
        Anchor {
            label: "polars-lazy",
            script: "crime_index.py",
            workload: "crime_polars_lazy",
            modules: &["polars", "numpy"],
        },
    ],
};

/// The inputs: the paths of the three cached files (total population, adult
/// population, robberies).
struct Files([PathBuf; 3]);

fn generate(log2: u32, seed: u64) -> Result<Box<Inputs>, WorkloadError> {
    let kind = data::Kind::from_env()?;
    Ok(Box::new(Files(data::files(log2, seed, kind)?)))
}

fn paths(x: &Inputs) -> &[PathBuf; 3] {
    &x.downcast_ref::<Files>()
        .expect("the crime index's own inputs")
        .0
}

/// Maps and line-indexes the three files, checking that their rows match.
fn open(x: &Inputs) -> Result<[CsvColumn; 3], WorkloadError> {
    let [tp, ap, nr] = paths(x);
    let options = CsvOptions::default();
    let columns = [
        CsvColumn::open(tp, options)?,
        CsvColumn::open(ap, options)?,
        CsvColumn::open(nr, options)?,
    ];
    CsvColumn::same_rows(&[&columns[0], &columns[1], &columns[2]])?;
    Ok(columns)
}

fn record(files: &[CsvColumn; 3]) -> bach_runtime::Lazy<'_, f64> {
    let [tp, ap, nr] = files.each_ref().map(LazySeries::read);
    polars_bach::crime_index(&tp, &ap, &nr)
}

/// Plain polars: each file parsed whole, then one operation at a time.
fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let [tp, ap, nr] = open(x)?;
    let [tp, ap, nr] = [
        ops::read_column::cpu(&tp)?,
        ops::read_column::cpu(&ap)?,
        ops::read_column::cpu(&nr)?,
    ];
    Ok(vec![array![polars_cpu::crime_index(&tp, &ap, &nr)]])
}

/// The same source on lazy columns; reading runs batch by batch in the plan.
fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let t0 = Instant::now();
    let files = open(x)?;
    let lazy = record(&files);
    let init = t0.elapsed();
    let t1 = Instant::now();
    let result = bach_runtime::evaluate(lazy)?;
    let runtime = t1.elapsed();
    Ok(Timed {
        init,
        runtime,
        outputs: vec![array![result]],
    })
}

/// Rows per task of the fused loop: three blocks of parsed values stay in
/// the core's cache.
const FUSED_ROWS: usize = 1 << 14;

/// One parallel loop over row blocks: parse the block's lines of the three
/// files and fold the formula into a partial sum; partial sums added in row
/// order. The CPU limit of the workload, reading included.
fn run_fused(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let files = open(x)?;
    let rows = files[0].rows();
    let blocks: Vec<f64> = (0..rows.div_ceil(FUSED_ROWS))
        .into_par_iter()
        .map(|b| {
            let range = b * FUSED_ROWS..((b + 1) * FUSED_ROWS).min(rows);
            let [tp, ap, nr] = files.each_ref().map(|f| f.slice(range.clone()).parse());
            let (tp, ap, nr) = (tp?, ap?, nr?);
            let mut sum = 0.0;
            for ((&tp, &ap), &nr) in values(&tp).iter().zip(values(&ap)).zip(values(&nr)) {
                sum += crime_index_row(tp, ap, nr);
            }
            Ok(sum)
        })
        .collect::<Result<_, annotated_libs::polars::CsvError>>()?;
    Ok(vec![array![blocks.iter().sum::<f64>()]])
}

/// A whole column parsed into one array, in parallel over blocks of rows.
fn parse_parallel(column: &CsvColumn) -> Result<Array1<f64>, WorkloadError> {
    let rows = column.rows();
    let mut out = vec![0.0; rows];
    out.par_chunks_mut(FUSED_ROWS).enumerate().try_for_each(
        |(b, block)| -> Result<(), WorkloadError> {
            let start = b * FUSED_ROWS;
            let parsed = column.slice(start..start + block.len()).parse()?;
            let parsed = values(&parsed);
            if parsed.len() != block.len() {
                return Err(format!(
                    "rows {start}..{}: parsed {} values",
                    start + block.len(),
                    parsed.len()
                )
                .into());
            }
            block.copy_from_slice(parsed);
            Ok(())
        },
    )?;
    Ok(Array1::from_vec(out))
}

/// Hand-written device code: the columns parsed on the CPU and uploaded,
/// then one kernel per operation of the formula, in its order, from the
/// annotated polars module's kernels; the sum's partials added on the host.
fn run_gpu(g: &crate::gpu::Gpu<'_>, x: &Inputs) -> Result<Outputs, WorkloadError> {
    let g = crate::gpu::Gpu::with_source(g.device(), annotated_libs::polars::BACH_KERNELS);
    let files = open(x)?;
    let [tp, ap, nr] = [
        parse_parallel(&files[0])?,
        parse_parallel(&files[1])?,
        parse_parallel(&files[2])?,
    ];
    let (tp, ap, nr) = (g.upload(&tp)?, g.upload(&ap)?, g.upload(&nr)?);
    // polars' total order: NaN above every number (polars.cu's expressions).
    let gt = |x: f64, s: f64| !(s.is_nan() || s >= x);
    let lt = |x: f64, s: f64| !(x.is_nan() || x >= s);

    let big = g.mask(
        &tp,
        &g.compare_scalar("tot_gt_scalar", gt, &tp, 500000.0)?,
        0.0,
    )?;
    let ci = g.with_scalar(
        "pl_div",
        polars_div_scalar,
        &g.binary(
            "subtract",
            cpu::subtract,
            &g.binary(
                "add",
                cpu::add,
                &g.with_scalar("pl_mul", polars_mul_scalar, &ap, 2.0)?,
                &big,
            )?,
            &g.with_scalar("pl_mul", polars_mul_scalar, &nr, 2000.0)?,
        )?,
        100000.0,
    )?;
    let ci = g.mask(
        &ci,
        &g.compare_scalar("tot_gt_scalar", gt, &ci, 0.02)?,
        0.032,
    )?;
    let ci = g.mask(
        &ci,
        &g.compare_scalar("tot_lt_scalar", lt, &ci, 0.01)?,
        0.005,
    )?;
    let sum = g.sum(&ci)?;
    g.synchronize()?;
    Ok(vec![array![sum]])
}

/// polars' `a * s` (the annotated CPU body): the stand-in of `pl_mul_scalar`.
fn polars_mul_scalar(a: &Array1<f64>, s: f64) -> Array1<f64> {
    through_polars(a, s, ops::mul_scalar::cpu)
}

/// polars' `a / s`, a multiplication by `1 / s`: the stand-in of `pl_div_scalar`.
fn polars_div_scalar(a: &Array1<f64>, s: f64) -> Array1<f64> {
    through_polars(a, s, ops::div_scalar::cpu)
}

fn through_polars(
    a: &Array1<f64>,
    s: f64,
    f: fn(&Float64Chunked, f64) -> Float64Chunked,
) -> Array1<f64> {
    let column = Float64Chunked::from_vec("a".into(), a.to_vec());
    Array1::from_iter(f(&column, s).into_no_null_iter())
}

/// The parsed values of a column read from CSV (one chunk, no nulls).
fn values(c: &Float64Chunked) -> &[f64] {
    c.cont_slice()
        .expect("a parsed column is one chunk without nulls")
}

/// The formula for one row, comparing as polars does (NaN above every number).
#[inline]
fn crime_index_row(tp: f64, ap: f64, nr: f64) -> f64 {
    let big = if tp.is_nan() || tp > 500000.0 {
        0.0
    } else {
        tp
    };
    let ci = (ap * 2.0 + big - nr * 2000.0) / 100000.0;
    let ci = if ci.is_nan() || ci > 0.02 { 0.032 } else { ci };
    if ci < 0.01 {
        0.005
    } else {
        ci
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_formula_is_the_column_formula() {
        let tp = [600000.0, 1e5, f64::NAN, 500000.0, 2e5];
        let ap = [5e4, 1e5, 2e5, 4e5, 1e3];
        let nr = [10.0, 100.0, 0.0, 1e3, 0.0];
        let col = |v: &[f64]| Float64Chunked::from_vec("x".into(), v.to_vec());
        let whole = polars_cpu::crime_index(&col(&tp), &col(&ap), &col(&nr));
        let rows: f64 = (0..5).map(|i| crime_index_row(tp[i], ap[i], nr[i])).sum();
        assert_eq!(whole, rows);
    }

    #[test]
    fn every_mode_agrees_on_small_files() {
        let dir = std::env::temp_dir().join(format!("bach-crime-test-{}", std::process::id()));
        let inputs: Box<Inputs> = Box::new(Files(
            data::files_in(&dir, 12, 7, data::Kind::Random).unwrap(),
        ));
        let cpu = run_cpu(&*inputs).unwrap();
        let fused = run_fused(&*inputs).unwrap();
        let bach = run_bach(&*inputs).unwrap().outputs;
        let device = bach_runtime::SimulatedDevice::with_capacity(1 << 30);
        let gpu = run_gpu(&crate::gpu::Gpu::new(&device), &*inputs).unwrap();
        let close = |a: &Outputs, b: &Outputs| (a[0][0] - b[0][0]).abs() <= 1e-9 * a[0][0].abs();
        assert!(close(&cpu, &fused), "{cpu:?} {fused:?}");
        assert!(close(&cpu, &bach), "{cpu:?} {bach:?}");
        assert!(close(&cpu, &gpu), "{cpu:?} {gpu:?}");
        // Random data crosses both thresholds: not every row gives one value.
        assert!(cpu[0][0] > 0.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
