//! The annotated linfa module: lazy fits and row-split transforms give the
//! eager linfa results at every batch size and on the simulated device,
//! fitted models are broadcast to every batch, and bad input is a typed
//! error from the eager and the lazy API alike.

use annotated_libs::linfa::error::LinfaError;
use annotated_libs::linfa::nn::{knn_fit, KNeighborsClassifier, LazyKNeighborsClassifier};
use annotated_libs::linfa::preprocessing::{
    standard_scaler_fit, LazyStandardScaler, StandardScaler,
};
use annotated_libs::linfa::reduction::{
    pca_fit, truncated_svd_fit, LazyPca, LazyTruncatedSvd, Pca, TruncatedSvd,
};
use bach_runtime::{Config, DevicePolicy, Error, Graph, Lazy};
use linfa_linalg::eigh::Eigh;
use ndarray::{s, Array1, Array2};

mod common;
use common::{fast_device, uniform};

/// `rows x features` values in three well separated groups, and each row's group.
fn grouped(rows: usize, features: usize, seed: u64) -> (Array2<f64>, Array1<usize>) {
    let noise = uniform(rows * features, -1.0, 1.0, seed);
    let labels = Array1::from_shape_fn(rows, |i| (i * 7 + 3) % 3);
    let x = Array2::from_shape_fn((rows, features), |(i, j)| {
        noise[i * features + j] + 4.0 * labels[i] as f64 * ((j % 3) as f64 - 1.0) + j as f64
    });
    (x, labels)
}

fn cpu_graph(batch: usize) -> Graph {
    Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        batch_size: Some(batch),
        ..Config::default()
    })
}

/// A graph with a simulated device that wins every placement it may take.
fn device_graph() -> Graph {
    let g = Graph::with_config(Config {
        device: DevicePolicy::Auto,
        batch_size: Some(16),
        ..Config::default()
    });
    g.set_device(Some(fast_device(None)));
    g
}

