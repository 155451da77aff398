#![allow(clippy::needless_borrows_for_generic_args)]
use bach_runtime::{evaluate, offload, Broadcast, NdArraySplit, SumSplit};
use ndarray::{array, Array1};

#[offload(split = NdArraySplit)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

#[offload(split = NdArraySplit)]
pub fn scale(a: &Array1<f64>, s: f64) -> Array1<f64> {
    a * s
}

#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn sum(a: &Array1<f64>) -> f64 {
    a.sum()
}

#[test]
fn smoke() {
    let x = array![1.0, 2.0, 3.0];
    let y = array![10.0, 20.0, 30.0];
    let s = add(&x, &y);
    let t = scale(&s, 2.0);
    let total = sum(&t);
    let u = scale(&x, &total);
    let (t, total, u) = evaluate((&t, total, u)).unwrap();
    assert_eq!(t, array![22.0, 44.0, 66.0]);
    assert_eq!(total, 132.0);
    assert_eq!(u, array![132.0, 264.0, 396.0]);
    let _ = Broadcast;
}
