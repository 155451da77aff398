//! Fallible annotated functions: a function declared `-> Result<T, E>` gives a
//! `Lazy<T>`, and an `Err` from any of its batches fails the evaluation with
//! `Error::Call`, naming the function, whose source is the function's own `E`.
//! Nothing partial is returned, and the graph (and its plan cache) keeps
//! working after the error.

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::numpy as np;
use bach_runtime::{
    offload, Config, DevicePolicy, Error, Graph, Lazy, NdArraySplit, Placement, SumSplit,
};
use ndarray::{array, Array1};

mod common;
use common::{bits, fast_device, uniform};

/// The error of the checked functions: an element outside their domain.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfDomain {
    /// What the function computes.
    pub function: &'static str,
    /// The first offending element of the batch.
    pub value: f64,
}

impl std::fmt::Display for OutOfDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.function, self.value)
    }
}

impl std::error::Error for OutOfDomain {}

/// A library that knows nothing of Bach.
mod library {
    use super::OutOfDomain;
    use ndarray::Array1;

    /// The square roots of `a`, or the first negative element.
    pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, OutOfDomain> {
        match a.iter().find(|&&x| x < 0.0) {
            Some(&value) => Err(OutOfDomain {
                function: "square root",
                value,
            }),
            None => Ok(a.mapv(f64::sqrt)),
        }
    }
}

/// `library::checked_sqrt`, offloaded.
#[offload(split = NdArraySplit, wraps = library::checked_sqrt)]
pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, OutOfDomain>;

/// The sum of the logarithms: a fallible reduction, the return type written
/// with its full path.
#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn checked_log_sum(a: &Array1<f64>) -> std::result::Result<f64, OutOfDomain> {
    match a.iter().find(|&&x| x <= 0.0) {
        Some(&value) => Err(OutOfDomain {
            function: "logarithm",
            value,
        }),
        None => Ok(a.iter().map(|x| x.ln()).sum()),
    }
}

/// `a /= b` in place, refusing a zero divisor: a fallible function with a
/// mutated argument and no return value.
#[offload(split = NdArraySplit)]
pub fn checked_divide_assign(a: &mut Array1<f64>, b: &Array1<f64>) -> Result<(), OutOfDomain> {
    if let Some(&value) = b.iter().find(|&&x| x == 0.0) {
        return Err(OutOfDomain {
            function: "division",
            value,
        });
    }
    *a /= b;
    Ok(())
}

/// The smallest and largest element (a tuple), refusing an empty array: the
/// whole array is read (broadcast), so the call runs once.
#[offload(split(a = bach_runtime::Broadcast))]
pub fn checked_min_max(a: &Array1<f64>) -> Result<(f64, f64), OutOfDomain> {
    if a.is_empty() {
        return Err(OutOfDomain {
            function: "extrema",
            value: f64::NAN,
        });
    }
    let min = a.iter().copied().fold(f64::INFINITY, f64::min);
    let max = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok((min, max))
}

/// `checked_sqrt` that sees whole values (one call, no batches).
#[offload(split = NdArraySplit, unsplittable, wraps = library::checked_sqrt)]
pub fn checked_sqrt_whole(a: &Array1<f64>) -> Result<Array1<f64>, OutOfDomain>;

fn graph(batch_size: usize) -> Graph {
    Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        batch_size: Some(batch_size),
        threads: Some(2),
        ..Config::default()
    })
}

/// The function's own error inside `err`, which must be `Error::Call` of `op`;
/// checks that `std::error::Error::source` hands out the same value.
#[track_caller]
fn call_error(err: &Error, op: &str) -> OutOfDomain {
    let Error::Call { op: failed, source } = err else {
        panic!("expected Error::Call of `{op}`, got {err:?}");
    };
    assert_eq!(*failed, op);
    let through_std = std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<OutOfDomain>())
        .expect("`source()` is the function's own error");
    let own = source
        .downcast_ref::<OutOfDomain>()
        .expect("the source downcasts to the function's error type");
    assert!(
        std::ptr::eq(own, through_std),
        "one error value, two ways to reach it"
    );
    own.clone()
}

