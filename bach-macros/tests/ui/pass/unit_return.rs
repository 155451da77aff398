//! Functions that return nothing: the stub returns `Lazy<()>`.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, Lazy, NdArraySplit};
use ndarray::{array, Array1};

/// Fills with a value.
#[offload(split = NdArraySplit)]
pub fn fill(a: &mut Array1<f64>, value: f64) {
    a.fill(value);
}

/// Checks a whole array at once.
#[offload(split = NdArraySplit, unsplittable)]
pub fn check_sorted(a: &Array1<f64>) {
    assert!(a.windows(2).into_iter().all(|w| w[0] <= w[1]));
}

fn main() {
    let mut a = Lazy::new(array![3.0, 1.0]);
    let done: Lazy<()> = fill(&mut a, 7.0);
    let checked = check_sorted(&a);
    let ((), (), a) = evaluate((done, checked, a)).unwrap();
    assert_eq!(a, array![7.0, 7.0]);
}
