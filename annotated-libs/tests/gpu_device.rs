//! Every annotated function on the real GPU against its CPU function. Runs
//! only where a CUDA device is present (set `BACH_REQUIRE_GPU=1` to make a
//! missing GPU a failure); elsewhere each test prints why it skipped.
//!
//! Agreement required: bit-exact for IEEE-exact operations (+ - * /, sqrt,
//! negation, abs, min/max, comparisons, selections, copies), within 4 ulp or
//! 1e-12 relative for f64 transcendentals and 1e-5 relative for f32.
#![allow(clippy::needless_borrows_for_generic_args)]

use std::sync::Arc;

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::numpy as np;
use annotated_libs::workloads;
use bach_runtime::{evaluate, Config, CudaDevice, DevicePolicy, Graph, Lazy, Placement};
use ndarray::Array1;

mod common;
use common::uniform;

/// The GPU, or `None` (after saying why) when this machine has none.
fn gpu() -> Option<Arc<CudaDevice>> {
    let status = bach_runtime::gpu_status();
    if status.devices.is_empty() {
        if std::env::var("BACH_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("BACH_REQUIRE_GPU=1 but {status}");
        }
        eprintln!("skipped: {status}");
        return None;
    }
    Some(CudaDevice::open(0).expect("a listed GPU opens"))
}

/// A graph whose eligible stages all run on `dev`.
fn gpu_graph(dev: &Arc<CudaDevice>) -> Graph {
    let g = Graph::with_config(Config {
        device: DevicePolicy::Device,
        ..Config::default()
    });
    g.set_device(Some(dev.clone()));
    g
}

/// Ordinary values in (-3, 3) with edge values sprinkled in.
fn edgy(n: usize, seed: u64) -> Array1<f64> {
    let edges = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-310,
        -1e-310,
        1e300,
        -1e300,
    ];
    let mut a = uniform(n, -3.0, 3.0, seed);
    for (i, e) in edges.iter().enumerate() {
        if i * 97 < n {
            a[i * 97] = *e;
        }
    }
    a
}

fn ulps(a: f64, b: f64) -> u64 {
    let key = |x: f64| {
        let b = x.to_bits() as i64;
        if b < 0 {
            i64::MIN - b
        } else {
            b
        }
    };
    key(a).abs_diff(key(b))
}

fn agree(got: f64, want: f64, exact: bool) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    if exact {
        return got.to_bits() == want.to_bits() || (got == 0.0 && want == 0.0);
    }
    got == want || ulps(got, want) <= 4 || (got - want).abs() <= 1e-12 * want.abs().max(got.abs())
}

fn agree32(got: f32, want: f32, exact: bool) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    if exact {
        return got.to_bits() == want.to_bits() || (got == 0.0 && want == 0.0);
    }
    got == want || (got - want).abs() <= 1e-5 * want.abs().max(got.abs()).max(f32::MIN_POSITIVE)
}

/// Evaluates `h` on the GPU, checking that it ran there.
fn on_gpu<T: bach_runtime::Value>(g: &Graph, h: Lazy<'_, T>) -> T {
    let v = g.evaluate(h).expect("evaluates on the GPU");
    let run = g.last_run().expect("a run");
    assert!(
        run.stages.iter().all(|s| s.placement == Placement::Device),
        "{run}"
    );
    v
}

fn check_f64(name: &str, got: &Array1<f64>, want: &Array1<f64>, exact: bool) {
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(agree(*g, *w, exact), "{name}[{i}]: gpu {g:e} vs cpu {w:e}");
    }
}

type Unary = (
    &'static str,
    for<'a> fn(&'a Array1<f64>) -> Lazy<'a, Array1<f64>>,
    fn(&Array1<f64>) -> Array1<f64>,
    bool,
);

