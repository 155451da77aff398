//! Cached plans: evaluating the same shape of graph again reuses its plan and
//! schedule, and a reused plan gives exactly what a fresh one gives; any change
//! of shape (element counts, how values are shared, which values are already
//! computed, the settings, the device) makes a new plan.
//! Also: a device that fails (not out of memory) under `auto` hands the stage
//! to the CPU, and under a forced device the error stands.

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::numpy as np;
use annotated_libs::workloads;
use bach_runtime::{Config, DevicePolicy, Error, Graph, Lazy, Placement};
use ndarray::Array1;

mod common;
use common::{bits, fast_device, uniform};

fn cpu_graph() -> Graph {
    Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        batch_size: Some(1000),
        ..Config::default()
    })
}

/// `sqrt(a * b) + a`, summed: one partitioned stage and a reduction.
fn program<'a>(a: &'a Array1<f64>, b: &'a Array1<f64>) -> (Lazy<'a, Array1<f64>>, Lazy<'a, f64>) {
    let r = np::add(np::sqrt(np::multiply(a, b)), a);
    let s = np::sum(&r);
    (r, s)
}

fn eager(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    cpu::add(&cpu::sqrt(&cpu::multiply(a, b)), a)
}

#[test]
fn the_same_shape_reuses_its_plan_and_gives_the_same_results_on_new_data() {
    let g = cpu_graph();
    for (round, seed) in [1u64, 2, 3].into_iter().enumerate() {
        let a = uniform(5000, 0.0, 10.0, seed);
        let b = uniform(5000, 0.0, 10.0, seed + 100);
        let (r, s) = g.enter(|| g.evaluate(program(&a, &b))).unwrap();
        assert_eq!(bits(&r), bits(&eager(&a, &b)), "round {round}");
        assert!((s - r.sum()).abs() <= 1e-9 * r.sum().abs());
        let last = g.last_run().unwrap();
        assert_eq!(last.reused_plan, round > 0, "round {round}: {last}");
    }
}

#[test]
fn other_element_counts_make_a_new_plan() {
    let g = cpu_graph();
    for (n, reused) in [(3000, false), (3000, true), (4000, false), (3000, true)] {
        let a = uniform(n, 0.0, 10.0, n as u64);
        let b = uniform(n, 0.0, 10.0, 7);
        let (r, _) = g.enter(|| g.evaluate(program(&a, &b))).unwrap();
        assert_eq!(bits(&r), bits(&eager(&a, &b)));
        let last = g.last_run().unwrap();
        assert_eq!(last.reused_plan, reused, "n = {n}: {last}");
        assert_eq!(last.stages[0].elements, Some(n));
    }
}

#[test]
fn sharing_a_value_or_passing_two_is_a_different_shape() {
    // f(x, x) and f(x, y) record the same calls, but one reads one value
    // twice: a plan made for one must not run the other.
    let g = cpu_graph();
    let x = uniform(2500, 0.0, 4.0, 1);
    let y = uniform(2500, 0.0, 4.0, 2);
    for _ in 0..2 {
        let (same, _) = g.enter(|| g.evaluate(program(&x, &x))).unwrap();
        assert_eq!(bits(&same), bits(&eager(&x, &x)));
        let (two, _) = g.enter(|| g.evaluate(program(&x, &y))).unwrap();
        assert_eq!(bits(&two), bits(&eager(&x, &y)));
    }
}

#[test]
fn an_input_computed_earlier_is_a_different_shape_than_a_pending_one() {
    let g = cpu_graph();
    let a = uniform(3000, 0.0, 4.0, 5);
    let b = uniform(3000, 0.0, 4.0, 6);
    g.enter(|| {
        let ab = np::multiply(&a, &b);
        let first = g.evaluate(np::add(np::sqrt(&ab), &a)).unwrap();
        // `ab` is now computed: the same calls on top of it plan without it.
        let again = g.evaluate(np::add(np::sqrt(&ab), &a)).unwrap();
        assert_eq!(bits(&first), bits(&again));
        assert_eq!(bits(&first), bits(&eager(&a, &b)));
        let pending = np::multiply(&a, &b);
        let third = g.evaluate(np::add(np::sqrt(&pending), &a)).unwrap();
        assert_eq!(bits(&first), bits(&third));
    });
}

