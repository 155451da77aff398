//! The linfa models' device steps (`annotated_libs::linfa::device`) against the CPU models:
//! on the simulated device (also with a capacity so small that the truncated SVD pages its
//! rows), their kernels compiled by NVRTC, and run as host C++ against the Rust stand-ins.

mod common;

#[path = "common/host_cpp.rs"]
mod host_cpp;
use host_cpp::{host_kernels, launch, Ptr};

use annotated_libs::linfa::device::{
    self as dev_linfa, gram_on, knn_classes, knn_predict_on, pca_fit_on, standard_scaler_fit_on,
    top_components_on, transform_on, truncated_svd_on, tsvd_block_rows, DeviceKnn,
    DeviceLinfaError, DeviceMatrix, DevicePca, DeviceStandardScaler, DeviceTruncatedSvd, Transform,
    KNN_MAX_K,
};
use annotated_libs::linfa::error::LinfaError;
use annotated_libs::linfa::nn::KNeighborsClassifier;
use annotated_libs::linfa::preprocessing::StandardScaler;
use annotated_libs::linfa::reduction::{Gram, Pca, TruncatedSvd};
use bach_runtime::{Device, SimulatedDevice, SimulatedDeviceConfig};
use ndarray::{concatenate, Array1, Array2, Axis};

fn bits(a: &Array2<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

/// `n` rows of `d` features around one center far from the origin (the TSVD workload's
/// shape: a dominant first component), with distinct noise.
fn blob(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let center = common::uniform(d, -10.0, 10.0, seed);
    let noise = common::uniform(n * d, -1.0, 1.0, seed + 1);
    Array2::from_shape_fn((n, d), |(i, j)| center[j] + noise[i * d + j])
}

/// Each row of `a` equals the same row of `b` or its negation, within `rel` of the row's
/// largest magnitude.
fn assert_rows_equal_up_to_sign(a: &Array2<f64>, b: &Array2<f64>, rel: f64) {
    assert_eq!(a.dim(), b.dim());
    for (r, (x, y)) in a.rows().into_iter().zip(b.rows()).enumerate() {
        let sign = if x.dot(&y) < 0.0 { -1.0 } else { 1.0 };
        let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            assert!(
                (p - sign * q).abs() <= rel * scale,
                "row {r}, element {i}: {p} vs {}",
                sign * q
            );
        }
    }
}

fn assert_close(a: &[f64], b: &[f64], rel: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= rel * y.abs(), "element {i}: {x} vs {y}");
    }
}

// ---- Gram matrix and the truncated SVD -------------------------------------------------------

#[test]
fn the_gram_matrix_of_row_blocks_sums_on_the_device() {
    let dev = SimulatedDevice::with_capacity(1 << 24);
    let x = blob(200, 9, 3);
    let xd = DeviceMatrix::upload(&dev, &x).unwrap();
    let gram = DeviceMatrix::alloc(&dev, 9, 9).unwrap();
    // All rows at once: x^T x bit for bit.
    gram_on(&dev, xd.view(), &gram, false).unwrap();
    let want = Gram::of(&x).unwrap().xtx;
    assert_eq!(bits(&gram.download(&dev).unwrap()), bits(&want));
    // Three blocks of rows inside the one buffer, accumulated: the same up to rounding.
    for (i, r) in [0..70, 70..71, 71..200].into_iter().enumerate() {
        gram_on(&dev, xd.row_block(r), &gram, i > 0).unwrap();
    }
    let summed = gram.download(&dev).unwrap();
    assert_close(summed.as_slice().unwrap(), want.as_slice().unwrap(), 1e-12);
    // A Gram matrix of the wrong shape is refused.
    let wrong = DeviceMatrix::alloc(&dev, 9, 8).unwrap();
    assert!(gram_on(&dev, xd.view(), &wrong, false).is_err());
}