#[test]
fn every_f64_op_matches_the_cpu_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let g = gpu_graph(&dev);
    let n = 100_003;
    let (a, b) = (edgy(n, 1), edgy(n, 2));
    let unary: Vec<Unary> = vec![
        ("negative", |x| np::negative(x), cpu::negative, true),
        ("abs", |x| np::abs(x), cpu::abs, true),
        ("sqrt", |x| np::sqrt(x), cpu::sqrt, true),
        ("square", |x| np::square(x), cpu::square, true),
        ("copy", |x| np::copy(x), cpu::copy, true),
        ("exp", |x| np::exp(x), cpu::exp, false),
        ("log", |x| np::log(x), cpu::log, false),
        ("log2", |x| np::log2(x), cpu::log2, false),
        ("log10", |x| np::log10(x), cpu::log10, false),
        ("sin", |x| np::sin(x), cpu::sin, false),
        ("cos", |x| np::cos(x), cpu::cos, false),
        ("tan", |x| np::tan(x), cpu::tan, false),
        ("arcsin", |x| np::arcsin(x), cpu::arcsin, false),
        ("arccos", |x| np::arccos(x), cpu::arccos, false),
        ("arctan", |x| np::arctan(x), cpu::arctan, false),
        ("erf", |x| np::erf(x), cpu::erf, false),
    ];
    for (name, lazy, eager, exact) in unary {
        let got = g.enter(|| on_gpu(&g, lazy(&a)));
        check_f64(name, &got, &eager(&a), exact);
    }
    type Binary = fn(&Array1<f64>, &Array1<f64>) -> Array1<f64>;
    let exact_binary: [(&str, Binary); 6] = [
        ("add", cpu::add),
        ("subtract", cpu::subtract),
        ("multiply", cpu::multiply),
        ("divide", cpu::divide),
        ("minimum", cpu::minimum),
        ("maximum", cpu::maximum),
    ];
    for (name, eager) in exact_binary {
        let got = g.enter(|| {
            on_gpu(
                &g,
                match name {
                    "add" => np::add(&a, &b),
                    "subtract" => np::subtract(&a, &b),
                    "multiply" => np::multiply(&a, &b),
                    "divide" => np::divide(&a, &b),
                    "minimum" => np::minimum(&a, &b),
                    _ => np::maximum(&a, &b),
                },
            )
        });
        check_f64(name, &got, &eager(&a, &b), true);
    }
    let pow = g.enter(|| on_gpu(&g, np::power(&a, &b)));
    check_f64("power", &pow, &cpu::power(&a, &b), false);
    for s in [0.0, -2.5, 3.0] {
        let (x, y, z, w) = g.enter(|| {
            (
                on_gpu(&g, np::add_scalar(&a, s)),
                on_gpu(&g, np::scalar_subtract(s, &a)),
                on_gpu(&g, np::scalar_divide(s, &a)),
                on_gpu(&g, np::power_scalar(&a, s)),
            )
        });
        check_f64("add_scalar", &x, &cpu::add_scalar(&a, s), true);
        check_f64("scalar_subtract", &y, &cpu::scalar_subtract(s, &a), true);
        check_f64("scalar_divide", &z, &cpu::scalar_divide(s, &a), true);
        check_f64("power_scalar", &w, &cpu::power_scalar(&a, s), false);
    }
    // Comparisons and selections.
    let (gt, sel, masked) = g.enter(|| {
        let c = np::greater(&a, &b);
        (
            on_gpu(&g, c.clone()),
            on_gpu(&g, np::where_(&c, &a, &b)),
            on_gpu(&g, np::mask(&a, &np::less_scalar(&a, 0.0), 7.0)),
        )
    });
    assert_eq!(gt, cpu::greater(&a, &b));
    check_f64(
        "where",
        &sel,
        &cpu::where_(&cpu::greater(&a, &b), &a, &b),
        true,
    );
    check_f64(
        "mask",
        &masked,
        &cpu::mask(&a, &cpu::less_scalar(&a, 0.0), 7.0),
        true,
    );
    // Reductions over finite data (partials are combined in another order).
    let f = uniform(n, -1.0, 1.0, 3);
    let (s, mn, mx) = g.enter(|| {
        (
            on_gpu(&g, np::sum(&f)),
            on_gpu(&g, np::min(&f)),
            on_gpu(&g, np::max(&f)),
        )
    });
    assert!((s - cpu::sum(&f)).abs() <= 1e-12 * f.iter().map(|x| x.abs()).sum::<f64>());
    assert_eq!((mn, mx), (cpu::min(&f), cpu::max(&f)));
}