#[test]
fn an_error_names_the_function_and_its_source_downcasts() {
    let g = graph(4);
    let a = array![4.0, 9.0, -1.0, 16.0, 25.0, 36.0];
    let err = g.enter(|| g.evaluate(checked_sqrt(&a))).unwrap_err();
    let own = call_error(&err, "checked_sqrt");
    assert_eq!(
        own,
        OutOfDomain {
            function: "square root",
            value: -1.0
        }
    );
    assert_eq!(err.to_string(), "`checked_sqrt` failed: square root of -1");
}

#[test]
fn good_input_gives_the_eager_result_for_every_batch_size() {
    let a = uniform(10_007, 0.0, 100.0, 1);
    let eager = checked_sqrt::cpu(&a).unwrap();
    for batch_size in [1, 7, 1000, 4096, 1 << 20] {
        let g = graph(batch_size);
        let r = g.enter(|| g.evaluate(checked_sqrt(&a))).unwrap();
        assert_eq!(bits(&r), bits(&eager), "batch size {batch_size}");
    }
}

#[test]
fn an_error_in_the_last_batch_only_is_reported() {
    let n = 10_007;
    let mut a = uniform(n, 0.0, 100.0, 2);
    a[n - 1] = -3.0;
    // 11 batches of 1000 on two threads, and one batch of everything.
    for batch_size in [1000, n] {
        let g = graph(batch_size);
        let err = g.enter(|| g.evaluate(checked_sqrt(&a))).unwrap_err();
        assert_eq!(call_error(&err, "checked_sqrt").value, -3.0);
    }
}

#[test]
fn after_an_error_the_graph_and_its_cached_plan_keep_working() {
    let g = graph(1000);
    let mut bad = uniform(5000, 0.0, 10.0, 3);
    bad[4321] = -0.5;
    let good = uniform(5000, 0.0, 10.0, 4);

    let failing = g.enter(|| checked_sqrt(&bad));
    let err = g.evaluate(&failing).unwrap_err();
    assert_eq!(call_error(&err, "checked_sqrt").value, -0.5);
    assert!(!failing.is_evaluated());
    // The same handle fails the same way again: nothing was left half-done.
    let again = g.evaluate(&failing).unwrap_err();
    assert_eq!(call_error(&again, "checked_sqrt").value, -0.5);

    // The same shape on good data reuses the plan and gives the eager result.
    let r = g.enter(|| g.evaluate(checked_sqrt(&good))).unwrap();
    assert_eq!(bits(&r), bits(&checked_sqrt::cpu(&good).unwrap()));
    assert!(g.last_run().unwrap().reused_plan);
    // And so does an unrelated program.
    let s = g.enter(|| g.evaluate(np::add(&good, &good))).unwrap();
    assert_eq!(bits(&s), bits(&cpu::add(&good, &good)));
}

/// `sqrt(a * b - c) + a` summed, the fallible call between infallible ones.
fn program<'a>(
    a: &'a Array1<f64>,
    b: &'a Array1<f64>,
    c: &'a Array1<f64>,
) -> (Lazy<'a, Array1<f64>>, Lazy<'a, f64>) {
    let root = checked_sqrt(np::subtract(np::multiply(a, b), c));
    let r = np::add(&root, a);
    let total = np::sum(&r);
    (r, total)
}

fn eager(a: &Array1<f64>, b: &Array1<f64>, c: &Array1<f64>) -> Array1<f64> {
    let root = checked_sqrt::cpu(&cpu::subtract(&cpu::multiply(a, b), c)).unwrap();
    cpu::add(&root, a)
}

