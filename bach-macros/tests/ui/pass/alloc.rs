//! Allocation functions: the size is split with `SizeSplit` by default.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

/// An array of `n` zeros.
#[offload(alloc, split = NdArraySplit)]
pub fn zeros(n: usize) -> Array1<f64> {
    Array1::zeros(n)
}

/// An array of `n` copies of `value`.
#[offload(alloc, split = NdArraySplit)]
pub fn full(n: usize, value: f64) -> Array1<f64> {
    Array1::from_elem(n, value)
}

/// Adds two arrays.
#[offload(split = NdArraySplit)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

fn main() {
    let x = array![1.0, 2.0, 3.0];
    let sum = add(zeros(3), &x);
    let twos = full(3, 2.0);
    let (sum, twos) = evaluate((sum, twos)).unwrap();
    assert_eq!(sum, x);
    assert_eq!(twos, array![2.0, 2.0, 2.0]);
    assert_eq!(zeros::cpu(2), array![0.0, 0.0]);
}
