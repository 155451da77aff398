//! PCA: the Wine data (benchmarks/data, scikit-learn's 124/54 train/test
//! split) standardised, projected on 2 principal components and classified
//! by a 5-nearest-neighbour vote, with the test set doubled `s` times
//! (54 x 2^s rows).
//!
//! The three fits read the 124 training rows whole; the test rows' scaling,
//! projection and vote split by rows, the fitted models broadcast to every
//! batch.
//!
//! - gpu: `linfa::device`: the scaler and the PCA fitted on the training rows
//!   on the device (column moments, the centred rows' Gram matrix by cuBLAS,
//!   its top eigenpairs by cuSOLVER), the training rows projected there for
//!   the classifier, and the test rows uploaded, scaled, projected and voted
//!   on (`knn.cu`) on the device; the predictions and projections come back.
//!
//! PCA components are defined up to sign (linfa's LOBPCG and an eigensolver
//! may pick either): the check compares each projected column up to one sign.

use annotated_libs::linfa::device::{
    knn_predict_on, pca_fit_on, standard_scaler_fit_on, transform_on, DeviceKnn, DeviceMatrix,
    Transform,
};
use annotated_libs::linfa::nn::{knn_fit, KNeighborsClassifier, LazyKNeighborsClassifier};
use annotated_libs::linfa::preprocessing::{
    standard_scaler_fit, LazyStandardScaler, StandardScaler,
};
use annotated_libs::linfa::reduction::{pca_fit, LazyPca, Pca};
use bach_runtime::Lazy;
use ndarray::{concatenate, Array1, Array2, Axis};

use super::{inputs_of, time_lazy, Anchor, Check, Inputs, Outputs, Timed, Workload, WorkloadError};

/// The principal components kept.
pub const COMPONENTS: usize = 2;
/// The neighbours that vote.
pub const NEIGHBOURS: usize = 5;

const WINE_CSV: &str = include_str!("../../data/wine_data.csv");
const WINE_SPLIT: &str = include_str!("../../data/wine_split.json");

pub(super) static WORKLOAD: Workload = Workload {
    name: "pca",
    description:
        "Wine: standard scaler, PCA (2 components), 5-nearest-neighbour vote on the test rows",
    default_size: 10,
    size_meaning: "54 x 2^LOG2 test rows x 13 features",
    sweep_sizes: &[0, 4, 8, 10, 12],
    generate,
    outputs: &[
        "predictions",
        "projected",
        "explained_variance_ratio",
        "accuracy",
    ],
    cpu: run_cpu,
    bach: run_bach,
    fused: None,
    gpu: Some(run_gpu),
    explain: |x| {
        let w = wine(x)?;
        Ok(bach_runtime::Graph::current().explain(&record(w))?)
    },
    check: Check::Custom(same_predictions),
    result_line: Some(|o| {
        format!(
            "accuracy {:.4} explained variance ratio [{:.4}, {:.4}]",
            o[3][0], o[2][0], o[2][1]
        )
    }),
    anchors: &[Anchor {
        label: "scikit-learn",
        script: "ml_workloads.py",
        workload: "pca",
        modules: &["numpy", "sklearn"],
    }],
};

/// The workload's inputs: training rows and labels, test rows and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Wine {
    /// The 124 training rows (13 features).
    pub train: Array2<f64>,
    /// Their cultivars (0, 1, 2).
    pub train_labels: Array1<usize>,
    /// The 54 test rows, doubled `s` times.
    pub test: Array2<f64>,
    /// Their cultivars.
    pub test_labels: Array1<usize>,
}

/// The vendored Wine data: rows of 13 features and the class.
fn load() -> Result<(Array2<f64>, Array1<usize>), WorkloadError> {
    let mut lines = WINE_CSV.lines();
    let header = lines.next().ok_or("wine_data.csv is empty")?;
    let mut fields = header.split(',');
    let rows: usize = fields.next().ok_or("no row count")?.parse()?;
    let features: usize = fields.next().ok_or("no feature count")?.parse()?;
    let mut x = Array2::zeros((rows, features));
    let mut y = Array1::zeros(rows);
    let mut seen = 0;
    for (i, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        if i >= rows {
            return Err(format!("wine_data.csv has more than {rows} rows").into());
        }
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != features + 1 {
            return Err(format!("wine_data.csv row {i}: {} fields", values.len()).into());
        }
        for (j, v) in values[..features].iter().enumerate() {
            x[[i, j]] = v.trim().parse()?;
        }
        y[i] = values[features].trim().parse()?;
        seen += 1;
    }
    if seen != rows {
        return Err(format!("wine_data.csv has {seen} rows, its header says {rows}").into());
    }
    Ok((x, y))
}

