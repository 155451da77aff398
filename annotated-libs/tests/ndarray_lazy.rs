//! The lazy ndarray module against plain ndarray: the same source, written with
//! ndarray's operators and methods, evaluated lazily (at any batch size, on the
//! CPU and on a small simulated device) and eagerly, gives the same bits.

mod common;

use std::sync::Arc;

use annotated_libs::ndarray::{self as nd, LazyArray};
use annotated_libs::workloads::{ndarray_bach, ndarray_cpu};
use bach_runtime::{
    evaluate, Config, Device, DevicePolicy, Error, Graph, SimulatedDevice, SimulatedDeviceConfig,
};
use common::{bits, uniform};
use ndarray::{array, Array1, Array2, Axis};
use proptest::prelude::*;

fn cpu_graph(batch: Option<usize>) -> Graph {
    Graph::with_config(Config {
        batch_size: batch,
        device: DevicePolicy::Cpu,
        ..Config::default()
    })
}

fn device_graph(capacity: usize) -> (Graph, Arc<SimulatedDevice>) {
    let device = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
        capacity,
        ..Default::default()
    }));
    let graph = Graph::with_config(Config {
        device: DevicePolicy::Device,
        ..Config::default()
    });
    graph.set_device(Some(device.clone()));
    (graph, device)
}