fn bits2(a: &Array2<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

/// The lazy pipeline of the PCA workload: scale, project, classify.
fn pipeline_eager(
    train: &Array2<f64>,
    labels: &Array1<usize>,
    test: &Array2<f64>,
) -> (Array2<f64>, Array1<usize>) {
    let scaler = StandardScaler::fit(train).unwrap();
    let train_s = scaler.transform(train).unwrap();
    let pca = Pca::fit(&train_s, 2).unwrap();
    let knn = KNeighborsClassifier::fit(&pca.transform(&train_s).unwrap(), labels, 5).unwrap();
    let projected = pca.transform(&scaler.transform(test).unwrap()).unwrap();
    let predicted = knn.predict(&projected).unwrap();
    (projected, predicted)
}

fn pipeline_lazy(
    g: &Graph,
    train: &Array2<f64>,
    labels: &Array1<usize>,
    test: &Array2<f64>,
) -> bach_runtime::Result<(Array2<f64>, Array1<usize>)> {
    g.enter(|| {
        let scaler = standard_scaler_fit(train);
        let train_s = scaler.transform(train);
        let pca = pca_fit(&train_s, 2);
        let knn = knn_fit(pca.transform(&train_s), labels, 5);
        let projected = pca.transform(scaler.transform(test));
        let predicted = knn.predict(&projected);
        // Targets in this order, the plan orders the fits before the test
        // rows' chain, which then runs as one row-split stage.
        let (predicted, projected) = g.evaluate((predicted, projected))?;
        Ok((projected, predicted))
    })
}

#[test]
fn the_pca_pipeline_gives_the_eager_result_at_every_batch_size() {
    let (train, labels) = grouped(90, 6, 1);
    let (test, _) = grouped(203, 6, 2);
    let (projected, predicted) = pipeline_eager(&train, &labels, &test);
    for batch in [1, 7, 64, 1000] {
        let g = cpu_graph(batch);
        let (p, y) = pipeline_lazy(&g, &train, &labels, &test).unwrap();
        assert_eq!(bits2(&p), bits2(&projected), "batch {batch}");
        assert_eq!(y, predicted, "batch {batch}");
    }
}

#[test]
fn fitted_models_are_broadcast_to_every_batch_of_the_row_split_stage() {
    let (train, labels) = grouped(60, 4, 3);
    let (test, _) = grouped(100, 4, 4);
    let g = cpu_graph(9);
    let (_, predicted) = pipeline_lazy(&g, &train, &labels, &test).unwrap();
    assert_eq!(predicted, pipeline_eager(&train, &labels, &test).1);
    // The test rows' transforms and the vote run as one stage of 12
    // batches of 9 rows; each batch read the three models.
    let run = g.last_run().unwrap();
    let split = run
        .stages
        .iter()
        .find(|s| s.ops.contains(&"knn_predict"))
        .expect("a stage with the prediction");
    assert!(split.ops.contains(&"pca_transform"), "{run}");
    assert_eq!(split.elements, Some(100), "{run}");
    assert_eq!(split.batch_size, Some(9), "{run}");
}

#[test]
fn the_pipeline_on_the_simulated_device_gives_the_eager_result() {
    let (train, labels) = grouped(90, 6, 5);
    let (test, _) = grouped(150, 6, 6);
    let (projected, predicted) = pipeline_eager(&train, &labels, &test);
    let (p, y) = pipeline_lazy(&device_graph(), &train, &labels, &test).unwrap();
    assert_eq!(bits2(&p), bits2(&projected));
    assert_eq!(y, predicted);
}

/// `a` and `b` equal row by row up to each row's sign, within `rel` of the row's largest value.
fn assert_rows_equal_up_to_sign(a: &Array2<f64>, b: &Array2<f64>, rel: f64) {
    assert_eq!(a.dim(), b.dim());
    for (ra, rb) in a.rows().into_iter().zip(b.rows()) {
        let sign = if ra.dot(&rb) < 0.0 { -1.0 } else { 1.0 };
        let scale = ra.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (x, y) in ra.iter().zip(rb.iter()) {
            assert!((x - sign * y).abs() <= rel * scale, "{ra} vs {rb}");
        }
    }
}

#[test]
fn the_truncated_svd_finds_the_top_eigenvectors_of_the_gram_matrix() {
    let (x, _) = grouped(400, 8, 7);
    let svd = TruncatedSvd::fit(&x, 2).unwrap();
    // Independently: the eigen decomposition of X^T X (eigenvalues ascending).
    let (values, vectors) = x.t().dot(&x).eigh().unwrap();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let top = Array2::from_shape_fn((2, 8), |(c, j)| vectors[[j, order[c]]]);
    assert_rows_equal_up_to_sign(svd.components(), &top, 1e-6);
    for c in 0..2 {
        let expected = values[order[c]].sqrt();
        assert!((svd.singular_values()[c] - expected).abs() <= 1e-6 * expected);
    }
}

/// `a` and `b` within `rel` of the largest magnitude in `b`.
fn assert_close(a: &Array1<f64>, b: &Array1<f64>, rel: f64) {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= rel * scale, "{a} vs {b}");
    }
}

#[test]
fn the_lazy_truncated_svd_sums_the_gram_matrix_over_batches() {
    let (x, _) = grouped(333, 12, 8);
    let svd = TruncatedSvd::fit(&x, 2).unwrap();
    let eager = svd.transform(&x).unwrap();
    for batch in [1, 10, 100, 10_000] {
        let g = cpu_graph(batch);
        let (model, t) = g
            .enter(|| {
                let model = truncated_svd_fit(&x, 12, 2);
                let t = model.transform(&x);
                g.evaluate((model, t))
            })
            .unwrap();
        // The batches' partial sums differ from one sum in the last bits only.
        assert_close(model.singular_values(), svd.singular_values(), 1e-12);
        assert_rows_equal_up_to_sign(model.components(), svd.components(), 1e-9);
        assert_rows_equal_up_to_sign(&t.t().to_owned(), &eager.t().to_owned(), 1e-9);
        if batch >= 333 {
            // One batch: the eager computation exactly.
            assert_eq!(model, svd);
            assert_eq!(bits2(&t), bits2(&eager));
        }
    }
    // The transform alone, with the eager model: bit-identical at any batch size.
    for batch in [1, 7, 1000] {
        let g = cpu_graph(batch);
        let t = g
            .enter(|| g.evaluate(Lazy::borrowed(&svd).transform(&x)))
            .unwrap();
        assert_eq!(bits2(&t), bits2(&eager), "batch {batch}");
    }
    let g = device_graph();
    let t = g
        .enter(|| g.evaluate(Lazy::borrowed(&svd).transform(&x)))
        .unwrap();
    assert_eq!(bits2(&t), bits2(&eager));
}