/// The row indices of `"key": [...]` in the split file.
fn indices(key: &str) -> Result<Vec<usize>, WorkloadError> {
    let start = WINE_SPLIT
        .find(&format!("\"{key}\""))
        .ok_or_else(|| format!("wine_split.json has no {key}"))?;
    let rest = &WINE_SPLIT[start..];
    let open = rest.find('[').ok_or("no list")?;
    let close = rest.find(']').ok_or("no list end")?;
    rest[open + 1..close]
        .split(',')
        .map(|v| Ok(v.trim().parse()?))
        .collect()
}

fn generate(log2: u32, _seed: u64) -> Result<Box<Inputs>, WorkloadError> {
    let rows = 54usize
        .checked_shl(log2)
        .filter(|_| log2 < 40)
        .ok_or_else(|| format!("54 x 2^{log2} test rows do not fit in memory"))?;
    // The rows, their scaled copy, and the doubling's temporary copy.
    super::tsvd::check_memory(&format!("54 x 2^{log2} test rows"), 3 * rows * 13 * 8)?;
    let (x, y) = load()?;
    let (train, test) = (indices("train")?, indices("test")?);
    if let Some(&bad) = train.iter().chain(&test).find(|&&i| i >= x.nrows()) {
        return Err(format!("wine_split.json names row {bad} of {}", x.nrows()).into());
    }
    let mut test_x = x.select(Axis(0), &test);
    let mut test_y = y.select(Axis(0), &test);
    for _ in 0..log2 {
        test_x = concatenate(Axis(0), &[test_x.view(), test_x.view()])?;
        test_y = concatenate(Axis(0), &[test_y.view(), test_y.view()])?;
    }
    Ok(Box::new(Wine {
        train: x.select(Axis(0), &train),
        train_labels: y.select(Axis(0), &train),
        test: test_x,
        test_labels: test_y,
    }))
}

fn wine(x: &Inputs) -> Result<&Wine, WorkloadError> {
    inputs_of::<Wine>(x)
}

/// The results as [`Outputs`].
fn outputs(w: &Wine, pca: &Pca, projected: Array2<f64>, predicted: &Array1<usize>) -> Outputs {
    outputs_of(w, pca.explained_variance_ratio(), projected, predicted)
}

fn outputs_of(
    w: &Wine,
    explained_variance_ratio: &Array1<f64>,
    projected: Array2<f64>,
    predicted: &Array1<usize>,
) -> Outputs {
    let correct = predicted
        .iter()
        .zip(&w.test_labels)
        .filter(|(p, y)| p == y)
        .count();
    let accuracy = if predicted.is_empty() {
        f64::NAN
    } else {
        correct as f64 / predicted.len() as f64
    };
    vec![
        predicted.mapv(|p| p as f64),
        Array1::from_vec(projected.into_raw_vec_and_offset().0),
        explained_variance_ratio.clone(),
        Array1::from_elem(1, accuracy),
    ]
}

fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let w = wine(x)?;
    let scaler = StandardScaler::fit(&w.train)?;
    let train = scaler.transform(&w.train)?;
    let pca = Pca::fit(&train, COMPONENTS)?;
    let knn = KNeighborsClassifier::fit(&pca.transform(&train)?, &w.train_labels, NEIGHBOURS)?;
    let projected = pca.transform(&scaler.transform(&w.test)?)?;
    let predicted = knn.predict(&projected)?;
    Ok(outputs(w, &pca, projected, &predicted))
}

/// The lazy handles: predictions, PCA model, projected test rows.
type Recorded<'a> = (
    Lazy<'a, Array1<usize>>,
    Lazy<'a, Pca>,
    Lazy<'a, Array2<f64>>,
);

/// The pipeline, recorded. The predictions come first among the targets so
/// that the plan orders the fits before the test rows' chain, which then
/// runs as one row-split stage.
fn record(w: &Wine) -> Recorded<'_> {
    let scaler = standard_scaler_fit(&w.train);
    let train = scaler.transform(&w.train);
    let pca = pca_fit(&train, COMPONENTS);
    let knn = knn_fit(pca.transform(&train), &w.train_labels, NEIGHBOURS);
    let projected = pca.transform(scaler.transform(&w.test));
    let predicted = knn.predict(&projected);
    (predicted, pca, projected)
}

fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let w = wine(x)?;
    time_lazy(
        || record(w),
        |(predicted, pca, projected)| outputs(w, &pca, projected, &predicted),
    )
}

/// The gpu mode: every fit, transform and the vote on the device.
fn run_gpu(g: &crate::gpu::Gpu<'_>, x: &Inputs) -> Result<Outputs, WorkloadError> {
    let w = wine(x)?;
    let dev = g.device();
    let d = w.train.ncols();
    let train = DeviceMatrix::upload_checked(dev, "StandardScaler", &w.train)?;
    let scaler = standard_scaler_fit_on(dev, train.view())?;
    let scaled = DeviceMatrix::alloc(dev, train.rows(), d)?;
    transform_on(
        dev,
        Transform::StandardScaler(&scaler),
        train.view(),
        &scaled,
    )?;
    drop(train);
    let pca = pca_fit_on(dev, scaled.view(), COMPONENTS)?;
    let train_projected = DeviceMatrix::alloc(dev, scaled.rows(), COMPONENTS)?;
    transform_on(dev, Transform::Pca(&pca), scaled.view(), &train_projected)?;
    drop(scaled);
    let knn = DeviceKnn::fit_on(dev, train_projected, &w.train_labels, NEIGHBOURS)?;

    let test = DeviceMatrix::upload_checked(dev, "StandardScaler", &w.test)?;
    let test_scaled = DeviceMatrix::alloc(dev, test.rows(), d)?;
    transform_on(
        dev,
        Transform::StandardScaler(&scaler),
        test.view(),
        &test_scaled,
    )?;
    drop(test);
    let projected = DeviceMatrix::alloc(dev, test_scaled.rows(), COMPONENTS)?;
    transform_on(dev, Transform::Pca(&pca), test_scaled.view(), &projected)?;
    drop(test_scaled);
    let predicted = knn_predict_on(dev, &knn, projected.view())?;
    let projected = projected.download(dev)?;
    g.synchronize()?;
    Ok(outputs_of(
        w,
        &pca.explained_variance_ratio,
        projected,
        &predicted,
    ))
}

