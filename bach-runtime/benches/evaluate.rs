//! Fixed cost of one evaluation of the Black-Scholes graph (31 calls) on tiny
//! inputs, where the arithmetic is negligible: recording, planning (or a
//! cached plan), scheduling, running and teardown, against the eager CPU
//! functions on the same data.
//!
//! `cargo bench -p bach-runtime --bench evaluate`
//! (target: at most 5 us per evaluation at 2^4 elements)
//!
//! The `record` group times recording the same 31 calls and dropping the
//! handles, through the NumPy-style functions and through the lazy ndarray
//! operators and methods (target: operators cost no more per call).

use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{bach, cpu, ndarray_bach};
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array1;

fn inputs(n: usize) -> Vec<Array1<f64>> {
    (0..5)
        .map(|i| Array1::from_shape_fn(n, |k| 1.0 + i as f64 + (k % 7) as f64 * 0.1))
        .collect()
}

fn evaluate(c: &mut Criterion) {
    let mut g = c.benchmark_group("evaluate");
    for log2 in [4usize, 10] {
        let x = inputs(1 << log2);
        g.bench_function(format!("blackscholes_bach_2^{log2}"), |b| {
            b.iter(|| {
                let (call, put) = bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
                criterion::black_box(bach_runtime::evaluate((call, put)).unwrap())
            })
        });
        g.bench_function(format!("blackscholes_cpu_2^{log2}"), |b| {
            b.iter(|| criterion::black_box(cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4])))
        });
    }
    g.finish();
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    let x = inputs(16);
    g.bench_function("blackscholes_functions", |b| {
        b.iter(|| criterion::black_box(bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4])))
    });
    g.bench_function("blackscholes_operators", |b| {
        b.iter(|| {
            let [p, s, t, r, v] = [0, 1, 2, 3, 4].map(|i| LazyArray::from(&x[i]));
            criterion::black_box(ndarray_bach::blackscholes(&p, &s, &t, &r, &v))
        })
    });
    g.bench_function("blackscholes_operators_evaluate_2^4", |b| {
        b.iter(|| {
            let [p, s, t, r, v] = [0, 1, 2, 3, 4].map(|i| LazyArray::from(&x[i]));
            let out = ndarray_bach::blackscholes(&p, &s, &t, &r, &v);
            criterion::black_box(bach_runtime::evaluate(out).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, evaluate, record);
criterion_main!(benches);