#[test]
fn downstream_of_infallible_calls_and_feeding_later_calls() {
    let g = graph(1000);
    let a = uniform(8000, 1.0, 2.0, 5);
    let b = uniform(8000, 1.0, 2.0, 6);
    let c = uniform(8000, 0.0, 1.0, 7);
    let (r, total) = g.enter(|| g.evaluate(program(&a, &b, &c))).unwrap();
    assert_eq!(bits(&r), bits(&eager(&a, &b, &c)));
    assert!((total - r.sum()).abs() <= 1e-9 * r.sum().abs());

    // One element of `c` large enough to make `a * b - c` negative.
    let mut c_bad = c.clone();
    c_bad[6500] = 10.0;
    let err = g.enter(|| g.evaluate(program(&a, &b, &c_bad))).unwrap_err();
    assert!(call_error(&err, "checked_sqrt").value < 0.0);
    let (r, _) = g.enter(|| g.evaluate(program(&a, &b, &c))).unwrap();
    assert_eq!(bits(&r), bits(&eager(&a, &b, &c)));
    assert!(g.last_run().unwrap().reused_plan);
}

#[test]
fn a_fallible_reduction() {
    let g = graph(1000);
    let a = uniform(6000, 0.5, 3.0, 8);
    let s = g.enter(|| g.evaluate(checked_log_sum(&a))).unwrap();
    let want = checked_log_sum::cpu(&a).unwrap();
    assert!((s - want).abs() <= 1e-9 * want.abs(), "{s} vs {want}");

    let mut bad = a.clone();
    bad[10] = 0.0;
    let err = g.enter(|| g.evaluate(checked_log_sum(&bad))).unwrap_err();
    assert_eq!(
        call_error(&err, "checked_log_sum"),
        OutOfDomain {
            function: "logarithm",
            value: 0.0
        }
    );
}

#[test]
fn a_fallible_function_with_a_mutated_argument() {
    let g = graph(100);
    let a = uniform(1000, 1.0, 2.0, 9);
    let b = uniform(1000, 1.0, 2.0, 10);
    let mut out = g.enter(|| Lazy::new(a.clone()));
    let done = g.enter(|| checked_divide_assign(&mut out, &b));
    let (quotient, ()) = g.evaluate((out, done)).unwrap();
    let mut want = a.clone();
    checked_divide_assign::cpu(&mut want, &b).unwrap();
    assert_eq!(bits(&quotient), bits(&want));

    let mut zero = b.clone();
    zero[999] = 0.0;
    let mut out = g.enter(|| Lazy::new(a.clone()));
    g.enter(|| checked_divide_assign(&mut out, &zero));
    let err = g.evaluate(out).unwrap_err();
    assert_eq!(call_error(&err, "checked_divide_assign").value, 0.0);
}

#[test]
fn a_fallible_tuple_return() {
    let g = graph(100);
    let a = array![3.0, -2.0, 7.5, 0.0];
    let (lo, hi) = g.enter(|| g.evaluate(checked_min_max(&a))).unwrap();
    assert_eq!((lo, hi), (-2.0, 7.5));
    let empty: Array1<f64> = Array1::zeros(0);
    let err = g.enter(|| g.evaluate(checked_min_max(&empty))).unwrap_err();
    assert_eq!(call_error(&err, "checked_min_max").function, "extrema");
}

#[test]
fn a_fallible_function_on_whole_values() {
    let g = graph(100);
    let a = uniform(1000, 0.0, 4.0, 11);
    let r = g.enter(|| g.evaluate(checked_sqrt_whole(&a))).unwrap();
    assert_eq!(bits(&r), bits(&checked_sqrt::cpu(&a).unwrap()));
    let mut bad = a.clone();
    bad[0] = -1.0;
    let err = g
        .enter(|| g.evaluate(checked_sqrt_whole(&bad)))
        .unwrap_err();
    assert_eq!(call_error(&err, "checked_sqrt_whole").value, -1.0);
}

