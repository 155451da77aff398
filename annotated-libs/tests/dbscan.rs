//! The DBSCAN workload's library side: the standardization through lazy ndarray
//! (every batch size against eager ndarray and a hand-fused loop), DBSCAN's
//! split region queries against linfa's own `Dbscan`, and every bad input.

mod common;

use annotated_libs::linfa::clustering::{
    self as cl, eager, eps_neighbourhoods, upper_eps_neighbourhoods, DbscanError, DbscanParams,
    NeighbourhoodSplit,
};
use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{ndarray_bach, ndarray_cpu};
use bach_runtime::{evaluate, Config, DevicePolicy, Error, Graph, SplitType};
use ndarray::{s, Array1, Array2, Axis};

fn cpu_graph(batch: Option<usize>) -> Graph {
    Graph::with_config(Config {
        batch_size: batch,
        device: DevicePolicy::Cpu,
        ..Config::default()
    })
}

/// `n` points in `d` dimensions around `k` centers uniform in (-2, 2), unit
/// normal noise, rows interleaved over the centers (make_blobs' shape, small).
pub fn blobs(n: usize, d: usize, k: usize, seed: u64) -> Array2<f64> {
    let centers = common::uniform(k * d, -2.0, 2.0, seed);
    let u = common::uniform(2 * n * d, 0.0, 1.0, seed + 1);
    Array2::from_shape_fn((n, d), |(i, j)| {
        let t = 2 * (i * d + j);
        let normal = (-2.0 * (1.0 - u[t]).ln()).sqrt() * (std::f64::consts::TAU * u[t + 1]).cos();
        centers[(i % k) * d + j] + normal
    })
}

/// The seed's standardization, eagerly: NumPy's `X -= X.mean(axis=0); X /= X.std(axis=0)`.
fn standardized(x: &Array2<f64>) -> Array2<f64> {
    let mut z = x.clone();
    ndarray_cpu::standardize(&mut z);
    z
}

/// The same as one hand-written loop per pass (sums, then squared deviations, then the update).
fn hand_fused(x: &Array2<f64>) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut mean = vec![0.0; d];
    for row in x.outer_iter() {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = vec![0.0; d];
    for row in x.outer_iter() {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    let sd: Vec<f64> = var.iter().map(|s| (s / n as f64).sqrt()).collect();
    let mut z = x.clone();
    for mut row in z.outer_iter_mut() {
        for ((v, m), s) in row.iter_mut().zip(&mean).zip(&sd) {
            *v = (*v - m) / s;
        }
    }
    z
}

fn close(a: &Array2<f64>, b: &Array2<f64>, rel: f64) -> bool {
    a.dim() == b.dim()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || (x - y).abs() <= rel * y.abs().max(1.0))
}

#[test]
fn standardization_matches_eager_ndarray_and_a_hand_fused_loop_for_every_batch() {
    let x = blobs(1000, 24, 5, 3) * 3.0 + 7.0;
    let want = standardized(&x);
    assert!(close(&want, &hand_fused(&x), 1e-12));
    let sd = want.std_axis(Axis(0), 0.0);
    assert!(sd.iter().all(|s| (s - 1.0).abs() < 1e-12), "{sd}");
    for batch in [None, Some(1), Some(7), Some(64), Some(1 << 20)] {
        let got = cpu_graph(batch)
            .enter(|| {
                let mut l = LazyArray::from(&x);
                ndarray_bach::standardize(&mut l);
                evaluate(l)
            })
            .unwrap();
        // Column moments merge batch partials in another order: within rounding.
        assert!(close(&got, &want, 1e-12), "batch {batch:?}");
    }
}

#[test]
fn a_constant_column_standardizes_to_nan_as_in_numpy() {
    let mut x = blobs(50, 4, 2, 5);
    x.column_mut(2).fill(3.5);
    let got = cpu_graph(Some(8))
        .enter(|| {
            let mut l = LazyArray::from(&x);
            ndarray_bach::standardize(&mut l);
            evaluate(l)
        })
        .unwrap();
    assert!(got.column(2).iter().all(|v| v.is_nan()));
    assert!(got.column(1).iter().all(|v| v.is_finite()));
    assert!(close(&got, &standardized(&x), 1e-12));
}

/// True when `got` equals `want` up to a renaming of cluster ids (noise, -1, stays noise).
fn same_up_to_renaming(got: &Array1<i64>, want: &Array1<i64>) -> bool {
    let mut forward = std::collections::HashMap::new();
    let mut backward = std::collections::HashMap::new();
    got.len() == want.len()
        && got.iter().zip(want).all(|(&g, &w)| {
            (g == -1) == (w == -1)
                && *forward.entry(g).or_insert(w) == w
                && *backward.entry(w).or_insert(g) == g
        })
}

fn params(n: usize, d: usize, k: usize) -> DbscanParams {
    let min_samples = ((n as f64 / k as f64) * 0.05).max(2.0).ceil() as usize;
    DbscanParams::new((d as f64).sqrt(), min_samples).unwrap()
}

#[test]
fn region_queries_are_linfas_linear_search() {
    let x = standardized(&blobs(300, 16, 4, 11));
    let p = params(300, 16, 4);
    let nb = eps_neighbourhoods(&x, p).unwrap();
    let eps2 = p.eps_squared();
    for i in 0..x.nrows() {
        let want: Vec<u32> = (0..x.nrows())
            .filter(|&j| {
                let diff = &x.row(i) - &x.row(j);
                diff.dot(&diff) < eps2
            })
            .map(|j| j as u32)
            .collect();
        assert_eq!(nb.of(i), want.as_slice(), "row {i}");
    }
    // Rows of a batch find their upper neighbours among all rows; batches concatenate.
    let top = upper_eps_neighbourhoods(&x.slice(s![..100, ..]), 0, &x, p).unwrap();
    let rest = upper_eps_neighbourhoods(&x.slice(s![100.., ..]), 100, &x, p).unwrap();
    let upper = NeighbourhoodSplit::merge(vec![top, rest]).unwrap();
    assert_eq!(upper.symmetrized(), nb);
    assert!((0..300).all(|i| upper.of(i).iter().all(|&j| j as usize >= i)));
    assert_eq!(NeighbourhoodSplit::split(&nb, 100..300).of(0), nb.of(100));
}