#[test]
fn top_components_are_the_truncated_svds_bit_for_bit() {
    let dev = SimulatedDevice::with_capacity(1 << 24);
    let x = blob(300, 24, 5);
    let cpu = TruncatedSvd::fit(&x, 3).unwrap();
    let xd = DeviceMatrix::upload(&dev, &x).unwrap();
    let gram = DeviceMatrix::alloc(&dev, 24, 24).unwrap();
    gram_on(&dev, xd.view(), &gram, false).unwrap();
    let top = top_components_on(&dev, &gram, 300, 3).unwrap();
    assert_eq!(bits(&top.components), bits(cpu.components()));
    assert_eq!(&top.singular_values, cpu.singular_values());
    assert_eq!(
        bits(&top.components_on.download(&dev).unwrap()),
        bits(cpu.components())
    );

    // The checks of TruncatedSvd::from_gram.
    for (k, rows) in [(0, 300), (25, 300), (3, 2)] {
        let e = top_components_on(&dev, &gram, rows, k).unwrap_err();
        assert!(
            matches!(
                e,
                DeviceLinfaError::Input(LinfaError::BadComponents { components, .. }) if components == k
            ),
            "{e}"
        );
    }
    assert!(matches!(
        top_components_on(&dev, &gram, 0, 3),
        Err(DeviceLinfaError::Input(LinfaError::NoSamples { .. }))
    ));
    // A Gram matrix that overflowed.
    let mut huge = Array2::<f64>::eye(4);
    huge[(1, 2)] = f64::INFINITY;
    let hd = DeviceMatrix::upload(&dev, &huge).unwrap();
    assert!(matches!(
        top_components_on(&dev, &hd, 10, 2),
        Err(DeviceLinfaError::Input(LinfaError::Overflow { .. }))
    ));
}

#[test]
fn the_truncated_svd_on_the_device_is_the_cpus_whole_and_paged() {
    let (n, d, k) = (300, 20, 2);
    let x = blob(n, d, 11);
    let cpu = TruncatedSvd::fit(&x, k).unwrap();
    let want_t = cpu.transform(&x).unwrap();

    // All rows fit: one block kept on the device, results bit for bit.
    let dev = SimulatedDevice::with_capacity(1 << 24);
    let (model, t) = truncated_svd_on(&dev, &x, k).unwrap();
    assert_eq!(bits(&model.components), bits(cpu.components()));
    assert_eq!(&model.singular_values, cpu.singular_values());
    assert_eq!(bits(&t), bits(&want_t));
    assert_eq!(
        dev.stats().uploads,
        1 + 1,
        "the rows once, the components once"
    );
    drop(model);
    assert_eq!(dev.in_use(), 0, "every buffer freed with the model");

    // Room for 50 rows at a time: six blocks, uploaded twice (Gram, transform).
    let capacity = dev_linfa::tsvd_fixed_bytes(d, k) + 50 * (d + k) * 8;
    assert_eq!(tsvd_block_rows(n, d, k, capacity), Some(50));
    let small = SimulatedDevice::with_capacity(capacity);
    let (model, t) = truncated_svd_on(&small, &x, k).unwrap();
    assert_rows_equal_up_to_sign(&model.components, cpu.components(), 1e-6);
    assert_close(
        model.singular_values.as_slice().unwrap(),
        cpu.singular_values().as_slice().unwrap(),
        1e-6,
    );
    assert_rows_equal_up_to_sign(&t.t().to_owned(), &want_t.t().to_owned(), 1e-6);
    let stats = small.stats();
    assert!(stats.peak_bytes <= capacity as u64, "{stats:?}");
    assert!(stats.uploads >= 12, "paged twice: {stats:?}");
}

#[test]
fn too_little_device_memory_and_bad_input_are_typed_errors() {
    let x = blob(100, 20, 1);
    // Not even the Gram matrix fits.
    let tiny = SimulatedDevice::with_capacity(1000);
    let e = truncated_svd_on(&tiny, &x, 2).unwrap_err();
    assert!(
        matches!(
            e,
            DeviceLinfaError::Device(bach_runtime::Error::DeviceOutOfMemory { .. })
        ),
        "{e}"
    );
    // NaN: named at its position in the whole matrix, as the CPU fit names it.
    let mut bad = x.clone();
    bad[(77, 3)] = f64::NAN;
    let small = SimulatedDevice::with_capacity(1 << 16);
    let e = truncated_svd_on(&small, &bad, 2).unwrap_err();
    assert!(
        matches!(
            e,
            DeviceLinfaError::Input(LinfaError::NotFinite {
                row: 77,
                column: 3,
                ..
            })
        ),
        "{e}"
    );
    assert!(matches!(
        truncated_svd_on(&small, &Array2::<f64>::zeros((0, 3)), 1),
        Err(DeviceLinfaError::Input(LinfaError::NoSamples { .. }))
    ));
    assert!(matches!(
        truncated_svd_on(&small, &x, 21),
        Err(DeviceLinfaError::Input(LinfaError::BadComponents { .. }))
    ));
    assert_eq!(small.in_use(), 0);
}