#[test]
fn with_a_device_the_fallible_call_runs_on_the_cpu_and_its_error_surfaces() {
    let a = uniform(1 << 15, 1.0, 2.0, 12);
    let b = uniform(1 << 15, 1.0, 2.0, 13);
    let c = uniform(1 << 15, 0.0, 1.0, 14);
    let mut c_bad = c.clone();
    c_bad[(1 << 15) - 1] = 10.0;
    // A working device, and one whose `subtract` kernel fails (its stage
    // falls back to the CPU under `auto`).
    for fail_kernel in [None, Some("subtract_f64")] {
        let g = Graph::with_config(Config::default()); // auto
        g.set_device(Some(fast_device(fail_kernel)));
        let planned = g.enter(|| g.explain(&program(&a, &b, &c))).unwrap();
        assert_eq!(planned.stages[0].placement, Placement::Device, "{planned}");
        let fallible = planned
            .stages
            .iter()
            .find(|s| s.ops.contains(&"checked_sqrt"))
            .expect("a stage runs checked_sqrt");
        assert_eq!(fallible.placement, Placement::Cpu, "{planned}");

        let (r, _) = g.enter(|| g.evaluate(program(&a, &b, &c))).unwrap();
        assert_eq!(bits(&r), bits(&eager(&a, &b, &c)), "{fail_kernel:?}");
        let last = g.last_run().unwrap();
        assert_eq!(
            last.stages[0].reason.contains("device error"),
            fail_kernel.is_some(),
            "{last}"
        );
        let err = g.enter(|| g.evaluate(program(&a, &b, &c_bad))).unwrap_err();
        assert!(
            call_error(&err, "checked_sqrt").value < 0.0,
            "{fail_kernel:?}"
        );
        // The graph still evaluates good data afterwards.
        let (r, _) = g.enter(|| g.evaluate(program(&a, &b, &c))).unwrap();
        assert_eq!(bits(&r), bits(&eager(&a, &b, &c)), "{fail_kernel:?}");
    }
}

/// `checked_sqrt` on a device: the square roots through the call's host
/// stand-in, whose `Err` (the CPU function's, as `Error::Call`) is the
/// device function's result.
fn checked_sqrt_on_device(
    call: &bach_runtime::DeviceCall<'_>,
) -> bach_runtime::Result<bach_runtime::DeviceOutput> {
    let out = call.device.alloc(call.n * 8)?;
    call.device.launch(&bach_runtime::Launch {
        source: annotated_libs::numpy::BACH_KERNELS,
        kernel: "sqrt_f64".into(),
        n: call.n,
        args: vec![
            bach_runtime::KernelArg::In(call.inputs[0].buf),
            bach_runtime::KernelArg::Out(&out),
        ],
        shape: bach_runtime::LaunchShape::Elementwise,
        reference: call.host,
    })?;
    Ok(bach_runtime::DeviceOutput { buf: out, width: 1 })
}

/// `library::checked_sqrt` with a device function.
#[offload(split = NdArraySplit, gpu_fn = checked_sqrt_on_device, wraps = library::checked_sqrt)]
pub fn checked_sqrt_device(a: &Array1<f64>) -> Result<Array1<f64>, OutOfDomain>;

#[test]
fn a_fallible_device_function_runs_on_the_device_and_reports_the_error() {
    let a = uniform(1 << 14, 1.0, 2.0, 15);
    let mut bad = a.clone();
    bad[(1 << 14) - 3] = -4.0;
    for policy in [DevicePolicy::Auto, DevicePolicy::Device] {
        let g = Graph::with_config(Config {
            device: policy,
            ..Config::default()
        });
        let dev = fast_device(None);
        g.set_device(Some(dev.clone()));
        let r = g.enter(|| g.evaluate(checked_sqrt_device(&a))).unwrap();
        assert_eq!(bits(&r), bits(&library::checked_sqrt(&a).unwrap()));
        let last = g.last_run().unwrap();
        assert_eq!(last.stages[0].placement, Placement::Device, "{last}");
        assert!(bach_runtime::Device::stats(&*dev).launches > 0);
        // The error is the function's, not a device failure, under either
        // policy: never retried on the CPU.
        let err = g
            .enter(|| g.evaluate(checked_sqrt_device(&bad)))
            .unwrap_err();
        assert_eq!(call_error(&err, "checked_sqrt_device").value, -4.0);
        let r = g.enter(|| g.evaluate(checked_sqrt_device(&a))).unwrap();
        assert_eq!(bits(&r), bits(&library::checked_sqrt(&a).unwrap()));
    }
}