#[test]
fn the_truncated_svd_of_blob_data_has_one_dominant_component() {
    // One blob far from the origin: the first right singular vector points
    // at its center, the singular value is about |center| x sqrt(rows).
    let rows = 2000;
    let noise = uniform(rows * 16, -1.0, 1.0, 17);
    let center: Vec<f64> = (0..16).map(|j| 5.0 + j as f64).collect();
    let x = Array2::from_shape_fn((rows, 16), |(i, j)| center[j] + noise[i * 16 + j]);
    let svd = TruncatedSvd::fit(&x, 2).unwrap();
    let norm = center.iter().map(|c| c * c).sum::<f64>().sqrt();
    let direction = Array1::from_iter(center.iter().map(|c| c / norm));
    assert!(svd.components().row(0).dot(&direction) > 0.999);
    let expected = norm * (rows as f64).sqrt();
    assert!((svd.singular_values()[0] / expected - 1.0).abs() < 0.01);
    assert!(svd.singular_values()[1] < 0.1 * svd.singular_values()[0]);
}

#[test]
fn pca_explained_variance_ratio_is_the_share_of_the_total_variance() {
    let (x, _) = grouped(300, 5, 16);
    let pca = Pca::fit(&x, 2).unwrap();
    // Independently: the eigenvalues of the covariance over its trace.
    let centred = &x - &x.mean_axis(ndarray::Axis(0)).unwrap();
    let covariance = centred.t().dot(&centred) / (x.nrows() - 1) as f64;
    let (mut values, _) = covariance.eigh().unwrap();
    values
        .as_slice_mut()
        .unwrap()
        .sort_by(|a, b| b.total_cmp(a));
    let total = values.sum();
    let r = pca.explained_variance_ratio();
    for c in 0..2 {
        assert!((r[c] - values[c] / total).abs() < 1e-6, "{r} vs {values}");
    }
}