// ---- the Wine pipeline: scaler, PCA, k nearest neighbours -----------------------------------

struct Wine {
    train: Array2<f64>,
    train_labels: Array1<usize>,
    test: Array2<f64>,
}

/// The vendored Wine data with its train/test split; the test rows doubled `doublings` times.
fn wine(doublings: u32) -> Wine {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../benchmarks/data");
    let csv = std::fs::read_to_string(format!("{dir}/wine_data.csv")).unwrap();
    let split = std::fs::read_to_string(format!("{dir}/wine_split.json")).unwrap();
    let mut lines = csv.lines();
    let mut header = lines.next().unwrap().split(',');
    let n: usize = header.next().unwrap().parse().unwrap();
    let d: usize = header.next().unwrap().parse().unwrap();
    let mut x = Array2::zeros((n, d));
    let mut y = Array1::zeros(n);
    for (i, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        for j in 0..d {
            x[(i, j)] = fields[j].trim().parse().unwrap();
        }
        y[i] = fields[d].trim().parse().unwrap();
    }
    let indices = |key: &str| -> Vec<usize> {
        let rest = &split[split.find(&format!("\"{key}\"")).unwrap()..];
        let (open, close) = (rest.find('[').unwrap(), rest.find(']').unwrap());
        rest[open + 1..close]
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect()
    };
    let (train, test) = (indices("train"), indices("test"));
    let mut test_x = x.select(Axis(0), &test);
    for _ in 0..doublings {
        test_x = concatenate(Axis(0), &[test_x.view(), test_x.view()]).unwrap();
    }
    Wine {
        train: x.select(Axis(0), &train),
        train_labels: y.select(Axis(0), &train),
        test: test_x,
    }
}

/// The CPU pipeline of the PCA workload: predictions, projected test rows, the PCA.
fn cpu_pipeline(w: &Wine) -> (Array1<usize>, Array2<f64>, Pca) {
    let scaler = StandardScaler::fit(&w.train).unwrap();
    let train = scaler.transform(&w.train).unwrap();
    let pca = Pca::fit(&train, 2).unwrap();
    let knn =
        KNeighborsClassifier::fit(&pca.transform(&train).unwrap(), &w.train_labels, 5).unwrap();
    let projected = pca.transform(&scaler.transform(&w.test).unwrap()).unwrap();
    (knn.predict(&projected).unwrap(), projected, pca)
}

/// The same on `dev`: every fit and transform on the device.
fn device_pipeline(
    dev: &dyn Device,
    w: &Wine,
) -> Result<(Array1<usize>, Array2<f64>, DevicePca), DeviceLinfaError> {
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
    let pca = pca_fit_on(dev, scaled.view(), 2)?;
    let train_projected = DeviceMatrix::alloc(dev, train.rows(), 2)?;
    transform_on(dev, Transform::Pca(&pca), scaled.view(), &train_projected)?;
    let knn = DeviceKnn::fit_on(dev, train_projected, &w.train_labels, 5)?;
    let test = DeviceMatrix::upload_checked(dev, "StandardScaler", &w.test)?;
    let test_scaled = DeviceMatrix::alloc(dev, test.rows(), d)?;
    transform_on(
        dev,
        Transform::StandardScaler(&scaler),
        test.view(),
        &test_scaled,
    )?;
    let projected = DeviceMatrix::alloc(dev, test.rows(), 2)?;
    transform_on(dev, Transform::Pca(&pca), test_scaled.view(), &projected)?;
    let predicted = knn_predict_on(dev, &knn, projected.view())?;
    Ok((predicted, projected.download(dev)?, pca))
}

