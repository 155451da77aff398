//! The fixed cost of one evaluation: the Black-Scholes graph (31 calls) on
//! 16-element inputs, evaluated again and again (the plan is reused after the
//! first). Prints microseconds per evaluation; under
//! `valgrind --tool=callgrind` it counts the instructions each step costs,
//! which stay the same on a busy machine.
//!
//! `cargo run --release -p bach-runtime --example fixed_cost -- 50000`

use annotated_libs::workloads::bach;
use ndarray::Array1;

fn main() {
    let x: Vec<Array1<f64>> = (0..5)
        .map(|i| Array1::from_elem(16, 1.0 + i as f64))
        .collect();
    let n: usize = match std::env::args().nth(1) {
        Some(s) => s.parse().expect("the number of evaluations"),
        None => 20_000,
    };
    let started = std::time::Instant::now();
    for _ in 0..n {
        let (call, put) = bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
        std::hint::black_box(bach_runtime::evaluate((call, put)).expect("evaluates"));
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{us:.2} us per evaluation ({n} evaluations)");
}
