//! An array and a scalar: the scalar is broadcast to every batch.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit, SumSplit};
use ndarray::{array, Array1};

/// Multiplies by a scalar.
#[offload(split = NdArraySplit)]
pub fn scale(a: &Array1<f64>, s: f64) -> Array1<f64> {
    a * s
}

/// Sums, merging the partial sums of the batches.
#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn sum(a: &Array1<f64>) -> f64 {
    a.sum()
}

/// Adds a scalar, with an explicit split type for it.
#[offload(split(a = NdArraySplit, s = bach_runtime::Broadcast), ret = NdArraySplit)]
pub fn shift(a: &Array1<f64>, s: f64) -> Array1<f64> {
    a + s
}

fn main() {
    let x = array![1.0, 2.0, 3.0];
    let doubled = scale(&x, 2.0);
    let total = sum(&doubled);
    // A lazy scalar is an argument too.
    let shifted = shift(&x, &total);
    let (doubled, total, shifted) = evaluate((doubled, total, shifted)).unwrap();
    assert_eq!(doubled, array![2.0, 4.0, 6.0]);
    assert_eq!(total, 12.0);
    assert_eq!(shifted, array![13.0, 14.0, 15.0]);
    assert_eq!(scale::cpu(&x, 3.0), array![3.0, 6.0, 9.0]);
}