#[test]
fn the_scaler_fits_and_transforms_on_the_device_bit_for_bit() {
    let w = wine(0);
    let dev = SimulatedDevice::with_capacity(1 << 24);
    let cpu = StandardScaler::fit(&w.train).unwrap();
    let train = DeviceMatrix::upload(&dev, &w.train).unwrap();
    let fitted = standard_scaler_fit_on(&dev, train.view()).unwrap();
    assert_eq!(&fitted.means, cpu.means());
    assert_eq!(&fitted.scales, cpu.scales());
    // A CPU-fitted scaler uploaded, and the device-fitted one, transform as the CPU's.
    let uploaded = DeviceStandardScaler::upload(&dev, &cpu).unwrap();
    let want = cpu.transform(&w.test).unwrap();
    let test = DeviceMatrix::upload(&dev, &w.test).unwrap();
    for scaler in [&fitted, &uploaded] {
        let out = DeviceMatrix::alloc(&dev, test.rows(), test.cols()).unwrap();
        transform_on(&dev, Transform::StandardScaler(scaler), test.view(), &out).unwrap();
        assert_eq!(bits(&out.download(&dev).unwrap()), bits(&want));
    }
    // A constant feature is left unscaled, as linfa leaves it.
    let mut constant = w.train.clone();
    constant.column_mut(4).fill(2.5);
    let cd = DeviceMatrix::upload(&dev, &constant).unwrap();
    let s = standard_scaler_fit_on(&dev, cd.view()).unwrap();
    assert_eq!(s.scales[4], 1.0);
    assert_eq!(&s.scales, StandardScaler::fit(&constant).unwrap().scales());
}

#[test]
fn the_wine_pipeline_on_the_device_predicts_as_the_cpu() {
    let w = wine(2);
    let (want_pred, want_proj, cpu_pca) = cpu_pipeline(&w);
    let dev = SimulatedDevice::with_capacity(1 << 24);
    let (pred, proj, pca) = device_pipeline(&dev, &w).unwrap();
    assert_eq!(pred, want_pred, "predictions identical");
    // The PCA from the Gram matrix's eigenvectors: linfa's up to sign and rounding.
    assert_rows_equal_up_to_sign(&pca.components, cpu_pca.components(), 1e-6);
    assert_rows_equal_up_to_sign(&proj.t().to_owned(), &want_proj.t().to_owned(), 1e-6);
    assert_close(
        pca.singular_values.as_slice().unwrap(),
        cpu_pca.singular_values().as_slice().unwrap(),
        1e-6,
    );
    assert_close(
        pca.explained_variance_ratio.as_slice().unwrap(),
        cpu_pca.explained_variance_ratio().as_slice().unwrap(),
        1e-6,
    );
    assert_eq!(pca.mean, *cpu_pca.mean(), "the means bit for bit");
    drop(pca);
    assert_eq!(dev.in_use(), 0, "every buffer freed with the model");

    // linfa's own PCA uploaded transforms bit for bit.
    let scaler = StandardScaler::fit(&w.train).unwrap();
    let scaled = scaler.transform(&w.test).unwrap();
    let uploaded = DevicePca::upload(&dev, &cpu_pca).unwrap();
    let xd = DeviceMatrix::upload(&dev, &scaled).unwrap();
    let out = DeviceMatrix::alloc(&dev, xd.rows(), 2).unwrap();
    transform_on(&dev, Transform::Pca(&uploaded), xd.view(), &out).unwrap();
    assert_eq!(bits(&out.download(&dev).unwrap()), bits(&want_proj));

    // Too little memory for the test rows: a typed error.
    let small = SimulatedDevice::with_capacity(124 * 13 * 8 * 4);
    let e = device_pipeline(&small, &wine(6)).unwrap_err();
    assert!(
        matches!(
            e,
            DeviceLinfaError::Device(bach_runtime::Error::DeviceOutOfMemory { .. })
        ),
        "{e}"
    );
}

