//! `gpu = "..."` without `gpu_source`: the kernel source is the `BACH_KERNELS`
//! constant in scope where the function is, declared or imported.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

/// The CUDA source of this module's `gpu` kernels.
const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "k.cu",
    code: "",
};

/// Adds two arrays.
#[offload(split = NdArraySplit, gpu = "add")]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

/// A submodule that imports the constant, as a library's `ops` module would.
mod ops {
    use super::BACH_KERNELS;
    use bach_runtime::{offload, NdArraySplit};
    use ndarray::Array1;

    /// Negates an array.
    #[offload(split = NdArraySplit, gpu = "neg")]
    pub fn neg(a: &Array1<f64>) -> Array1<f64> {
        -a
    }
}

/// A function without `gpu` needs no kernel source.
mod cpu_only {
    use bach_runtime::{offload, NdArraySplit};
    use ndarray::Array1;

    /// Doubles an array.
    #[offload(split = NdArraySplit)]
    pub fn double(a: &Array1<f64>) -> Array1<f64> {
        a * 2.0
    }
}

fn main() {
    assert_eq!(BACH_KERNELS.name, "k.cu");
    let x = array![1.0, 2.0, 3.0];
    let y = cpu_only::double(ops::neg(add(&x, &x)));
    assert_eq!(evaluate(y).unwrap(), array![-4.0, -8.0, -12.0]);
}
