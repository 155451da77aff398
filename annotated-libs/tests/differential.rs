//! Differential testing: random programs of annotated calls give exactly the
//! results of eager evaluation of the plain CPU functions, whatever the length,
//! batch size and thread count. Elementwise results must match bit for bit;
//! reductions (whose partial sums reorder additions) within a stated tolerance.
// Calls borrow their arguments as the CPU functions' callers do.
#![allow(clippy::needless_borrows_for_generic_args)]

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::numpy as np;
use std::sync::Arc;

use bach_runtime::{
    evaluate, Config, Device, DevicePolicy, Graph, Lazy, SimulatedDevice, SimulatedDeviceConfig,
};
use ndarray::Array1;
use proptest::prelude::*;

/// One step of a random program. Operands index earlier arrays (modulo the count).
#[derive(Debug, Clone)]
enum Step {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    Scalar(u8, usize, f64),
    ScalarFirst(u8, f64, usize),
    Where(usize, usize, usize, f64),
    Mutate(usize, usize),
}

const UNARY: u8 = 15;
const BINARY: u8 = 7;
const SCALAR: u8 = 7;

/// Steps whose functions all have GPU kernels (no `add_into`).
fn kernel_step() -> impl Strategy<Value = Step> {
    step().prop_filter("has a kernel", |s| !matches!(s, Step::Mutate(..)))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..UNARY, any::<usize>()).prop_map(|(o, a)| Step::Unary(o, a)),
        (0..BINARY, any::<usize>(), any::<usize>()).prop_map(|(o, a, b)| Step::Binary(o, a, b)),
        (0..SCALAR, any::<usize>(), -4.0..4.0f64).prop_map(|(o, a, s)| Step::Scalar(o, a, s)),
        (0..4u8, -4.0..4.0f64, any::<usize>()).prop_map(|(o, s, a)| Step::ScalarFirst(o, s, a)),
        (any::<usize>(), any::<usize>(), any::<usize>(), -2.0..2.0f64)
            .prop_map(|(c, x, y, t)| Step::Where(c, x, y, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Step::Mutate(a, b)),
    ]
}

/// The program over plain arrays (`cpu`) and over lazy handles (`np`), written
/// side by side so that each step is the same call in both worlds.
fn run_eager(inputs: &[Array1<f64>], steps: &[Step]) -> Vec<Array1<f64>> {
    let mut vals: Vec<Array1<f64>> = inputs.to_vec();
    for s in steps {
        let k = vals.len();
        let v = match *s {
            Step::Unary(o, a) => {
                let a = &vals[a % k];
                match o {
                    0 => cpu::negative(a),
                    1 => cpu::abs(a),
                    2 => cpu::sqrt(a),
                    3 => cpu::exp(a),
                    4 => cpu::log(a),
                    5 => cpu::log2(a),
                    6 => cpu::log10(a),
                    7 => cpu::sin(a),
                    8 => cpu::cos(a),
                    9 => cpu::tan(a),
                    10 => cpu::arcsin(a),
                    11 => cpu::arccos(a),
                    12 => cpu::arctan(a),
                    13 => cpu::erf(a),
                    _ => cpu::square(a),
                }
            }
            Step::Binary(o, a, b) => {
                let (a, b) = (&vals[a % k], &vals[b % k]);
                match o {
                    0 => cpu::add(a, b),
                    1 => cpu::subtract(a, b),
                    2 => cpu::multiply(a, b),
                    3 => cpu::divide(a, b),
                    4 => cpu::power(a, b),
                    5 => cpu::minimum(a, b),
                    _ => cpu::maximum(a, b),
                }
            }
            Step::Scalar(o, a, s) => {
                let a = &vals[a % k];
                match o {
                    0 => cpu::add_scalar(a, s),
                    1 => cpu::subtract_scalar(a, s),
                    2 => cpu::multiply_scalar(a, s),
                    3 => cpu::divide_scalar(a, s),
                    4 => cpu::power_scalar(a, s),
                    5 => cpu::minimum_scalar(a, s),
                    _ => cpu::maximum_scalar(a, s),
                }
            }
            Step::ScalarFirst(o, s, a) => {
                let a = &vals[a % k];
                match o {
                    0 => cpu::scalar_add(s, a),
                    1 => cpu::scalar_subtract(s, a),
                    2 => cpu::scalar_multiply(s, a),
                    _ => cpu::scalar_divide(s, a),
                }
            }
            Step::Where(c, x, y, t) => {
                let cond = cpu::greater_scalar(&vals[c % k], t);
                cpu::where_(&cond, &vals[x % k], &vals[y % k])
            }
            Step::Mutate(a, b) => {
                let mut out = cpu::zeros(vals[0].len());
                cpu::add_into(&vals[a % k], &vals[b % k], &mut out);
                out
            }
        };
        vals.push(v);
    }
    vals
}

