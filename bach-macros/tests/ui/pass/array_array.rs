//! Two array parameters, split along their first axis.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

/// The CUDA source of the `gpu` kernels, found by name.
const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "k.cu",
    code: "",
};

/// Adds two arrays.
#[offload(split = NdArraySplit, gpu = "add")]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

fn main() {
    let x = array![1.0, 2.0, 3.0];
    let y = array![10.0, 20.0, 30.0];
    // References, lazy handles and owned values are all arguments.
    let s = add(&x, &y);
    let t = add(&s, y.clone());
    let u = add(s, t);
    assert_eq!(evaluate(u).unwrap(), array![32.0, 64.0, 96.0]);
    // The eager CPU version.
    assert_eq!(add::cpu(&x, &y), array![11.0, 22.0, 33.0]);
}
