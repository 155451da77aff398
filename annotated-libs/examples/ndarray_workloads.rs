//! The user story: ndarray code, made lazy by swapping one `use` line.
//!
//! `cargo run --release -p annotated-libs --example ndarray_workloads [log2 of the size]`
//!
//! Black-Scholes is written once in idiomatic ndarray style
//! (`annotated-libs/src/workloads/ndarray/blackscholes.rs`) and compiled twice:
//! against plain ndarray (`workloads::ndarray_cpu`) and against the lazy arrays of
//! `annotated_libs::ndarray` (`workloads::ndarray_bach`). The inputs enter the lazy
//! version once, borrowed (nothing is copied), and `evaluate` returns ndarray arrays.

use std::time::Instant;

use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{ndarray_bach, ndarray_cpu};
use ndarray::Array1;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log2: u32 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| format!("size `{arg}`: {e}"))?,
        None => 22,
    };
    let n = 1usize << log2;
    // Option parameters in realistic ranges (a simple deterministic generator).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = |lo: f64, hi: f64| -> Array1<f64> {
        Array1::from_shape_fn(n, |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lo + (hi - lo) * ((state >> 11) as f64 / (1u64 << 53) as f64)
        })
    };
    let (price, strike, t) = (uniform(10.0, 50.0), uniform(10.0, 50.0), uniform(0.1, 2.0));
    let (rate, vol) = (uniform(0.01, 0.05), uniform(0.05, 0.5));

    // Plain ndarray: every operator and method allocates and fills a new array.
    let t0 = Instant::now();
    let (call, put) = ndarray_cpu::blackscholes(&price, &strike, &t, &rate, &vol);
    let eager = t0.elapsed();

    // The same source on lazy arrays: recorded, then planned and run by evaluate.
    let t0 = Instant::now();
    let lazy = ndarray_bach::blackscholes(
        &LazyArray::from(&price),
        &LazyArray::from(&strike),
        &LazyArray::from(&t),
        &LazyArray::from(&rate),
        &LazyArray::from(&vol),
    );
    let (lazy_call, lazy_put) = bach_runtime::evaluate(lazy)?;
    let bach = t0.elapsed();

    let identical = lazy_call == call && lazy_put == put;
    println!("Black-Scholes on 2^{log2} options");
    println!("  ndarray (eager):  {:>9.3} ms", eager.as_secs_f64() * 1e3);
    println!("  bach (lazy):      {:>9.3} ms", bach.as_secs_f64() * 1e3);
    println!("  results identical: {identical}");
    println!(
        "  first call price: {:.6}, put price: {:.6}",
        lazy_call[0], lazy_put[0]
    );
    if let Some(run) = bach_runtime::Graph::current().last_run() {
        println!("\nWhat bach did:\n{run}");
    }
    if !identical {
        return Err("the lazy results differ from ndarray's".into());
    }
    Ok(())
}