#[test]
fn dbscan_labels_are_linfas_for_every_batch() {
    let (n, d, k) = (600, 64, 6);
    let x = standardized(&blobs(n, d, k, 21));
    let p = params(n, d, k);
    let linear = eager::dbscan_linear(&x, p).unwrap();
    let kd_tree = eager::dbscan(&x, p).unwrap();
    assert!(same_up_to_renaming(&linear, &kd_tree));
    let clusters = linear.iter().max().unwrap() + 1;
    // Nearby random centers may merge; the data must still be clustered, not one blob.
    assert!((3..=k as i64).contains(&clusters), "{linear}");
    for batch in [None, Some(1), Some(37), Some(1 << 20)] {
        let got = cpu_graph(batch)
            .enter(|| evaluate(cl::dbscan(&LazyArray::from(&x), p)))
            .unwrap();
        assert_eq!(got, linear, "batch {batch:?}");
    }
}

#[test]
fn noise_and_border_points() {
    // Two tight groups, one point between them within eps of one group only, one far away.
    let mut rows = vec![];
    for i in 0..5 {
        rows.push([i as f64 * 0.1, 0.0]);
        rows.push([10.0 + i as f64 * 0.1, 0.0]);
    }
    rows.push([0.4 + 0.9, 0.0]); // border of the first group
    rows.push([50.0, 50.0]); // noise
    let x = Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
    let p = DbscanParams::new(1.0, 4).unwrap();
    let got = cpu_graph(Some(3))
        .enter(|| evaluate(cl::dbscan(&LazyArray::from(&x), p)))
        .unwrap();
    assert_eq!(got, eager::dbscan_linear(&x, p).unwrap());
    assert_eq!(got[10], got[0], "border point joins the first group");
    assert_eq!(got[11], -1, "far point is noise");
    assert_ne!(got[0], got[1]);
}

#[test]
fn bad_parameters_are_typed_errors() {
    assert_eq!(DbscanParams::new(0.0, 5), Err(DbscanError::Eps(0.0)));
    assert_eq!(DbscanParams::new(-1.0, 5), Err(DbscanError::Eps(-1.0)));
    assert!(matches!(DbscanParams::new(f64::NAN, 5), Err(DbscanError::Eps(e)) if e.is_nan()));
    assert_eq!(
        DbscanParams::new(f64::INFINITY, 5),
        Err(DbscanError::Eps(f64::INFINITY))
    );
    assert_eq!(DbscanParams::new(1.0, 0), Err(DbscanError::MinSamples(0)));
    assert_eq!(DbscanParams::new(1.0, 1), Err(DbscanError::MinSamples(1)));
    assert!(DbscanParams::new(1e-300, 2).is_ok());
}

/// The `DbscanError` of a failed lazy DBSCAN.
fn lazy_error(x: &Array2<f64>, batch: Option<usize>) -> DbscanError {
    let err = cpu_graph(batch)
        .enter(|| evaluate(cl::dbscan(&LazyArray::from(x), params(x.nrows(), 3, 2))))
        .unwrap_err();
    let Error::Call { op, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*op, "region_queries");
    *source.downcast_ref::<DbscanError>().expect("a DbscanError")
}

#[test]
fn nan_and_infinite_values_are_typed_errors_at_their_first_position() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut x = blobs(40, 3, 2, 7);
        x[(29, 1)] = bad;
        x[(33, 0)] = bad;
        let want = eager::dbscan(&x, params(40, 3, 2)).unwrap_err();
        assert!(matches!(
            want,
            DbscanError::NonFinite {
                row: 29,
                col: 1,
                ..
            }
        ));
        for batch in [None, Some(4), Some(30)] {
            let got = lazy_error(&x, batch);
            assert_eq!(got.to_string(), want.to_string(), "batch {batch:?}");
        }
    }
}

#[test]
fn a_zero_variance_column_makes_dbscan_fail_as_scikit_learn_does() {
    // NumPy: 0/0 = NaN in that column; scikit-learn's DBSCAN then raises on NaN input.
    let mut x = blobs(40, 3, 2, 9);
    x.column_mut(1).fill(-4.0);
    let err = cpu_graph(Some(16))
        .enter(|| {
            let mut l = LazyArray::from(&x);
            ndarray_bach::standardize(&mut l);
            evaluate(cl::dbscan(&l, params(40, 3, 2)))
        })
        .unwrap_err();
    let Error::Call { source, .. } = &err else {
        panic!("{err:?}")
    };
    let got = source.downcast_ref::<DbscanError>().unwrap();
    assert!(
        matches!(got, DbscanError::NonFinite { row: 0, col: 1, value } if value.is_nan()),
        "{got:?}"
    );
}

#[test]
fn no_rows_give_no_labels() {
    let x = Array2::<f64>::zeros((0, 4));
    let p = DbscanParams::new(1.0, 2).unwrap();
    assert_eq!(eager::dbscan(&x, p).unwrap().len(), 0);
    let got = cpu_graph(None)
        .enter(|| evaluate(cl::dbscan(&LazyArray::from(&x), p)))
        .unwrap();
    assert_eq!(got.len(), 0);
}