#[test]
fn an_uploaded_truncated_svd_transforms_bit_for_bit() {
    let x = blob(64, 10, 4);
    let cpu = TruncatedSvd::fit(&x, 3).unwrap();
    let dev = SimulatedDevice::with_capacity(1 << 20);
    let model = DeviceTruncatedSvd::upload(&dev, &cpu).unwrap();
    let xd = DeviceMatrix::upload(&dev, &x).unwrap();
    let out = DeviceMatrix::alloc(&dev, 64, 3).unwrap();
    transform_on(&dev, Transform::TruncatedSvd(&model), xd.view(), &out).unwrap();
    assert_eq!(
        bits(&out.download(&dev).unwrap()),
        bits(&cpu.transform(&x).unwrap())
    );
    // Another number of features, or an output of the wrong shape.
    let other = DeviceMatrix::upload(&dev, &blob(64, 9, 4)).unwrap();
    assert!(matches!(
        transform_on(&dev, Transform::TruncatedSvd(&model), other.view(), &out),
        Err(DeviceLinfaError::Input(LinfaError::FeatureMismatch {
            expected: 10,
            got: 9,
            ..
        }))
    ));
    let wrong = DeviceMatrix::alloc(&dev, 64, 2).unwrap();
    assert!(matches!(
        transform_on(&dev, Transform::TruncatedSvd(&model), xd.view(), &wrong),
        Err(DeviceLinfaError::Device(_))
    ));
}

// ---- k nearest neighbours ------------------------------------------------------------------

/// Labelled points in three groups, and queries with no exact tie at the k-th distance.
fn neighbours_data(
    n: usize,
    q: usize,
    d: usize,
    seed: u64,
) -> (Array2<f64>, Array1<usize>, Array2<f64>) {
    let u = common::uniform(n * d, -1.0, 1.0, seed);
    let x = Array2::from_shape_fn((n, d), |(i, j)| u[i * d + j] + (i % 3) as f64 * 0.7);
    let labels = Array1::from_shape_fn(n, |i| [4, 9, 2][i % 3]);
    let v = common::uniform(q * d, -1.0, 2.0, seed + 7);
    let queries = Array2::from_shape_fn((q, d), |(i, j)| v[i * d + j]);
    (x, labels, queries)
}

/// Asserts that no query has training rows tied at its k-th squared distance (where linfa's
/// k-d tree and the device may pick different rows).
fn assert_no_kth_ties(x: &Array2<f64>, queries: &Array2<f64>, k: usize) {
    for (i, q) in queries.rows().into_iter().enumerate() {
        let mut dist: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| {
                let mut acc = 0.0;
                for (a, b) in q.iter().zip(&r) {
                    let diff = a - b;
                    acc += diff * diff;
                }
                acc
            })
            .collect();
        dist.sort_by(f64::total_cmp);
        assert!(
            dist[k - 1] != dist[k],
            "query {i} ties at the k-th distance"
        );
    }
}

#[test]
fn the_device_vote_is_linfas() {
    let (x, labels, queries) = neighbours_data(150, 400, 3, 21);
    for k in [1, 4, 5, 12] {
        assert_no_kth_ties(&x, &queries, k);
        let cpu = KNeighborsClassifier::fit(&x, &labels, k).unwrap();
        let want = cpu.predict(&queries).unwrap();
        let dev = SimulatedDevice::with_capacity(1 << 20);
        let model = DeviceKnn::upload(&dev, &cpu).unwrap();
        let qd = DeviceMatrix::upload(&dev, &queries).unwrap();
        assert_eq!(
            knn_predict_on(&dev, &model, qd.view()).unwrap(),
            want,
            "k = {k}"
        );
        // Rows 100..250 of the queries, read in place.
        let block = knn_predict_on(&dev, &model, qd.row_block(100..250)).unwrap();
        assert_eq!(block, want.slice(ndarray::s![100..250]), "k = {k}");
    }
}

#[test]
fn the_vote_breaks_ties_toward_the_smallest_label() {
    // Two neighbours of label 9 and two of label 2 (k = 4): label 2 wins.
    let x = ndarray::array![[0.0], [1.0], [-1.5], [2.5], [10.0]];
    let labels = ndarray::array![9, 2, 9, 2, 9];
    let q = ndarray::array![[0.2]];
    let cpu = KNeighborsClassifier::fit(&x, &labels, 4).unwrap();
    assert_eq!(cpu.predict(&q).unwrap().to_vec(), [2]);
    let dev = SimulatedDevice::with_capacity(1 << 20);
    let model = DeviceKnn::upload(&dev, &cpu).unwrap();
    let qd = DeviceMatrix::upload(&dev, &q).unwrap();
    assert_eq!(
        knn_predict_on(&dev, &model, qd.view()).unwrap().to_vec(),
        [2]
    );
}