fn record<'a>(inputs: &'a [Array1<f64>], steps: &[Step]) -> Vec<Lazy<'a, Array1<f64>>> {
    let mut vals: Vec<Lazy<'a, Array1<f64>>> = inputs.iter().map(Lazy::borrowed).collect();
    for s in steps {
        let k = vals.len();
        let v = match *s {
            Step::Unary(o, a) => {
                let a = &vals[a % k];
                match o {
                    0 => np::negative(a),
                    1 => np::abs(a),
                    2 => np::sqrt(a),
                    3 => np::exp(a),
                    4 => np::log(a),
                    5 => np::log2(a),
                    6 => np::log10(a),
                    7 => np::sin(a),
                    8 => np::cos(a),
                    9 => np::tan(a),
                    10 => np::arcsin(a),
                    11 => np::arccos(a),
                    12 => np::arctan(a),
                    13 => np::erf(a),
                    _ => np::square(a),
                }
            }
            Step::Binary(o, a, b) => {
                let (a, b) = (&vals[a % k], &vals[b % k]);
                match o {
                    0 => np::add(a, b),
                    1 => np::subtract(a, b),
                    2 => np::multiply(a, b),
                    3 => np::divide(a, b),
                    4 => np::power(a, b),
                    5 => np::minimum(a, b),
                    _ => np::maximum(a, b),
                }
            }
            Step::Scalar(o, a, s) => {
                let a = &vals[a % k];
                match o {
                    0 => np::add_scalar(a, s),
                    1 => np::subtract_scalar(a, s),
                    2 => np::multiply_scalar(a, s),
                    3 => np::divide_scalar(a, s),
                    4 => np::power_scalar(a, s),
                    5 => np::minimum_scalar(a, s),
                    _ => np::maximum_scalar(a, s),
                }
            }
            Step::ScalarFirst(o, s, a) => {
                let a = &vals[a % k];
                match o {
                    0 => np::scalar_add(s, a),
                    1 => np::scalar_subtract(s, a),
                    2 => np::scalar_multiply(s, a),
                    _ => np::scalar_divide(s, a),
                }
            }
            Step::Where(c, x, y, t) => {
                let cond = np::greater_scalar(&vals[c % k], t);
                np::where_(&cond, &vals[x % k], &vals[y % k])
            }
            Step::Mutate(a, b) => {
                let mut out = np::zeros(inputs[0].len());
                np::add_into(&vals[a % k], &vals[b % k], &mut out);
                out
            }
        };
        vals.push(v);
    }
    vals
}

/// Lengths that matter: empty, one, primes, around and far above batch sizes.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(7),
        Just(97),
        Just(1023),
        Just(1024),
        Just(1025),
        Just(4099),
        0usize..3000,
        Just(70_001),
    ]
}

fn data(n: usize, seed: u64) -> Array1<f64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    Array1::from_shape_fn(n, |i| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        // Mostly ordinary values, with edge values sprinkled in.
        match s % 61 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => 0.0,
            4 => -0.0,
            5 => 1e-310,
            _ => ((s >> 11) as f64 / (1u64 << 53) as f64) * 8.0 - 4.0 + (i % 3) as f64 * 1e-3,
        }
    })
}

