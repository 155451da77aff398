//! TSVD: a truncated SVD (2 components) of `make_blobs(2^s, 512 features,
//! 1 center)`, fitted on all rows and applied to them (scikit-learn's
//! `TruncatedSVD(n_components=2).fit(X).transform(X)`).
//!
//! The fit sums the Gram matrix `X^T X` over row batches and solves it once
//! (the top eigenpairs, `linfa::top_eigen`); the transform splits the rows,
//! the fitted model broadcast to every batch.
//!
//! - gpu: `linfa::device::truncated_svd_on`: row blocks uploaded (paged
//!   through the device when the rows do not fit its free memory), the Gram
//!   matrix accumulated on the device (cuBLAS), solved there (cuSOLVER's
//!   `syevd`), and the rows transformed block by block.

use annotated_libs::linfa::device::truncated_svd_on;
use annotated_libs::linfa::reduction::{truncated_svd_fit, LazyTruncatedSvd, TruncatedSvd};
use bach_runtime::Lazy;
use ndarray::{Array1, Array2};

use super::{inputs_of, time_lazy, Anchor, Check, Inputs, Outputs, Timed, Workload, WorkloadError};
use crate::blobs::make_blobs;

/// The features of every row.
pub const FEATURES: usize = 512;
/// The components fitted.
pub const COMPONENTS: usize = 2;

pub(super) static WORKLOAD: Workload = Workload {
    name: "tsvd",
    description: "truncated SVD (2 components) of 512-feature blobs: Gram matrix by rows, one eigensolve, transform by rows",
    default_size: 14,
    size_meaning: "2^LOG2 rows x 512 features",
    sweep_sizes: &[10, 12, 14, 16, 18],
    generate,
    outputs: &["singular_values", "components", "transformed"],
    cpu: run_cpu,
    bach: run_bach,
    fused: None,
    gpu: Some(run_gpu),
    explain: |x| {
        let x = data(x)?;
        Ok(bach_runtime::Graph::current().explain(&record(x))?)
    },
    check: Check::Custom(same_up_to_sign),
    result_line: Some(|o| format!("singular values {:?}", o[0].to_vec())),
    anchors: &[Anchor {
        label: "scikit-learn",
        script: "ml_workloads.py",
        workload: "tsvd",
        modules: &["numpy", "sklearn"],
    }],
};

fn generate(log2: u32, seed: u64) -> Result<Box<Inputs>, WorkloadError> {
    let rows = 1usize
        .checked_shl(log2)
        .filter(|_| log2 < 40)
        .ok_or_else(|| format!("2^{log2} rows of {FEATURES} features do not fit in memory"))?;
    // The data, and as much again for the transform's row pieces in flight.
    check_memory(
        &format!("2^{log2} rows of {FEATURES} features"),
        2 * rows * FEATURES * 8,
    )?;
    let (x, _) = make_blobs(rows, FEATURES, 1, 1.0, (-10.0, 10.0), seed);
    Ok(Box::new(x))
}

/// Refuses inputs of `bytes` when the system says less memory is
/// available (Linux's `MemAvailable`), rather than aborting on allocation.
pub(super) fn check_memory(what: &str, bytes: usize) -> Result<(), WorkloadError> {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    match available {
        Some(free) if bytes > free => Err(format!(
            "{what} need about {} MiB; {} MiB of memory are available",
            bytes >> 20,
            free >> 20
        )
        .into()),
        _ => Ok(()),
    }
}

fn data(x: &Inputs) -> Result<&Array2<f64>, WorkloadError> {
    inputs_of::<Array2<f64>>(x)
}

/// The results as [`Outputs`]: singular values, components (row-major), transformed rows (row-major).
fn outputs(model: &TruncatedSvd, transformed: Array2<f64>) -> Outputs {
    outputs_of(model.singular_values(), model.components(), transformed)
}

fn outputs_of(
    singular_values: &Array1<f64>,
    components: &Array2<f64>,
    transformed: Array2<f64>,
) -> Outputs {
    vec![
        singular_values.clone(),
        Array1::from_iter(components.iter().copied()),
        Array1::from_vec(transformed.into_raw_vec_and_offset().0),
    ]
}

fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = data(x)?;
    let model = TruncatedSvd::fit(x, COMPONENTS)?;
    let transformed = model.transform(x)?;
    Ok(outputs(&model, transformed))
}

/// The fit and the transform, recorded.
fn record(x: &Array2<f64>) -> (Lazy<'_, TruncatedSvd>, Lazy<'_, Array2<f64>>) {
    let model = truncated_svd_fit(x, x.ncols(), COMPONENTS);
    let transformed = model.transform(x);
    (model, transformed)
}

fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let x = data(x)?;
    time_lazy(|| record(x), |(model, t)| outputs(&model, t))
}

fn run_gpu(g: &crate::gpu::Gpu<'_>, x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = data(x)?;
    let (model, transformed) = truncated_svd_on(g.device(), x, COMPONENTS)?;
    Ok(outputs_of(
        &model.singular_values,
        &model.components,
        transformed,
    ))
}

/// Singular values within 1e-6 relative; each component, and the
/// transformed column it gives, equal up to one sign within 1e-6 relative
/// (of the largest magnitude in the column).
pub fn same_up_to_sign(got: &Outputs, expected: &Outputs) -> Result<(), String> {
    const REL: f64 = 1e-6;
    let [sv, comps, t] = &got[..] else {
        return Err(format!("{} result arrays, not 3", got.len()));
    };
    let [esv, ecomps, et] = &expected[..] else {
        return Err(format!("{} expected arrays, not 3", expected.len()));
    };
    if sv.len() != esv.len() || comps.len() != ecomps.len() || t.len() != et.len() {
        return Err("result shapes differ".into());
    }
    let k = esv.len();
    for c in 0..k {
        if (sv[c] - esv[c]).abs() > REL * esv[c].abs() {
            return Err(format!("singular value {c}: {} vs {}", sv[c], esv[c]));
        }
    }
    if k == 0 {
        return Ok(());
    }
    let features = ecomps.len() / k;
    for c in 0..k {
        let row = |a: &Array1<f64>| {
            a.slice(ndarray::s![c * features..(c + 1) * features])
                .to_owned()
        };
        let (g, e) = (row(comps), row(ecomps));
        let sign = if g.dot(&e) < 0.0 { -1.0 } else { 1.0 };
        let column = |a: &Array1<f64>| a.slice(ndarray::s![c..; k]).to_owned();
        for (what, g, e) in [
            ("component", g, e),
            ("transformed column", column(t), column(et)),
        ] {
            let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if let Some(i) = (0..e.len()).find(|&i| (g[i] - sign * e[i]).abs() > REL * scale) {
                return Err(format!(
                    "{what} {c}, element {i}: {} vs {}",
                    g[i],
                    sign * e[i]
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bach plan with the Gram matrix and the transform placed on a
    /// simulated device (paged when small): the CPU's components up to sign.
    #[test]
    fn bach_placed_on_a_device_gives_the_cpu_result_at_every_capacity() {
        // 2^9 rows with room for all; 2^11 rows (8 MiB) in 10 MiB, beside
        // the Gram matrix's partial and its temporary (2 MiB each): paged.
        for (log2, capacity) in [(9, 1usize << 30), (11, 10 << 20)] {
            let x = generate(log2, 7).unwrap();
            let cpu = run_cpu(&*x).unwrap();
            let dev = std::sync::Arc::new(bach_runtime::SimulatedDevice::with_capacity(capacity));
            let g = super::super::forced_device_graph(dev.clone());
            let got = g.enter(|| run_bach(&*x)).unwrap().outputs;
            assert_eq!(same_up_to_sign(&got, &cpu), Ok(()), "capacity {capacity}");
            let run = g.last_run().unwrap();
            let placed: Vec<_> = (run.stages.iter())
                .map(|s| (s.ops.clone(), s.placement))
                .collect();
            use bach_runtime::Placement::{Cpu, Device};
            assert_eq!(
                placed,
                [
                    (vec!["gram"], Device),
                    // The eigensolve is a whole call without a device function.
                    (vec!["truncated_svd_from_gram"], Cpu),
                    (vec!["truncated_svd_transform"], Device),
                ],
                "{run}"
            );
            let stats = bach_runtime::Device::stats(&*dev);
            assert!(stats.peak_bytes <= capacity as u64, "{stats:?}");
            if capacity < 1 << 30 {
                assert!(stats.uploads > 4, "paged: {stats:?}");
            }
        }
    }

    /// NaN in the data: the device plan reports the CPU's error.
    #[test]
    fn a_device_plan_refuses_nan_as_the_cpu_does() {
        let x = generate(6, 7).unwrap();
        let mut data = data(&*x).unwrap().clone();
        data[(37, 5)] = f64::NAN;
        let cpu_err = run_cpu(&data).unwrap_err().to_string();
        let g = super::super::forced_device_graph(std::sync::Arc::new(
            bach_runtime::SimulatedDevice::with_capacity(1 << 30),
        ));
        let err = g.enter(|| run_bach(&data)).unwrap_err().to_string();
        assert!(err.contains("NaN") || err.contains("finite"), "{err}");
        assert!(
            cpu_err.contains("NaN") || cpu_err.contains("finite"),
            "{cpu_err}"
        );
    }

    #[test]
    fn bach_gives_the_cpu_result_and_the_check_accepts_a_flipped_sign() {
        let x = generate(9, 7).unwrap();
        let cpu = run_cpu(&*x).unwrap();
        let bach = bach_runtime::Graph::with_config(bach_runtime::Config {
            device: bach_runtime::DevicePolicy::Cpu,
            batch_size: Some(100),
            ..Default::default()
        });
        let got = bach.enter(|| run_bach(&*x)).unwrap().outputs;
        // The Gram matrix summed over 6 batches: equal up to rounding.
        assert_eq!(same_up_to_sign(&got, &cpu), Ok(()));
        // The second component and its column negated: still the same.
        let mut flipped = cpu.clone();
        flipped[1]
            .slice_mut(ndarray::s![FEATURES..])
            .mapv_inplace(|v| -v);
        flipped[2]
            .slice_mut(ndarray::s![1..; 2])
            .mapv_inplace(|v| -v);
        assert_eq!(same_up_to_sign(&flipped, &cpu), Ok(()));
        // A changed component is not.
        let mut off = cpu.clone();
        off[1][3] += 1e-3;
        assert!(same_up_to_sign(&off, &cpu).is_err());
        // The dominant singular value of one blob is about its center's norm
        // times the square root of the rows.
        assert!(cpu[0][0] > cpu[0][1] && cpu[0][1] > 0.0);
    }

    #[test]
    fn gpu_mode_on_the_simulated_device_gives_the_cpu_result_whole_and_paged() {
        let x = generate(9, 3).unwrap();
        let cpu = run_cpu(&*x).unwrap();
        // All rows fit: bit for bit (one Gram matrix, the CPU's eigensolver as reference).
        let dev = bach_runtime::SimulatedDevice::with_capacity(1 << 30);
        let gpu = run_gpu(&crate::gpu::Gpu::new(&dev), &*x).unwrap();
        assert_eq!(gpu, cpu);
        // Room for 100 rows beside the fixed part: the 512 rows page through in 6 blocks.
        let fixed = annotated_libs::linfa::device::tsvd_fixed_bytes(FEATURES, COMPONENTS);
        let capacity = fixed + 100 * (FEATURES + COMPONENTS) * 8;
        let small = bach_runtime::SimulatedDevice::with_capacity(capacity);
        let gpu = run_gpu(&crate::gpu::Gpu::new(&small), &*x).unwrap();
        assert_eq!(same_up_to_sign(&gpu, &cpu), Ok(()));
        let stats = bach_runtime::Device::stats(&small);
        assert!(stats.uploads > 10, "paged: {stats:?}");
    }
}
