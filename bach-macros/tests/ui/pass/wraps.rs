//! `wraps`: annotating functions one does not own, as bodyless declarations.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

/// The CUDA source of the `gpu` kernels, found by name.
const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "k.cu",
    code: "",
};

/// A library that knows nothing of Bach.
mod library {
    use ndarray::Array1;

    pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
        a + b
    }

    pub fn axpy<T: Copy + std::ops::Mul<Output = T> + std::ops::Add<Output = T>>(
        a: T,
        x: &Array1<T>,
        y: &Array1<T>,
    ) -> Array1<T> {
        ndarray::Zip::from(x).and(y).map_collect(|&x, &y| a * x + y)
    }
}

/// Adds two arrays.
#[offload(split = NdArraySplit, gpu = "add", wraps = library::add)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64>;

/// `a * x + y`; generics are inferred.
#[offload(split = NdArraySplit, wraps = library::axpy)]
pub fn axpy<
    T: Copy + Send + Sync + 'static + std::ops::Mul<Output = T> + std::ops::Add<Output = T>,
>(
    a: T,
    x: &Array1<T>,
    y: &Array1<T>,
) -> Array1<T>;

/// An array of `n` zeros: `Array1::zeros` itself.
#[offload(alloc, split = NdArraySplit, wraps = Array1::zeros)]
pub fn zeros(n: usize) -> Array1<f64>;

fn main() {
    let x = array![1.0, 2.0, 3.0];
    let y = array![10.0, 20.0, 30.0];
    let s = add(&x, &y);
    let t = axpy(2.0, &s, zeros(3));
    assert_eq!(evaluate(t).unwrap(), array![22.0, 44.0, 66.0]);
    assert_eq!(axpy::cpu(2, &array![1, 2], &array![1, 1]), array![3, 5]);
}