#[test]
fn bad_neighbour_counts_and_shapes_are_typed_errors() {
    let dev = SimulatedDevice::with_capacity(1 << 22);
    let (x, labels, queries) = neighbours_data(100, 5, 3, 2);
    let points = || DeviceMatrix::upload(&dev, &x).unwrap();
    assert!(matches!(
        DeviceKnn::fit_on(&dev, points(), &labels, 0),
        Err(DeviceLinfaError::Input(LinfaError::BadNeighbours { .. }))
    ));
    assert!(matches!(
        DeviceKnn::fit_on(&dev, points(), &labels, 101),
        Err(DeviceLinfaError::Input(LinfaError::BadNeighbours { .. }))
    ));
    assert!(matches!(
        DeviceKnn::fit_on(&dev, points(), &labels, KNN_MAX_K + 1),
        Err(DeviceLinfaError::TooManyNeighbours { k: 65, max: 64 })
    ));
    assert!(matches!(
        DeviceKnn::fit_on(
            &dev,
            points(),
            &labels.slice(ndarray::s![1..]).to_owned(),
            3
        ),
        Err(DeviceLinfaError::Input(LinfaError::LabelMismatch { .. }))
    ));
    let model = DeviceKnn::fit_on(&dev, points(), &labels, 3).unwrap();
    let other = DeviceMatrix::upload(&dev, &queries.slice(ndarray::s![.., ..2])).unwrap();
    assert!(matches!(
        knn_predict_on(&dev, &model, other.view()),
        Err(DeviceLinfaError::Input(LinfaError::FeatureMismatch { .. }))
    ));
    // A failing kernel is a device error.
    let failing = SimulatedDevice::new(SimulatedDeviceConfig {
        capacity: 1 << 22,
        fail_kernel: Some("knn_predict_f64".into()),
        ..Default::default()
    });
    let model = DeviceKnn::fit_on(
        &failing,
        DeviceMatrix::upload(&failing, &x).unwrap(),
        &labels,
        3,
    )
    .unwrap();
    let qd = DeviceMatrix::upload(&failing, &queries).unwrap();
    assert!(matches!(
        knn_predict_on(&failing, &model, qd.view()),
        Err(DeviceLinfaError::Device(bach_runtime::Error::Device(_)))
    ));
}

// ---- the kernels: NVRTC, and as host C++ -----------------------------------------------------

