//! Generic functions: the stub is generic too, and the CPU call names the type
//! parameters explicitly.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};
use std::ops::Add;

/// Adds two arrays of any element type.
#[offload(split = NdArraySplit)]
pub fn add<T>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>
where
    T: Copy + Add<Output = T> + Send + Sync + 'static,
{
    ndarray::Zip::from(a).and(b).map_collect(|&a, &b| a + b)
}

/// Converts element types; `U` appears only in the return type.
#[offload(split = NdArraySplit)]
pub fn cast<T: Copy + Into<U> + Send + Sync + 'static, U: Clone + Send + Sync + 'static>(
    a: &Array1<T>,
) -> Array1<U> {
    a.mapv(Into::into)
}

fn main() {
    let (i, j) = (array![1_i32, 2], array![3, 4]);
    let (halves, ones) = (array![0.5_f32, 1.5], array![1.0_f64, 1.0]);
    let ints = add(&i, &j);
    let floats = cast::<f32, f64>(&halves);
    let sum = add(floats, &ones);
    let (ints, sum) = evaluate((ints, sum)).unwrap();
    assert_eq!(ints, array![4, 6]);
    assert_eq!(sum, array![1.5, 2.5]);
}
