//! `wraps` a function whose name a parameter shadows: the call still reaches the function.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

fn sq(a: &Array1<f64>) -> Array1<f64> {
    a * a
}

/// Squares.
#[offload(split = NdArraySplit, wraps = sq)]
pub fn square(sq: &Array1<f64>) -> Array1<f64>;

fn main() {
    let x = array![1.0, 2.0, 3.0];
    assert_eq!(evaluate(square(&x)).unwrap(), array![1.0, 4.0, 9.0]);
    assert_eq!(square::cpu(&x), array![1.0, 4.0, 9.0]);
}