#[test]
fn the_linfa_kernels_compile_with_nvrtc() {
    let ptx = match bach_runtime::compile_to_ptx(&dev_linfa::LINFA_KERNELS, 9, 0) {
        Ok(ptx) => ptx,
        Err(bach_runtime::Error::DeviceUnavailable(reason))
            if std::env::var("BACH_REQUIRE_NVRTC").as_deref() != Ok("1") =>
        {
            eprintln!("skipping: {reason}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    for kernel in [
        "knn_predict_f64",
        "column_moments_f64",
        "center_scale_f64",
        "center_f64",
    ] {
        assert!(
            ptx.contains(&format!(".entry {kernel}(")),
            "{kernel} missing"
        );
    }
    // No fused multiply-add in the distance (linfa sums rounded products) nor the scaling.
    // (The moments have ndarray's `mul_add`, and the fused multiply-adds of PTX's correctly
    // rounded division: the host C++ test checks their arithmetic.)
    let body = |kernel: &str| {
        let start = ptx.find(&format!(".entry {kernel}(")).unwrap();
        let rest = &ptx[start + 1..];
        &rest[..rest.find(".entry").unwrap_or(rest.len())]
    };
    assert!(!body("knn_predict_f64").contains("fma.rn.f64"));
    assert!(!body("center_scale_f64").contains("fma.rn.f64"));
    assert!(!body("center_f64").contains("fma.rn.f64"));
}

type Knn = unsafe extern "C" fn(u64, *const f64, *const f64, i32, i32, i32, *const i32, *mut i32);

#[test]
fn the_knn_kernel_as_host_cpp_votes_as_the_rust_stand_in_and_linfa() {
    let Some(lib) = host_kernels("knn.cu") else {
        return;
    };
    // SAFETY: the Rust type follows the kernel's parameter list.
    let knn: Knn = unsafe { *lib.get(b"knn_predict_f64\0").unwrap() };
    let (x, labels, queries) = neighbours_data(120, 300, 4, 8);
    let cpu = KNeighborsClassifier::fit(&x, &labels, 7).unwrap();
    let classes: Vec<i32> = labels
        .iter()
        .map(|l| cpu.classes().binary_search(l).unwrap() as i32)
        .collect();
    let (xs, qs) = (x.as_slice().unwrap(), queries.as_slice().unwrap());
    for k in [1, 7, KNN_MAX_K] {
        let rust = knn_classes(qs, xs, 4, k, &classes);
        let got = vec![-1i32; 300];
        let (qp, xp, cp, gp) = (Ptr::of(qs), Ptr::of(xs), Ptr::of(&classes), Ptr::of(&got));
        // Two blocks of 64 threads: a grid-stride loop over 300 queries.
        // SAFETY: the buffers hold what the arguments describe.
        launch(&lib, 2, 64, || unsafe {
            knn(300, qp.c(), xp.c(), 120, 4, k as i32, cp.c(), gp.m())
        });
        assert_eq!(got, rust, "k = {k}");
        if k == 7 {
            assert_no_kth_ties(&x, &queries, k);
            let want: Vec<i32> = cpu
                .predict(&queries)
                .unwrap()
                .iter()
                .map(|l| cpu.classes().binary_search(l).unwrap() as i32)
                .collect();
            assert_eq!(rust, want);
        }
    }
    // Equal distances: the earlier training row is nearer. Rows at 0, 2, -1, 1 (d = 1) and
    // the query 1: row 3 at distance 0, rows 0 and 1 tied at 1. With k = 2 the device keeps
    // row 0 (class 1 with row 3: a vote of 2); row 1 would have made a tie won by class 0.
    let train = [0.0, 2.0, -1.0, 1.0];
    let class_of = [1, 0, 0, 1];
    let query = [1.0];
    let rust = knn_classes(&query, &train, 1, 2, &class_of);
    assert_eq!(rust, [1]);
    let got = vec![-1i32; 1];
    let (qp, tp, cp, gp) = (
        Ptr::of(&query),
        Ptr::of(&train),
        Ptr::of(&class_of),
        Ptr::of(&got),
    );
    // SAFETY: as above.
    launch(&lib, 1, 1, || unsafe {
        knn(1, qp.c(), tp.c(), 4, 1, 2, cp.c(), gp.m())
    });
    assert_eq!(got, rust);
}

type Moments = unsafe extern "C" fn(u64, *const f64, i32, i32, f64, *mut f64, *mut f64);
type CenterScale = unsafe extern "C" fn(u64, *const f64, i32, *const f64, *const f64, *mut f64);
type Center = unsafe extern "C" fn(u64, *const f64, i32, *const f64, *mut f64);

#[test]
fn the_scaling_kernels_as_host_cpp_are_ndarrays_and_linfas_bit_for_bit() {
    let Some(lib) = host_kernels("linfa.cu") else {
        return;
    };
    // SAFETY: the Rust types follow the kernels' parameter lists.
    let (moments, center_scale, center): (Moments, CenterScale, Center) = unsafe {
        (
            *lib.get(b"column_moments_f64\0").unwrap(),
            *lib.get(b"center_scale_f64\0").unwrap(),
            *lib.get(b"center_f64\0").unwrap(),
        )
    };
    let w = wine(0);
    let (rows, cols) = w.train.dim();
    let xs = w.train.as_slice().unwrap();
    for ddof in [0.0, 1.0] {
        let (means, vars) = (vec![0.0f64; cols], vec![0.0f64; cols]);
        let (xp, mp, vp) = (Ptr::of(xs), Ptr::of(&means), Ptr::of(&vars));
        // SAFETY: the buffers hold what the arguments describe.
        launch(&lib, 1, 8, || unsafe {
            moments(
                cols as u64,
                xp.c(),
                rows as i32,
                cols as i32,
                ddof,
                mp.m(),
                vp.m(),
            )
        });
        let want_means = w.train.mean_axis(Axis(0)).unwrap();
        let want_vars = w.train.var_axis(Axis(0), ddof);
        assert_eq!(
            means.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want_means.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(
            vars.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want_vars.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "ddof {ddof}"
        );
    }
    // The scaler's transform, linfa's.
    let scaler = StandardScaler::fit(&w.train).unwrap();
    let test = w.test.as_slice().unwrap();
    let n = test.len();
    let out = vec![0.0f64; n];
    let (tp, op, sp, outp) = (
        Ptr::of(test),
        Ptr::of(scaler.means().as_slice().unwrap()),
        Ptr::of(scaler.scales().as_slice().unwrap()),
        Ptr::of(&out),
    );
    // SAFETY: as above.
    launch(&lib, 2, 32, || unsafe {
        center_scale(n as u64, tp.c(), cols as i32, op.c(), sp.c(), outp.m())
    });
    let want = scaler.transform(&w.test).unwrap();
    assert_eq!(
        out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        bits(&want)
    );
    // Centring, as linfa's PCA transform centres.
    let mean = w.test.mean_axis(Axis(0)).unwrap();
    let centred = vec![0.0f64; n];
    let (mp, cp) = (Ptr::of(mean.as_slice().unwrap()), Ptr::of(&centred));
    // SAFETY: as above.
    launch(&lib, 1, 16, || unsafe {
        center(n as u64, tp.c(), cols as i32, mp.c(), cp.m())
    });
    assert_eq!(
        centred.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        bits(&(&w.test - &mean))
    );
}

type NonfiniteFlag = unsafe extern "C" fn(u64, *const f64, *mut i32);

/// The input check of the models' device functions, as host C++: it flags
/// NaN and both infinities anywhere, and nothing else (not the largest
/// finite values, not subnormals, not signed zeros).
#[test]
fn the_nonfinite_flag_kernel_as_host_cpp_flags_exactly_nan_and_infinities() {
    let Some(lib) = host_kernels("linfa.cu") else {
        return;
    };
    // SAFETY: the Rust type follows the kernel's parameter list.
    let flag_kernel: NonfiniteFlag = unsafe { *lib.get(b"nonfinite_flag_f64\0").unwrap() };
    let finite = [
        0.0,
        -0.0,
        1.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE / 4.0,
        -1e-300,
    ];
    let run = |x: &[f64]| -> bool {
        let mut flag = vec![0i32; 1];
        // Written by the kernel: a pointer from a mutable borrow.
        let (xp, fp) = (Ptr::of(x), Ptr(flag.as_mut_ptr() as usize));
        // SAFETY: the buffers hold what the arguments describe.
        launch(&lib, 2, 8, || unsafe {
            flag_kernel(x.len() as u64, xp.c(), fp.m())
        });
        flag[0] != 0
    };
    let mut data: Vec<f64> = (0..1000).map(|i| finite[i % finite.len()]).collect();
    assert!(!run(&data), "finite values only");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for at in [0, 517, 999] {
            let keep = data[at];
            data[at] = bad;
            assert!(run(&data), "{bad} at {at}");
            data[at] = keep;
        }
    }
    assert!(!run(&[]), "no values");
}

type ClassLabels = unsafe extern "C" fn(u64, *const i32, *const u64, *mut u64);

/// The vote's class indices become labels on the device, as host C++.
#[test]
fn the_class_label_kernel_as_host_cpp_maps_indices_to_labels() {
    let Some(lib) = host_kernels("knn.cu") else {
        return;
    };
    // SAFETY: the Rust type follows the kernel's parameter list.
    let map: ClassLabels = unsafe { *lib.get(b"class_labels_u64\0").unwrap() };
    let labels: Vec<u64> = vec![3, 7, 1 << 40];
    let classes: Vec<i32> = (0..500).map(|i| i * 7 % 3).collect();
    let mut out = vec![0u64; classes.len()];
    let (cp, lp, op) = (
        Ptr::of(&classes),
        Ptr::of(&labels),
        Ptr(out.as_mut_ptr() as usize),
    );
    // SAFETY: the buffers hold what the arguments describe.
    launch(&lib, 2, 32, || unsafe {
        map(classes.len() as u64, cp.c(), lp.c(), op.m())
    });
    let want: Vec<u64> = classes.iter().map(|&c| labels[c as usize]).collect();
    assert_eq!(out, want);
}