#[test]
fn new_settings_make_a_new_plan() {
    let g = cpu_graph();
    let a = uniform(5000, 0.0, 4.0, 8);
    let b = uniform(5000, 0.0, 4.0, 9);
    g.enter(|| g.evaluate(program(&a, &b))).unwrap();
    assert_eq!(g.last_run().unwrap().stages[0].batch_size, Some(1000));
    g.set_config(Config {
        batch_size: Some(700),
        ..g.config()
    });
    let (r, _) = g.enter(|| g.evaluate(program(&a, &b))).unwrap();
    assert_eq!(bits(&r), bits(&eager(&a, &b)));
    let last = g.last_run().unwrap();
    assert!(!last.reused_plan, "{last}");
    assert_eq!(last.stages[0].batch_size, Some(700));
}

#[test]
fn explain_and_evaluate_share_the_cache() {
    let g = cpu_graph();
    let a = uniform(2000, 0.0, 4.0, 10);
    let b = uniform(2000, 0.0, 4.0, 11);
    g.enter(|| {
        let e = g.explain(&program(&a, &b)).unwrap();
        assert!(!e.reused_plan);
        g.evaluate(program(&a, &b)).unwrap();
        assert!(g.last_run().unwrap().reused_plan);
    });
}

#[test]
fn workloads_in_a_loop_stay_exact_with_a_reused_plan() {
    let g = cpu_graph();
    for seed in 0..4 {
        let x: Vec<Array1<f64>> = (0..5)
            .map(|i| uniform(1 << 12, 1.0, 100.0, seed * 10 + i))
            .collect();
        let (call, put) = g
            .enter(|| {
                g.evaluate(workloads::bach::blackscholes(
                    &x[0], &x[1], &x[2], &x[3], &x[4],
                ))
            })
            .unwrap();
        let (c, p) = workloads::cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
        assert_eq!(bits(&call), bits(&c));
        assert_eq!(bits(&put), bits(&p));
        assert_eq!(g.last_run().unwrap().reused_plan, seed > 0);
    }
}

#[test]
fn a_failing_device_stage_runs_on_the_cpu_under_auto_and_says_why() {
    let g = Graph::with_config(Config::default()); // Auto
    g.set_device(Some(fast_device(Some("sqrt_f64"))));
    let a = uniform(1 << 16, 0.0, 4.0, 12);
    let b = uniform(1 << 16, 0.0, 4.0, 13);
    let planned = g.enter(|| g.explain(&program(&a, &b))).unwrap();
    assert_eq!(planned.stages[0].placement, Placement::Device, "{planned}");
    let (r, s) = g.enter(|| g.evaluate(program(&a, &b))).unwrap();
    assert_eq!(bits(&r), bits(&eager(&a, &b)));
    assert!((s - r.sum()).abs() <= 1e-9 * r.sum().abs());
    let last = g.last_run().unwrap();
    assert_eq!(last.stages[0].placement, Placement::Cpu, "{last}");
    assert!(
        last.stages[0].reason.contains("device error")
            && last.stages[0].reason.contains("sqrt_f64"),
        "{last}"
    );
}

#[test]
fn a_failing_device_stage_is_an_error_when_the_device_is_forced() {
    let g = Graph::with_config(Config {
        device: DevicePolicy::Device,
        ..Config::default()
    });
    g.set_device(Some(fast_device(Some("sqrt_f64"))));
    let a = uniform(4096, 0.0, 4.0, 14);
    let b = uniform(4096, 0.0, 4.0, 15);
    let err = g.enter(|| g.evaluate(program(&a, &b))).unwrap_err();
    assert!(
        matches!(&err, Error::Device(m) if m.contains("sqrt_f64")),
        "{err}"
    );
}

#[test]
fn many_distinct_inputs_and_one_read_many_times() {
    // Past the planner's linear search of externals (32 values): 40 arrays,
    // the first of them read by every call.
    let g = cpu_graph();
    let xs: Vec<Array1<f64>> = (0..40).map(|i| uniform(1500, -1.0, 1.0, 40 + i)).collect();
    for _ in 0..2 {
        let total = g
            .enter(|| {
                let mut acc = np::add(&xs[0], &xs[1]);
                for x in &xs[2..] {
                    acc = np::add(np::add(&acc, x), &xs[0]);
                }
                g.evaluate(acc)
            })
            .unwrap();
        let mut want = cpu::add(&xs[0], &xs[1]);
        for x in &xs[2..] {
            want = cpu::add(&cpu::add(&want, x), &xs[0]);
        }
        assert_eq!(bits(&total), bits(&want));
    }
}