fn same_bits(a: &Array1<f64>, b: &Array1<f64>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn options(n: usize) -> [Array1<f64>; 5] {
    [
        uniform(n, 10.0, 50.0, 1),
        uniform(n, 10.0, 50.0, 2),
        uniform(n, 1.0, 2.0, 3),
        uniform(n, 0.01, 0.05, 4),
        uniform(n, 0.01, 0.5, 5),
    ]
}

#[test]
fn blackscholes_is_plain_ndarray_bit_for_bit_at_every_batch_size() {
    let [p, s, t, r, v] = options(10_001);
    let (call, put) = ndarray_cpu::blackscholes(&p, &s, &t, &r, &v);
    for batch in [None, Some(1), Some(7), Some(4096)] {
        let g = cpu_graph(batch);
        let (lazy_call, lazy_put) = g
            .enter(|| {
                let (c, q) = ndarray_bach::blackscholes(
                    &LazyArray::from(&p),
                    &LazyArray::from(&s),
                    &LazyArray::from(&t),
                    &LazyArray::from(&r),
                    &LazyArray::from(&v),
                );
                evaluate((c, q))
            })
            .unwrap();
        assert_eq!(bits(&lazy_call), bits(&call), "batch {batch:?}");
        assert_eq!(bits(&lazy_put), bits(&put), "batch {batch:?}");
    }
}

#[test]
fn workloads_on_a_small_simulated_device_are_plain_ndarray() {
    let n = 5000;
    let [p, s, t, r, v] = options(n);
    let (call, put) = ndarray_cpu::blackscholes(&p, &s, &t, &r, &v);
    let lat = uniform(n, 0.0, 1.5, 6);
    let lon = uniform(n, 0.0, 3.0, 7);
    let miles = ndarray_cpu::haversine(&lat, &lon);

    // 16 KiB: the 5000-element inputs page through in many batches.
    let (g, device) = device_graph(16 << 10);
    let (lc, lp, lm) = g
        .enter(|| {
            let (c, q) = ndarray_bach::blackscholes(
                &p.view().to_owned().into(),
                &LazyArray::from(&s),
                &LazyArray::from(&t),
                &LazyArray::from(&r),
                &LazyArray::from(&v),
            );
            let m = ndarray_bach::haversine(&LazyArray::from(&lat), &LazyArray::from(&lon));
            evaluate((c, q, m))
        })
        .unwrap();
    assert!(same_bits(&lc, &call));
    assert!(same_bits(&lp, &put));
    assert!(same_bits(&lm, &miles));
    let stats = device.stats();
    assert!(stats.launches > 0, "the device ran the kernels");
    assert!(stats.peak_bytes as usize <= 16 << 10);
    assert_eq!(device.in_use(), 0);
}

/// Every operator form, the same tokens over ndarray arrays and lazy arrays.
// The binary operators are the point here, not their compound forms.
macro_rules! operator_chain {
    ($a:expr, $b:expr) => {{
        let (a, b) = ($a, $b);
        #[allow(clippy::assign_op_pattern)]
        {
            let mut x = &a + &b;
            x = x - &a;
            x = &x * b.clone();
            x = x / b.clone();
            x = &x % 4.0;
            x = 2.0 - x;
            x = 3.0 / &x;
            x = -x + 1.0;
            x = -&x * 0.5;
            x += &a;
            x -= 1.5;
            x *= &b;
            x /= 2.0;
            x %= &b;
            x
        }
    }};
}

#[test]
fn operators_in_every_ownership_and_scalar_form() {
    let a = array![1.0, -2.5, 0.0, f64::NAN, f64::INFINITY, 7.25];
    let b = array![3.0, 0.5, -0.0, 1.0, 2.0, -7.25];
    let want = operator_chain!(a.clone(), b.clone());
    let got = cpu_graph(Some(2))
        .enter(|| evaluate(operator_chain!(LazyArray::from(&a), LazyArray::from(&b))))
        .unwrap();
    assert!(same_bits(&got, &want), "{got} vs {want}");
}

#[test]
fn f32_arrays_and_scalar_first_operators() {
    let a = Array1::from_vec(vec![1.5f32, -2.0, 0.25, 9.0]);
    let want = (1.0f32 - &a) * 2.0f32 + (2.0f32 * &a).sqrt();
    let got = cpu_graph(Some(3))
        .enter(|| {
            let la = LazyArray::from(&a);
            evaluate((1.0f32 - &la) * 2.0f32 + (2.0f32 * &la).sqrt())
        })
        .unwrap();
    assert_eq!(
        got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn every_float_method_is_ndarrays() {
    use annotated_libs::ndarray::eager::ArrayExt;
    let x = array![
        -3.7,
        -1.0,
        -0.5,
        -0.0,
        0.0,
        0.3,
        0.5,
        1.0,
        2.5,
        100.0,
        f64::NAN,
        f64::INFINITY
    ];
    let eager: Vec<Array1<f64>> = vec![
        x.floor(),
        x.ceil(),
        x.round(),
        x.trunc(),
        x.fract(),
        x.abs(),
        x.signum(),
        x.recip(),
        x.sqrt(),
        x.exp(),
        x.exp2(),
        x.ln(),
        x.log2(),
        x.log10(),
        x.cbrt(),
        x.sin(),
        x.cos(),
        x.tan(),
        x.pow2(),
        x.powi(3),
        x.powi(-2),
        x.powf(1.5),
        x.log(3.0),
        x.clamp(-1.0, 1.0),
        ArrayExt::asin(&x),
        ArrayExt::acos(&x),
        ArrayExt::atan(&x),
        ArrayExt::sinh(&x),
        ArrayExt::cosh(&x),
        ArrayExt::tanh(&x),
        ArrayExt::exp_m1(&x),
        ArrayExt::ln_1p(&x),
        ArrayExt::erf(&x),
    ];
    let lazy = cpu_graph(Some(5))
        .enter(|| {
            let l = LazyArray::from(&x);
            evaluate(vec![
                l.floor(),
                l.ceil(),
                l.round(),
                l.trunc(),
                l.fract(),
                l.abs(),
                l.signum(),
                l.recip(),
                l.sqrt(),
                l.exp(),
                l.exp2(),
                l.ln(),
                l.log2(),
                l.log10(),
                l.cbrt(),
                l.sin(),
                l.cos(),
                l.tan(),
                l.pow2(),
                l.powi(3),
                l.powi(-2),
                l.powf(1.5),
                l.log(3.0),
                l.clamp(-1.0, 1.0),
                l.asin(),
                l.acos(),
                l.atan(),
                l.sinh(),
                l.cosh(),
                l.tanh(),
                l.exp_m1(),
                l.ln_1p(),
                l.erf(),
            ])
        })
        .unwrap();
    for (i, (got, want)) in lazy.iter().zip(&eager).enumerate() {
        assert!(same_bits(got, want), "method {i}: {got} vs {want}");
    }
}

#[test]
fn comparisons_masks_and_select() {
    use annotated_libs::ndarray::eager::{self, ArrayExt};
    let a = array![1.0, f64::NAN, 3.0, -1.0, 0.0, 2.0];
    let b = array![1.0, 1.0, 2.0, f64::NAN, -0.0, 5.0];
    let m = (a.greater(&b) | a.equal(0.0)) & !b.less_equal(1.0) ^ a.not_equal(&b);
    let want = (
        m.clone(),
        eager::select(&m, &a, &b),
        eager::select(&a.less(2.0), -1.0, &b),
        eager::select(&a.greater_equal(&b), &a, 9.0),
        eager::select(&m, 1.0, -0.0),
    );
    let got = cpu_graph(Some(4))
        .enter(|| {
            let (la, lb) = (LazyArray::from(&a), LazyArray::from(&b));
            let m = (la.greater(&lb) | la.equal(0.0)) & !lb.less_equal(1.0) ^ la.not_equal(&lb);
            evaluate((
                m.clone(),
                nd::select(&m, &la, &lb),
                nd::select(&la.less(2.0), -1.0, &lb),
                nd::select(&la.greater_equal(&lb), &la, 9.0),
                // Both branches scalars: NumPy's `where(m, 1.0, -0.0)`, an array of m's shape.
                nd::select(&m, 1.0, -0.0),
            ))
        })
        .unwrap();
    assert_eq!(got.0, want.0);
    assert!(same_bits(&got.1, &want.1));
    assert!(same_bits(&got.2, &want.2));
    assert!(same_bits(&got.3, &want.3));
    assert!(same_bits(&got.4, &want.4));
    assert_eq!(got.4.len(), a.len());
}

#[test]
fn reductions_are_ndarrays_with_one_batch_and_close_with_many() {
    let x = uniform(100_003, -5.0, 20.0, 9);
    for batch in [Some(1 << 20), None, Some(1000), Some(7)] {
        let (sum, mean, var, std) = cpu_graph(batch)
            .enter(|| {
                let l = LazyArray::from(&x);
                evaluate((l.sum(), l.mean(), l.var(1.0), l.std(0.0)))
            })
            .unwrap();
        let mean = mean.unwrap();
        let want = (x.sum(), x.mean().unwrap(), x.var(1.0), x.std(0.0));
        if batch == Some(1 << 20) {
            // One batch: ndarray's bits.
            assert_eq!(sum.to_bits(), want.0.to_bits());
            assert_eq!(mean.to_bits(), want.1.to_bits());
            assert_eq!(var.to_bits(), want.2.to_bits());
            assert_eq!(std.to_bits(), want.3.to_bits());
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(close(sum, want.0), "{batch:?}: {sum} vs {}", want.0);
        assert!(close(mean, want.1));
        assert!(close(var, want.2), "{batch:?}: {var} vs {}", want.2);
        assert!(close(std, want.3));
    }
}

#[test]
fn reductions_of_empty_arrays_follow_ndarray() {
    let empty = Array1::<f64>::zeros(0);
    let (sum, mean) = cpu_graph(None)
        .enter(|| {
            let l = LazyArray::from(&empty);
            evaluate((l.sum(), l.mean()))
        })
        .unwrap();
    assert_eq!(sum, 0.0);
    assert_eq!(mean, None);

    // `mean().unwrap()` of an empty array: an error naming the call, not a panic.
    let err = cpu_graph(None)
        .enter(|| evaluate(LazyArray::from(&empty).mean().unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("unwrap_scalar"), "{err}");

    // ddof larger than the length: ndarray panics; the lazy array reports an error.
    let err = cpu_graph(None)
        .enter(|| evaluate(LazyArray::from(&array![1.0, 2.0]).var(3.0)))
        .unwrap_err();
    let Error::Call { op, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*op, "var_of");
    assert_eq!(
        source.downcast_ref::<nd::ReductionError>(),
        Some(&nd::ReductionError::DdofOutOfRange { ddof: 3.0, len: 2 })
    );
}

#[test]
fn standardization_with_row_broadcasting_is_ndarrays() {
    // X -= X.mean(axis=0); X /= X.std(axis=0), as a user writes it in ndarray.
    let x = Array2::from_shape_fn((1001, 6), |(i, j)| {
        ((i * 7 + j * 13) % 17) as f64 * (j + 1) as f64
    });
    let mut want = x.clone();
    want -= &want.mean_axis(Axis(0)).unwrap();
    let sd = want.std_axis(Axis(0), 0.0);
    want /= &sd;

    for batch in [Some(1 << 20), None, Some(64)] {
        let got = cpu_graph(batch)
            .enter(|| {
                let mut l = LazyArray::from(&x);
                l -= &l.mean_axis(Axis(0)).unwrap();
                let sd = l.std_axis(Axis(0), 0.0);
                l /= &sd;
                evaluate(l)
            })
            .unwrap();
        assert_eq!(got.dim(), want.dim());
        let close = got
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0));
        assert!(close, "batch {batch:?}");
        if batch == Some(1 << 20) {
            assert!(got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

#[test]
fn axis_reductions_of_2d_arrays() {
    let x = Array2::from_shape_fn((37, 5), |(i, j)| (i as f64 - 3.0 * j as f64).sin());
    let got = cpu_graph(Some(8))
        .enter(|| {
            let l = nd::Array2::from(&x);
            evaluate((
                (
                    l.sum_axis(Axis(0)),
                    l.sum_axis(Axis(1)),
                    l.mean_axis(Axis(1)),
                ),
                (l.var_axis(Axis(0), 1.0), l.var_axis(Axis(1), 1.0)),
                (l.std_axis(Axis(1), 0.0), &l + &l.sum_axis(Axis(0))),
            ))
        })
        .unwrap();
    let close = |a: &Array1<f64>, b: &Array1<f64>| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0))
    };
    let ((sum0, sum1, mean1), (var0, var1), (std1, plus_row)) = got;
    assert!(close(&sum0, &x.sum_axis(Axis(0))));
    assert!(same_bits(&sum1, &x.sum_axis(Axis(1))));
    assert!(same_bits(&mean1.unwrap(), &x.mean_axis(Axis(1)).unwrap()));
    assert!(close(&var0, &x.var_axis(Axis(0), 1.0)));
    assert!(same_bits(&var1, &x.var_axis(Axis(1), 1.0)));
    assert!(same_bits(&std1, &x.std_axis(Axis(1), 0.0)));
    let want = &x + &x.sum_axis(Axis(0));
    assert!(plus_row
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0)));

    // A ddof beyond the row length (5 columns): ndarray panics; the lazy array
    // reports a typed error, on either axis and for var and std alike.
    for (axis, len) in [(0, 37), (1, 5)] {
        for std in [false, true] {
            let ddof = len as f64 + 1.0;
            let err = cpu_graph(Some(8))
                .enter(|| {
                    let l = nd::Array2::from(&x);
                    evaluate(match std {
                        false => l.var_axis(Axis(axis), ddof),
                        true => l.std_axis(Axis(axis), ddof),
                    })
                })
                .unwrap_err();
            let Error::Call { source, .. } = &err else {
                panic!("axis {axis}: {err:?}")
            };
            assert_eq!(
                source.downcast_ref::<nd::ReductionError>(),
                Some(&nd::ReductionError::DdofOutOfRange { ddof, len }),
                "axis {axis}"
            );
        }
    }
}

#[test]
fn owned_inputs_are_moved_in_and_arrays_come_back() {
    let a = Array1::from_vec((0..100).map(f64::from).collect());
    let want = a.sqrt() + 1.0;
    let got = cpu_graph(None)
        .enter(|| evaluate(LazyArray::from(a.clone()).sqrt() + 1.0))
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn shapes_that_differ_are_an_error() {
    let a = array![1.0, 2.0, 3.0];
    let b = array![1.0, 2.0];
    let err = cpu_graph(None)
        .enter(|| evaluate(LazyArray::from(&a) + LazyArray::from(&b)))
        .unwrap_err();
    assert!(matches!(err, Error::LengthMismatch { .. }), "{err:?}");
}

// ---- random programs ----------------------------------------------------------------------

/// One step of a random program over a stack of arrays (indices taken modulo its size).
#[derive(Debug, Clone)]
enum Step {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    WithScalar(u8, usize, f64),
    ScalarFirst(u8, f64, usize),
    Assign(u8, usize, usize),
    Select(usize, usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    let scalar = prop_oneof![-3.0..3.0f64, Just(0.0), Just(f64::NAN), Just(f64::INFINITY)];
    prop_oneof![
        (0u8..33, any::<usize>()).prop_map(|(o, i)| Step::Unary(o, i)),
        (0u8..5, any::<usize>(), any::<usize>()).prop_map(|(o, i, j)| Step::Binary(o, i, j)),
        (0u8..5, any::<usize>(), scalar.clone()).prop_map(|(o, i, s)| Step::WithScalar(o, i, s)),
        (0u8..5, scalar, any::<usize>()).prop_map(|(o, s, i)| Step::ScalarFirst(o, s, i)),
        (0u8..5, any::<usize>(), any::<usize>()).prop_map(|(o, i, j)| Step::Assign(o, i, j)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(c, i, j)| Step::Select(c, i, j)),
    ]
}

/// The program's body, the same tokens for ndarray arrays and lazy arrays: each
/// step pushes one new array computed with operators and methods.
macro_rules! run_program {
    ($vals:ident, $steps:expr, $select:path) => {{
        for step in $steps {
            let n = $vals.len();
            let v = match *step {
                Step::Unary(op, i) => {
                    let x = &$vals[i % n];
                    match op {
                        0 => x.floor(),
                        1 => x.ceil(),
                        2 => x.round(),
                        3 => x.trunc(),
                        4 => x.fract(),
                        5 => x.abs(),
                        6 => x.signum(),
                        7 => x.recip(),
                        8 => x.sqrt(),
                        9 => x.exp(),
                        10 => x.exp2(),
                        11 => x.ln(),
                        12 => x.log2(),
                        13 => x.log10(),
                        14 => x.cbrt(),
                        15 => x.sin(),
                        16 => x.cos(),
                        17 => x.tan(),
                        18 => x.pow2(),
                        19 => x.powi(3),
                        20 => x.powf(0.5),
                        21 => x.log(2.5),
                        22 => x.clamp(-1.0, 2.0),
                        23 => x.asin(),
                        24 => x.acos(),
                        25 => x.atan(),
                        26 => x.sinh(),
                        27 => x.cosh(),
                        28 => x.tanh(),
                        29 => x.exp_m1(),
                        30 => x.ln_1p(),
                        31 => x.erf(),
                        _ => -x,
                    }
                }
                Step::Binary(op, i, j) => {
                    let (x, y) = (&$vals[i % n], &$vals[j % n]);
                    match op {
                        0 => x + y,
                        1 => x - y,
                        2 => x * y,
                        3 => x / y,
                        _ => x % y,
                    }
                }
                Step::WithScalar(op, i, s) => {
                    let x = &$vals[i % n];
                    match op {
                        0 => x + s,
                        1 => x - s,
                        2 => x * s,
                        3 => x / s,
                        _ => x % s,
                    }
                }
                Step::ScalarFirst(op, s, i) => {
                    let x = &$vals[i % n];
                    match op {
                        0 => s + x,
                        1 => s - x,
                        2 => s * x,
                        3 => s / x,
                        _ => s % x,
                    }
                }
                Step::Assign(op, i, j) => {
                    let mut x = $vals[i % n].clone();
                    let y = &$vals[j % n];
                    match op {
                        0 => x += y,
                        1 => x -= y,
                        2 => x *= y,
                        3 => x /= y,
                        _ => x %= y,
                    }
                    x
                }
                Step::Select(c, i, j) => {
                    let cond = $vals[c % n].greater(&$vals[i % n]);
                    $select(&cond, &$vals[i % n], &$vals[j % n])
                }
            };
            $vals.push(v);
        }
    }};
}

fn run_eager(inputs: &[Array1<f64>], steps: &[Step]) -> Vec<Array1<f64>> {
    use annotated_libs::ndarray::eager::*;
    let mut vals: Vec<Array1<f64>> = inputs.to_vec();
    run_program!(vals, steps, select);
    vals
}

fn run_lazy<'a>(
    inputs: &'a [Array1<f64>],
    steps: &[Step],
) -> Vec<LazyArray<'a, f64, ndarray::Ix1>> {
    use annotated_libs::ndarray::*;
    let mut vals: Vec<Array1<'a, f64>> = inputs.iter().map(LazyArray::from).collect();
    run_program!(vals, steps, select);
    vals
}

fn length() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..40, 40usize..3000]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random programs of operators and methods: bit-exact against the same
    /// program on plain ndarray, at random lengths and batch sizes.
    #[test]
    fn random_operator_programs_are_plain_ndarray(
        n in length(),
        steps in proptest::collection::vec(step(), 1..12),
        batch in prop_oneof![Just(None), (1usize..2000).prop_map(Some)],
        seed in any::<u64>(),
    ) {
        let inputs: Vec<Array1<f64>> = (0..3).map(|i| uniform(n, -4.0, 4.0, seed ^ i)).collect();
        let eager = run_eager(&inputs, &steps);
        let lazy = cpu_graph(batch)
            .enter(|| evaluate(run_lazy(&inputs, &steps)))
            .unwrap_or_else(|e| panic!("evaluate failed: {e}"));
        for (i, (got, want)) in lazy.iter().zip(&eager).enumerate() {
            prop_assert!(same_bits(got, want), "value {} differs (n = {}, batch = {:?})", i, n, batch);
        }
    }

    /// The same programs with every stage on a small simulated device (paging
    /// through a few KiB): identical results.
    #[test]
    fn random_operator_programs_on_a_small_device_are_plain_ndarray(
        n in length(),
        steps in proptest::collection::vec(step(), 1..10),
        capacity in prop_oneof![2048usize..8192, Just(1usize << 30)],
        seed in any::<u64>(),
    ) {
        let inputs: Vec<Array1<f64>> = (0..3).map(|i| uniform(n, -4.0, 4.0, seed ^ i)).collect();
        let eager = run_eager(&inputs, &steps);
        let (g, device) = device_graph(capacity);
        let lazy = g
            .enter(|| evaluate(run_lazy(&inputs, &steps)))
            .unwrap_or_else(|e| panic!("evaluate failed: {e}"));
        for (i, (got, want)) in lazy.iter().zip(&eager).enumerate() {
            prop_assert!(same_bits(got, want), "value {} differs (n = {}, capacity = {})", i, n, capacity);
        }
        prop_assert!(device.stats().peak_bytes as usize <= capacity);
        prop_assert_eq!(device.in_use(), 0);
    }
}
