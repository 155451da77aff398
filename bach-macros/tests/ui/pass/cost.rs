//! `cost = LIT`: the annotator's estimate of the CPU cost, nanoseconds per
//! element, recorded in the function's `OpInfo` instead of a calibration.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

/// The CUDA source of this module's `gpu` kernels.
const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "k.cu",
    code: "",
};

/// Adds two arrays: a float estimate, beside a kernel.
#[offload(split = NdArraySplit, gpu = "add", cost = 2.5)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

/// Doubles an array: an integer estimate.
#[offload(cost = 3, split = NdArraySplit)]
pub fn double(a: &Array1<f64>) -> Array1<f64> {
    a * 2.0
}

fn main() {
    let x = array![1.0, 2.0, 3.0];
    let y = double(add(&x, &x));
    assert_eq!(evaluate(y).unwrap(), array![4.0, 8.0, 12.0]);
}