fn same_bits(a: &Array1<f64>, b: &Array1<f64>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Reductions: equal within `1e-9` of the sum of magnitudes (the bound on
/// reordering error for these lengths), NaN where the reference is NaN.
fn close(a: f64, b: f64, scale: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * scale.max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_match_eager_cpu(
        n in length(),
        steps in proptest::collection::vec(step(), 1..14),
        batch in prop_oneof![Just(None), (1usize..5000).prop_map(Some)],
        threads in prop_oneof![Just(None), (1usize..4).prop_map(Some)],
        seed in any::<u64>(),
    ) {
        let inputs: Vec<Array1<f64>> = (0..3).map(|i| data(n, seed ^ i)).collect();
        let eager = run_eager(&inputs, &steps);
        let graph = Graph::with_config(Config { batch_size: batch, threads, ..Config::default() });
        let (lazy, sums, maxes) = graph.enter(|| {
            let handles = record(&inputs, &steps);
            let sums: Vec<_> = handles.iter().map(np::sum).collect();
            let maxes: Vec<_> = if n > 0 { handles.iter().map(np::max).collect() } else { Vec::new() };
            evaluate((handles, sums, maxes))
        }).unwrap_or_else(|e| panic!("evaluate failed: {e}"));
        for (i, (got, want)) in lazy.iter().zip(&eager).enumerate() {
            prop_assert!(same_bits(got, want), "value {} differs (n = {}, batch = {:?})", i, n, batch);
        }
        for (got, want) in sums.iter().zip(&eager) {
            let scale: f64 = want.iter().filter(|x| x.is_finite()).map(|x| x.abs()).sum();
            prop_assert!(close(*got, cpu::sum(want), scale), "sum {} vs {}", got, cpu::sum(want));
        }
        if n > 0 {
            for (got, want) in maxes.iter().zip(&eager) {
                let m = cpu::max(want);
                prop_assert!(got.to_bits() == m.to_bits() || (got.is_nan() && m.is_nan()), "max {} vs {}", got, m);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The same programs with every stage on a simulated device of random
    /// capacity (from a few hundred bytes, paging element by element, to more
    /// than the data), with out-of-memory injected at a random allocation:
    /// identical results, and the capacity is never exceeded.
    #[test]
    fn random_programs_on_a_bounded_device_match_eager_cpu(
        n in length(),
        steps in proptest::collection::vec(kernel_step(), 1..10),
        capacity in prop_oneof![256usize..4096, 4096usize..(1 << 16), Just(1usize << 30)],
        fail_alloc in prop_oneof![Just(None), (0u64..40).prop_map(Some)],
        seed in any::<u64>(),
    ) {
        let inputs: Vec<Array1<f64>> = (0..3).map(|i| data(n, seed ^ i)).collect();
        let eager = run_eager(&inputs, &steps);
        let device = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig { capacity, fail_alloc, ..Default::default() }));
        let graph = Graph::with_config(Config { device: DevicePolicy::Gpu, ..Config::default() });
        graph.set_device(Some(device.clone()));
        let (lazy, sums) = graph.enter(|| {
            let handles = record(&inputs, &steps);
            let sums: Vec<_> = handles.iter().map(np::sum).collect();
            evaluate((handles, sums))
        }).unwrap_or_else(|e| panic!("evaluate failed: {e}"));
        for (i, (got, want)) in lazy.iter().zip(&eager).enumerate() {
            prop_assert!(same_bits(got, want), "value {} differs (n = {}, capacity = {})", i, n, capacity);
        }
        for (got, want) in sums.iter().zip(&eager) {
            let scale: f64 = want.iter().filter(|x| x.is_finite()).map(|x| x.abs()).sum();
            prop_assert!(close(*got, cpu::sum(want), scale), "sum {} vs {}", got, cpu::sum(want));
        }
        prop_assert!(device.stats().peak_bytes as usize <= capacity);
        prop_assert_eq!(device.in_use(), 0);
        // Every call here has a kernel: the device did the work (unless not
        // even one element fit and the CPU took over).
        if n > 0 && capacity >= 1 << 12 && fail_alloc.is_none() {
            prop_assert!(device.stats().launches > 0, "nothing ran on the device");
        }
    }
}

/// One step of a program with several device stages: `MinusMax` needs a
/// whole reduction before the subtraction, so it starts a new stage.
#[derive(Debug, Clone)]
enum StageStep {
    Unary(u8, usize),
    Binary(u8, usize, usize),
    MinusMax(usize, usize),
    Where(usize, usize, usize, f64),
}

fn stage_step() -> impl Strategy<Value = StageStep> {
    prop_oneof![
        (0..4u8, any::<usize>()).prop_map(|(o, a)| StageStep::Unary(o, a)),
        (0..3u8, any::<usize>(), any::<usize>()).prop_map(|(o, a, b)| StageStep::Binary(o, a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| StageStep::MinusMax(a, b)),
        (any::<usize>(), any::<usize>(), any::<usize>(), -2.0..2.0f64)
            .prop_map(|(c, x, y, t)| StageStep::Where(c, x, y, t)),
    ]
}

fn run_stages_eager(inputs: &[Array1<f64>], steps: &[StageStep]) -> Vec<Array1<f64>> {
    let mut vals: Vec<Array1<f64>> = inputs.to_vec();
    for s in steps {
        let k = vals.len();
        let v = match *s {
            StageStep::Unary(o, a) => {
                let a = &vals[a % k];
                match o {
                    0 => cpu::negative(a),
                    1 => cpu::abs(a),
                    2 => cpu::sqrt(a),
                    _ => cpu::square(a),
                }
            }
            StageStep::Binary(o, a, b) => {
                let (a, b) = (&vals[a % k], &vals[b % k]);
                match o {
                    0 => cpu::add(a, b),
                    1 => cpu::subtract(a, b),
                    _ => cpu::multiply(a, b),
                }
            }
            StageStep::MinusMax(a, b) => cpu::subtract_scalar(&vals[a % k], cpu::max(&vals[b % k])),
            StageStep::Where(c, x, y, t) => {
                let cond = cpu::greater_scalar(&vals[c % k], t);
                cpu::where_(&cond, &vals[x % k], &vals[y % k])
            }
        };
        vals.push(v);
    }
    vals
}

fn record_stages<'a>(inputs: &'a [Array1<f64>], steps: &[StageStep]) -> Vec<Lazy<'a, Array1<f64>>> {
    let mut vals: Vec<Lazy<'a, Array1<f64>>> = inputs.iter().map(Lazy::borrowed).collect();
    for s in steps {
        let k = vals.len();
        let v = match *s {
            StageStep::Unary(o, a) => {
                let a = &vals[a % k];
                match o {
                    0 => np::negative(a),
                    1 => np::abs(a),
                    2 => np::sqrt(a),
                    _ => np::square(a),
                }
            }
            StageStep::Binary(o, a, b) => {
                let (a, b) = (&vals[a % k], &vals[b % k]);
                match o {
                    0 => np::add(a, b),
                    1 => np::subtract(a, b),
                    _ => np::multiply(a, b),
                }
            }
            StageStep::MinusMax(a, b) => np::subtract_scalar(&vals[a % k], np::max(&vals[b % k])),
            StageStep::Where(c, x, y, t) => {
                let cond = np::greater_scalar(&vals[c % k], t);
                np::where_(&cond, &vals[x % k], &vals[y % k])
            }
        };
        vals.push(v);
    }
    vals
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Programs of several device stages where only some values are
    /// evaluated, so that the others can stay on the device between stages:
    /// on a bounded device, with a memory budget and out-of-memory injected
    /// at random, identical results; neither the capacity nor the budget is
    /// exceeded, and nothing stays allocated.
    #[test]
    fn multi_stage_programs_with_values_kept_on_the_device_match_eager_cpu(
        n in prop_oneof![Just(1usize), Just(7), 1usize..3000, Just(4099), Just(70_001)],
        steps in proptest::collection::vec(stage_step(), 1..12),
        pick in any::<u64>(),
        capacity in prop_oneof![256usize..4096, 4096usize..(1 << 16), (1usize << 16)..(1 << 22), Just(1usize << 30)],
        fail_alloc in prop_oneof![Just(None), (0u64..60).prop_map(Some)],
        budget in prop_oneof![Just(None), ((1usize << 10)..(1 << 20)).prop_map(Some)],
        seed in any::<u64>(),
    ) {
        let inputs: Vec<Array1<f64>> = (0..3).map(|i| data(n, seed ^ i)).collect();
        let eager = run_stages_eager(&inputs, &steps);
        let device = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig { capacity, fail_alloc, ..Default::default() }));
        let graph = Graph::with_config(Config { device: DevicePolicy::Gpu, gpu_memory: budget, ..Config::default() });
        graph.set_device(Some(device.clone()));
        // The last value and a random few of the others.
        let last = eager.len() - 1;
        let wanted: Vec<usize> = (3..eager.len()).filter(|&i| i == last || (pick >> (i % 64)) & 1 == 1).collect();
        let got = graph.enter(|| {
            let handles = record_stages(&inputs, &steps);
            evaluate(wanted.iter().map(|&i| handles[i].clone()).collect::<Vec<_>>())
        }).unwrap_or_else(|e| panic!("evaluate failed: {e}"));
        for (got, &i) in got.iter().zip(&wanted) {
            prop_assert!(same_bits(got, &eager[i]), "value {} differs (n = {}, capacity = {})", i, n, capacity);
        }
        let peak = device.stats().peak_bytes as usize;
        prop_assert!(peak <= capacity);
        if let Some(budget) = budget {
            prop_assert!(peak <= budget, "peak {} over the budget {}", peak, budget);
        }
        prop_assert_eq!(device.in_use(), 0);
    }
}

