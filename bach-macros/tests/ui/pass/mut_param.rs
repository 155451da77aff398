//! `&mut` parameters: the stub takes `&mut Lazy<T>` and points it at the new value.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, Lazy, NdArraySplit};
use ndarray::{array, Array1};

/// `a += b`.
#[offload(split = NdArraySplit)]
pub fn add_assign(a: &mut Array1<f64>, b: &Array1<f64>) {
    *a += b;
}

/// Scales `a` in place and returns its sum before scaling.
#[offload(split = NdArraySplit, ret = bach_runtime::SumSplit)]
pub fn scale_in_place(a: &mut Array1<f64>, s: f64, b: &mut Array1<f64>) -> f64 {
    let before = a.sum();
    *a *= s;
    *b *= s;
    before
}

fn main() {
    let b = array![10.0, 20.0, 30.0];
    let mut a = Lazy::new(array![1.0, 2.0, 3.0]);
    let mut c = Lazy::new(array![1.0, 1.0, 1.0]);
    add_assign(&mut a, &b);
    let before = scale_in_place(&mut a, 2.0, &mut c);
    let (a, before, c) = evaluate((a, before, c)).unwrap();
    assert_eq!(a, array![22.0, 44.0, 66.0]);
    assert_eq!(before, 66.0);
    assert_eq!(c, array![2.0, 2.0, 2.0]);

    let mut eager = array![1.0, 2.0];
    add_assign::cpu(&mut eager, &array![1.0, 1.0]);
    assert_eq!(eager, array![2.0, 3.0]);
}
