//! Cost of recording calls in the graph (target: under 2 microseconds per call).
//!
//! `cargo bench -p bach-runtime --bench record`

use annotated_libs::workloads::bach;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::Array1;

fn record(c: &mut Criterion) {
    let x: Vec<Array1<f64>> = (0..5)
        .map(|i| Array1::from_elem(1024, 1.0 + i as f64))
        .collect();
    let mut g = c.benchmark_group("record");
    // Black-Scholes records 31 calls; report per-call throughput.
    g.throughput(Throughput::Elements(31));
    g.bench_function("blackscholes_graph", |b| {
        b.iter(|| {
            let (call, put) = bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
            // Dropping the handles frees the graph (without running it); part of the cost.
            criterion::black_box((call, put))
        })
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