#[test]
fn max_of_empty_is_an_error_and_sum_is_zero() {
    let empty = Array1::<f64>::zeros(0);
    assert_eq!(evaluate(np::sum(&empty)).unwrap(), 0.0);
    assert!(matches!(
        evaluate(np::max(&empty)),
        Err(bach_runtime::Error::EmptyReduction { op: "max" })
    ));
    assert!(evaluate(np::mean(&empty)).unwrap().is_nan());
}

#[test]
fn mean_and_std_match_within_tolerance() {
    for n in [1usize, 5, 4097, 100_000] {
        let a = data(n, 9).mapv(|x| if x.is_finite() { x } else { 1.0 });
        let graph = Graph::with_config(Config {
            batch_size: Some(333),
            ..Config::default()
        });
        let (m, s) = graph
            .enter(|| evaluate((np::mean(&a), np::std(&a))))
            .unwrap();
        assert!(
            (m - cpu::mean(&a)).abs() <= 1e-12 * (1.0 + cpu::mean(&a).abs()),
            "mean n = {n}"
        );
        assert!(
            (s - cpu::std(&a)).abs() <= 1e-12 * (1.0 + cpu::std(&a)),
            "std n = {n}"
        );
    }
}

#[test]
fn means_with_infinities_follow_numpy_across_batches() {
    let mut x = Array1::from_elem(4096, 1.0);
    x[0] = f64::INFINITY;
    let g = Graph::with_config(Config {
        batch_size: Some(1024),
        ..Config::default()
    });
    assert_eq!(g.enter(|| evaluate(np::mean(&x))).unwrap(), f64::INFINITY);
    assert_eq!(cpu::mean(&x), f64::INFINITY);
    x[4000] = f64::NEG_INFINITY;
    assert!(g.enter(|| evaluate(np::mean(&x))).unwrap().is_nan());
    let m = ndarray::Array2::from_shape_fn(
        (4096, 2),
        |(i, _)| if i == 0 { f64::INFINITY } else { 1.0 },
    );
    let got = g.enter(|| evaluate(np::mean_axis0(&m))).unwrap();
    assert_eq!(got, ndarray::array![f64::INFINITY, f64::INFINITY]);
}