#[test]
fn f32_ops_match_the_cpu_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let g = gpu_graph(&dev);
    let a: Array1<f32> = edgy(50_001, 4).mapv(|x| x as f32);
    let b: Array1<f32> = edgy(50_001, 5).mapv(|x| x as f32);
    let cases: [(&str, bool); 5] = [
        ("add", true),
        ("multiply", true),
        ("sqrt", true),
        ("exp", false),
        ("erf", false),
    ];
    for (name, exact) in cases {
        let (got, want) = match name {
            "add" => (g.enter(|| on_gpu(&g, np::add(&a, &b))), cpu::add(&a, &b)),
            "multiply" => (
                g.enter(|| on_gpu(&g, np::multiply(&a, &b))),
                cpu::multiply(&a, &b),
            ),
            "sqrt" => (g.enter(|| on_gpu(&g, np::sqrt(&a))), cpu::sqrt(&a)),
            "exp" => (g.enter(|| on_gpu(&g, np::exp(&a))), cpu::exp(&a)),
            _ => (g.enter(|| on_gpu(&g, np::erf(&a))), cpu::erf(&a)),
        };
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert!(
                agree32(*x, *y, exact),
                "{name}[{i}]: gpu {x:e} vs cpu {y:e}"
            );
        }
    }
}

#[test]
fn workloads_on_the_gpu_match_the_cpu_including_paging() {
    let Some(dev) = gpu() else { return };
    let n = 1 << 22;
    let x: Vec<Array1<f64>> = (0..5).map(|i| uniform(n, 1.0, 100.0, 10 + i)).collect();
    let (call_ref, put_ref) = workloads::cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
    // In memory, then with a budget of 1/8 of the data (paging).
    for budget in [None, Some(7 * 8 * n / 8)] {
        let g = Graph::with_config(Config {
            device: DevicePolicy::Device,
            device_memory: budget,
            ..Config::default()
        });
        g.set_device(Some(dev.clone()));
        let (call, put) = g
            .enter(|| {
                evaluate(workloads::bach::blackscholes(
                    &x[0], &x[1], &x[2], &x[3], &x[4],
                ))
            })
            .unwrap();
        for (got, want) in [(&call, &call_ref), (&put, &put_ref)] {
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "budget {budget:?}, [{i}]: {a} vs {b}"
                );
            }
        }
        assert!(g
            .last_run()
            .unwrap()
            .stages
            .iter()
            .all(|s| s.placement == Placement::Device));
    }
}

#[test]
fn pipelined_batches_and_values_kept_on_the_gpu_match_the_cpu() {
    let Some(dev) = gpu() else { return };
    // sq = a * a stays on the GPU between the sum and the subtraction; with a
    // budget, the stages page in many pipelined batches.
    let n = 1 << 23;
    let a = uniform(n, -1.0, 1.0, 21);
    let sq = cpu::multiply(&a, &a);
    let z_ref = cpu::subtract_scalar(&sq, cpu::sum(&sq));
    for budget in [None, Some(64 << 20)] {
        let g = Graph::with_config(Config {
            device: DevicePolicy::Device,
            device_memory: budget,
            ..Config::default()
        });
        g.set_device(Some(dev.clone()));
        let before = bach_runtime::Device::stats(&*dev);
        let (z, e) = g.enter(|| {
            let sq = np::multiply(&a, &a);
            let s = np::sum(&sq);
            let z = np::subtract_scalar(&sq, s);
            let e = g.explain(&z).unwrap();
            (evaluate(z).unwrap(), e)
        });
        eprintln!("budget {budget:?}:\n{e}");
        let err = z
            .iter()
            .zip(&z_ref)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(err <= 1e-9 * n as f64, "budget {budget:?}: {err}\n{e}");
        let after = bach_runtime::Device::stats(&*dev);
        if e.stages[0].kept_on_device == 1 {
            assert_eq!(
                after.upload_bytes - before.upload_bytes,
                8 * n as u64,
                "only `a` crosses the link up\n{e}"
            );
        }
        if budget.is_some() {
            assert!(e.stages[0].cost.batches > 1, "{e}");
        }
    }
}
