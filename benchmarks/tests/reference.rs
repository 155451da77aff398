//! Every registered workload, in every CPU mode, against an independent scalar
//! reference: the per-element formula written out here from
//! `anchors/numpy_workloads.py`, not taken from the library.

use bach_runtime::{Config, Graph};
use benchmarks::bench::compare;
use benchmarks::workloads::{self, Outputs, Workload};
use ndarray::Array1;

/// numpy_workloads.py `blackscholes`, one element.
fn blackscholes_ref(x: &[f64]) -> Vec<f64> {
    let (price, strike, t, rate, vol) = (x[0], x[1], x[2], x[3], x[4]);
    let (c05, c10) = (3.0, 1.5);
    let invsqrt2 = 1.0 / std::f64::consts::SQRT_2;
    let rsig = vol * vol * c05 + rate;
    let vol_sqrt = t.sqrt() * vol;
    let d1 = ((price / strike).log2() + rsig * t) / vol_sqrt;
    let d2 = d1 - vol_sqrt;
    let d1 = c05 + c05 * libm::erf(d1 * invsqrt2);
    let d2 = c05 + c05 * libm::erf(d2 * invsqrt2);
    let e_rt = (-rate * t).exp();
    let call = price * d1 - e_rt * strike * d2;
    let put = e_rt * strike * (c10 - d2) - price * (c10 - d1);
    vec![call, put]
}

/// numpy_workloads.py `haversine`, one element.
fn haversine_ref(x: &[f64]) -> Vec<f64> {
    let (lat2, lon2) = (x[0], x[1]);
    let (lat1, lon1, miles) = (0.70984286f64, 1.23892197f64, 3959.0);
    let dlat = ((lat2 - lat1) / 2.0).sin().powi(2);
    let dlon = ((lon2 - lon1) / 2.0).sin().powi(2);
    let a = dlat + lat2.cos() * lat1.cos() * dlon;
    vec![2.0 * a.sqrt().asin() * miles]
}

/// One element's results from one element of each input.
type ScalarReference = fn(&[f64]) -> Vec<f64>;

/// The elementwise workloads and their scalar references (the others have
/// their own tests).
fn reference(name: &str) -> Option<ScalarReference> {
    match name {
        "blackscholes" => Some(blackscholes_ref),
        "haversine" => Some(haversine_ref),
        _ => None,
    }
}

fn expected(w: &Workload, x: &[Array1<f64>]) -> Outputs {
    let f = reference(w.name).expect("an elementwise workload");
    let n = x[0].len();
    let mut out: Vec<Vec<f64>> = vec![Vec::with_capacity(n); w.outputs.len()];
    for i in 0..n {
        let args: Vec<f64> = x.iter().map(|a| a[i]).collect();
        for (o, v) in out.iter_mut().zip(f(&args)) {
            o.push(v);
        }
    }
    out.into_iter().map(Array1::from_vec).collect()
}

fn assert_close(w: &Workload, mode: &str, got: &Outputs, want: &Outputs) {
    assert_eq!(
        got.len(),
        want.len(),
        "{} {mode}: number of results",
        w.name
    );
    for (k, (g, e)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.len(),
            e.len(),
            "{} {mode} {}: length",
            w.name,
            w.outputs[k]
        );
        for (i, (a, b)) in g.iter().zip(e).enumerate() {
            let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * b.abs().max(1.0);
            assert!(
                ok,
                "{} {mode} {}[{i}]: {a} vs reference {b}",
                w.name, w.outputs[k]
            );
        }
    }
}

#[test]
fn every_workload_matches_the_scalar_reference_in_every_mode() {
    let elementwise: Vec<&Workload> = workloads::REGISTRY
        .iter()
        .copied()
        .filter(|w| reference(w.name).is_some())
        .collect();
    assert_eq!(elementwise.len(), 2, "blackscholes and haversine");
    for w in elementwise {
        for log2 in [10, 14] {
            let inputs = (w.generate)(log2, 42).unwrap();
            let x = workloads::inputs_of::<Vec<Array1<f64>>>(&*inputs).unwrap();
            assert!(x.iter().all(|a| a.len() == 1 << log2));
            let want = expected(w, x);
            let cpu = (w.cpu)(&*inputs).unwrap();
            assert_close(w, "cpu", &cpu, &want);

            let fused = (w.fused.unwrap())(&*inputs).unwrap();
            assert_close(w, "fused", &fused, &want);
            compare(&fused, &cpu, w.outputs)
                .unwrap_or_else(|m| panic!("{} fused vs cpu: {m}", w.name));

            // Several batches, and a ragged last one.
            for batch in [None, Some(1000)] {
                let graph = Graph::with_config(Config {
                    batch_size: batch,
                    threads: Some(2),
                    ..Config::default()
                });
                let timed = graph.enter(|| (w.bach)(&*inputs)).unwrap();
                assert_close(w, "bach", &timed.outputs, &want);
                compare(&timed.outputs, &cpu, w.outputs)
                    .unwrap_or_else(|m| panic!("{} bach vs cpu: {m}", w.name));
            }
        }
    }
}

#[test]
fn haversine_reference_spot_values() {
    // At the fixed point itself the distance is 0; half a turn of longitude
    // away on the equator it is pi * R minus the detour through lat1.
    assert_eq!(haversine_ref(&[0.70984286, 1.23892197])[0], 0.0);
    let d = haversine_ref(&[0.0, 1.23892197])[0];
    assert!((d - 0.70984286 * 3959.0).abs() < 1e-6, "{d}");
}