#[test]
fn a_pca_that_linfas_solver_gets_wrong_is_an_error_not_a_result() {
    // Three features, two components: linfa's LOBPCG block does not fit the
    // problem and its values are off (variance ratios 0.21 and 0.002 where
    // they are 0.9 and 0.1).
    let x = ndarray::array![
        [3.0, 0.0, 5.0],
        [-3.0, 0.0, 5.0],
        [0.0, 1.0, 5.0],
        [0.0, -1.0, 5.0]
    ];
    match Pca::fit(&x, 2) {
        Err(LinfaError::SolverFailed { model: "PCA", .. }) => {}
        Ok(pca) => {
            // A linfa that solves it must solve it right.
            let r = pca.explained_variance_ratio();
            assert!(
                (r[0] - 0.9).abs() < 1e-6 && (r[1] - 0.1).abs() < 1e-6,
                "{r}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

/// The function that failed in an evaluation's `Error::Call`, and its `LinfaError`.
fn call_error(err: &Error) -> (&'static str, &LinfaError) {
    match err {
        Error::Call { op, source } => match source.downcast_ref::<LinfaError>() {
            Some(e) => (op, e),
            None => panic!("`{op}` failed with another error: {source}"),
        },
        other => panic!("expected Error::Call, got {other:?}"),
    }
}

#[test]
fn more_components_than_features_is_a_typed_error() {
    let (x, _) = grouped(50, 3, 9);
    assert!(matches!(
        Pca::fit(&x, 4),
        Err(LinfaError::BadComponents {
            components: 4,
            limit: 3,
            ..
        })
    ));
    assert!(matches!(
        TruncatedSvd::fit(&x, 0),
        Err(LinfaError::BadComponents { components: 0, .. })
    ));
    assert!(matches!(
        TruncatedSvd::fit(&x, 4),
        Err(LinfaError::BadComponents {
            components: 4,
            limit: 3,
            ..
        })
    ));
    let g = cpu_graph(8);
    let err = g
        .enter(|| g.evaluate(pca_fit(&x, 4).transform(&x)))
        .unwrap_err();
    let (op, e) = call_error(&err);
    assert_eq!(op, "pca_fit");
    assert!(matches!(
        e,
        LinfaError::BadComponents {
            components: 4,
            limit: 3,
            ..
        }
    ));
}

#[test]
fn an_empty_training_set_is_a_typed_error() {
    let empty = Array2::<f64>::zeros((0, 4));
    assert!(matches!(
        StandardScaler::fit(&empty),
        Err(LinfaError::NoSamples { .. })
    ));
    assert!(matches!(
        Pca::fit(&empty, 2),
        Err(LinfaError::NoSamples { .. })
    ));
    assert!(matches!(
        TruncatedSvd::fit(&empty, 2),
        Err(LinfaError::NoSamples { .. })
    ));
    assert!(matches!(
        KNeighborsClassifier::fit(&empty, &Array1::zeros(0), 5),
        Err(LinfaError::NoSamples { .. })
    ));
    let (test, _) = grouped(20, 4, 10);
    let g = cpu_graph(8);
    let err = pipeline_lazy(&g, &empty, &Array1::zeros(0), &test).unwrap_err();
    let (op, e) = call_error(&err);
    assert_eq!(op, "standard_scaler_fit");
    assert!(matches!(
        e,
        LinfaError::NoSamples {
            model: "StandardScaler"
        }
    ));
}

#[test]
fn nan_in_training_or_test_data_is_a_typed_error() {
    let (mut train, labels) = grouped(40, 4, 11);
    let (mut test, _) = grouped(30, 4, 12);
    train[[5, 2]] = f64::NAN;
    let g = cpu_graph(8);
    let err = pipeline_lazy(&g, &train, &labels, &test).unwrap_err();
    let (op, e) = call_error(&err);
    assert_eq!(op, "standard_scaler_fit");
    assert!(
        matches!(
            e,
            LinfaError::NotFinite {
                row: 5,
                column: 2,
                ..
            }
        ),
        "{e}"
    );

    train[[5, 2]] = 0.5;
    test[[17, 1]] = f64::INFINITY;
    let err = pipeline_lazy(&g, &train, &labels, &test).unwrap_err();
    let (op, e) = call_error(&err);
    assert_eq!(op, "standard_scaler_transform");
    // Row 17 is row 1 of the third batch of 8.
    assert!(
        matches!(
            e,
            LinfaError::NotFinite {
                row: 1,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
    // The graph keeps working.
    test[[17, 1]] = 0.0;
    assert!(pipeline_lazy(&g, &train, &labels, &test).is_ok());
    test[[17, 1]] = f64::INFINITY;

    // The truncated SVD's Gram matrix, batch by batch.
    let err = g
        .enter(|| g.evaluate(truncated_svd_fit(&test, 4, 2)))
        .unwrap_err();
    let (op, e) = call_error(&err);
    assert_eq!(op, "gram");
    assert!(
        matches!(
            e,
            LinfaError::NotFinite {
                row: 1,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        TruncatedSvd::fit(&test, 2),
        Err(LinfaError::NotFinite {
            row: 17,
            column: 1,
            ..
        })
    ));
    test[[17, 1]] = 0.0;
    // Finite values whose Gram matrix overflows.
    let huge = test.mapv(|v| v * 1e160);
    assert!(matches!(
        TruncatedSvd::fit(&huge, 2),
        Err(LinfaError::Overflow {
            model: "TruncatedSVD",
            ..
        })
    ));

    // A NaN that reaches the classifier directly (linfa-nn would panic).
    let knn = KNeighborsClassifier::fit(&train, &labels, 3).unwrap();
    let mut q = test.slice(s![..3, ..]).to_owned();
    q[[2, 0]] = f64::NAN;
    assert!(matches!(
        knn.predict(&q),
        Err(LinfaError::NotFinite { row: 2, .. })
    ));
}

#[test]
fn applying_a_model_to_another_number_of_features_is_a_typed_error() {
    let (train, labels) = grouped(40, 5, 13);
    let (test, _) = grouped(30, 4, 14);
    let g = cpu_graph(8);
    let model = Pca::fit(&train, 2).unwrap();
    // A model the caller already has, applied lazily (linfa would panic).
    let err = g
        .enter(|| g.evaluate(Lazy::borrowed(&model).transform(&test)))
        .unwrap_err();
    let (op, e) = call_error(&err);
    assert_eq!(op, "pca_transform");
    assert!(matches!(
        e,
        LinfaError::FeatureMismatch {
            expected: 5,
            got: 4,
            ..
        }
    ));
    let knn = KNeighborsClassifier::fit(&train, &labels, 5).unwrap();
    assert!(matches!(
        knn.predict(&test),
        Err(LinfaError::FeatureMismatch {
            expected: 5,
            got: 4,
            ..
        })
    ));
    let svd = TruncatedSvd::fit(&train, 2).unwrap();
    assert!(matches!(
        svd.transform(&test),
        Err(LinfaError::FeatureMismatch { .. })
    ));
    let scaler = StandardScaler::fit(&train).unwrap();
    assert!(matches!(
        scaler.transform(&test),
        Err(LinfaError::FeatureMismatch { .. })
    ));
}

#[test]
fn bad_neighbour_counts_and_labels_are_typed_errors() {
    let (train, labels) = grouped(10, 2, 15);
    assert!(matches!(
        KNeighborsClassifier::fit(&train, &labels, 0),
        Err(LinfaError::BadNeighbours { k: 0, .. })
    ));
    assert!(matches!(
        KNeighborsClassifier::fit(&train, &labels, 11),
        Err(LinfaError::BadNeighbours {
            k: 11,
            samples: 10,
            ..
        })
    ));
    assert!(matches!(
        KNeighborsClassifier::fit(&train, &labels.slice(s![..9]).to_owned(), 3),
        Err(LinfaError::LabelMismatch {
            samples: 10,
            labels: 9,
            ..
        })
    ));
}

#[test]
fn the_vote_takes_the_majority_and_the_smallest_label_on_a_tie() {
    // Training points on a line; labels 2, 2, 1, 1, 0.
    let x = Array2::from_shape_vec((5, 1), vec![0.0, 1.0, 2.0, 3.0, 10.0]).unwrap();
    let labels = ndarray::array![2, 2, 1, 1, 0];
    let knn = KNeighborsClassifier::fit(&x, &labels, 3).unwrap();
    let q = Array2::from_shape_vec((2, 1), vec![0.4, 2.6]).unwrap();
    assert_eq!(knn.predict(&q).unwrap(), ndarray::array![2, 1]);
    // k = 4 at 1.5: two votes each for 2 and 1; the smaller label wins.
    let knn = KNeighborsClassifier::fit(&x, &labels, 4).unwrap();
    let q = Array2::from_shape_vec((1, 1), vec![1.5]).unwrap();
    assert_eq!(knn.predict(&q).unwrap(), ndarray::array![1]);
    // Labels need not be small or dense.
    let sparse = ndarray::array![usize::MAX, usize::MAX, 7, 7, 0];
    let knn = KNeighborsClassifier::fit(&x, &sparse, 3).unwrap();
    let q = Array2::from_shape_vec((2, 1), vec![0.4, 2.6]).unwrap();
    assert_eq!(knn.predict(&q).unwrap(), ndarray::array![usize::MAX, 7]);
    assert_eq!(knn.classes(), &[0, 7, usize::MAX]);
    let knn = KNeighborsClassifier::fit(&x, &labels, 4).unwrap();
    // No test rows: no predictions.
    assert_eq!(knn.predict(&Array2::zeros((0, 1))).unwrap().len(), 0);
}