/// Identical predictions (and accuracy); each projected column (one per
/// component) equal up to one sign, and the explained variance ratio, within
/// 1e-6 relative (of the largest magnitude).
pub fn same_predictions(got: &Outputs, expected: &Outputs) -> Result<(), String> {
    if got.len() != 4 || expected.len() != 4 {
        return Err("4 result arrays expected".into());
    }
    if got[0] != expected[0] {
        let i = (0..got[0].len().min(expected[0].len()))
            .find(|&i| got[0][i] != expected[0][i])
            .unwrap_or(0);
        return Err(format!("predictions differ (first at row {i})"));
    }
    for (name, g, e) in [
        ("projected", &got[1], &expected[1]),
        ("explained variance ratio", &got[2], &expected[2]),
        ("accuracy", &got[3], &expected[3]),
    ] {
        if g.len() != e.len() {
            return Err(format!("{name}: {} values, not {}", g.len(), e.len()));
        }
    }
    // The projected rows, row-major: column c is elements c, c + k, ...
    let k = COMPONENTS;
    for c in 0..k {
        let (g, e) = (
            got[1].slice(ndarray::s![c..; k]),
            expected[1].slice(ndarray::s![c..; k]),
        );
        let sign = if g.dot(&e) < 0.0 { -1.0 } else { 1.0 };
        let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if let Some(i) = (0..e.len()).find(|&i| (g[i] - sign * e[i]).abs() > 1e-6 * scale) {
            return Err(format!(
                "projected component {c}, row {i}: {} vs {}",
                g[i],
                sign * e[i]
            ));
        }
    }
    let (g, e) = (&got[2], &expected[2]);
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if let Some(i) = (0..e.len()).find(|&i| (g[i] - e[i]).abs() > 1e-6 * scale) {
        return Err(format!(
            "explained variance ratio, element {i}: {} vs {}",
            g[i], e[i]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_split_has_124_training_and_54_test_rows() {
        let x = generate(1, 0).unwrap();
        let w = wine(&*x).unwrap();
        assert_eq!(w.train.dim(), (124, 13));
        assert_eq!(w.test.dim(), (108, 13));
        assert_eq!(
            w.test.slice(ndarray::s![..54, ..]),
            w.test.slice(ndarray::s![54.., ..])
        );
        assert_eq!(w.test_labels.len(), 108);
    }

    #[test]
    fn accuracy_and_explained_variance_are_scikit_learns() {
        // scikit-learn 1.x on the same split (benchmarks/anchors/ml_workloads.py pca 0):
        // accuracy=0.9815 evr=[0.362, 0.1876].
        let x = generate(0, 0).unwrap();
        let out = run_cpu(&*x).unwrap();
        assert_eq!(out[3][0], 53.0 / 54.0);
        assert!((out[2][0] - 0.3620).abs() < 5e-5, "{}", out[2]);
        assert!((out[2][1] - 0.1876).abs() < 5e-5, "{}", out[2]);
    }

    #[test]
    fn bach_gives_the_cpu_result_at_several_batch_sizes() {
        let x = generate(3, 0).unwrap();
        let cpu = run_cpu(&*x).unwrap();
        for batch in [1, 50, 10_000] {
            let g = bach_runtime::Graph::with_config(bach_runtime::Config {
                device: bach_runtime::DevicePolicy::Cpu,
                batch_size: Some(batch),
                ..Default::default()
            });
            let got = g.enter(|| run_bach(&*x)).unwrap().outputs;
            assert_eq!(got, cpu, "batch {batch}");
            assert_eq!(same_predictions(&got, &cpu), Ok(()));
        }
        let mut other = cpu.clone();
        other[0][7] = (other[0][7] + 1.0) % 3.0;
        assert!(same_predictions(&other, &cpu).is_err());
        // A component's sign is free; its values are not.
        let mut flipped = cpu.clone();
        flipped[1]
            .slice_mut(ndarray::s![1..; 2])
            .mapv_inplace(|v| -v);
        assert_eq!(same_predictions(&flipped, &cpu), Ok(()));
        flipped[1][2] += 1e-3;
        assert!(same_predictions(&flipped, &cpu).is_err());
    }

    /// The bach plan with its row-split stage (scale, project, vote) placed
    /// on a simulated device, from room for everything down to a few rows
    /// per batch: the predictions and projections are the CPU's.
    #[test]
    fn bach_placed_on_a_device_gives_the_cpu_result_at_every_capacity() {
        let x = generate(3, 0).unwrap();
        let cpu = run_cpu(&*x).unwrap();
        for capacity in [1 << 30, 256 << 10, 48 << 10] {
            let dev = std::sync::Arc::new(bach_runtime::SimulatedDevice::with_capacity(capacity));
            let g = super::super::forced_device_graph(dev.clone());
            let got = g.enter(|| run_bach(&*x)).unwrap().outputs;
            assert_eq!(same_predictions(&got, &cpu), Ok(()), "capacity {capacity}");
            assert_eq!(got[0], cpu[0], "capacity {capacity}");
            let run = g.last_run().unwrap();
            let last = run.stages.last().unwrap();
            assert_eq!(
                last.ops,
                ["standard_scaler_transform", "pca_transform", "knn_predict"],
                "{run}"
            );
            assert_eq!(last.placement, bach_runtime::Placement::Device, "{run}");
            assert!(bach_runtime::Device::stats(&*dev).peak_bytes <= capacity as u64);
        }
    }

    #[test]
    fn gpu_mode_on_the_simulated_device_predicts_as_the_cpu() {
        let x = generate(4, 0).unwrap();
        let cpu = run_cpu(&*x).unwrap();
        let dev = bach_runtime::SimulatedDevice::with_capacity(1 << 24);
        let gpu = run_gpu(&crate::gpu::Gpu::new(&dev), &*x).unwrap();
        assert_eq!(same_predictions(&gpu, &cpu), Ok(()));
        assert_eq!(gpu[0], cpu[0]);
        assert_eq!(gpu[3], cpu[3]);
        assert_eq!(dev.in_use(), 0, "every buffer freed");
        // Too little memory for the test rows: the device's typed error.
        let small = bach_runtime::SimulatedDevice::with_capacity(64 << 10);
        let e = run_gpu(&crate::gpu::Gpu::new(&small), &*x).unwrap_err();
        assert!(e.to_string().contains("out of memory"), "{e}");
    }
}
