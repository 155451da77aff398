//! `gpu_source = path`: the kernel source is named explicitly (a `const` or a
//! `static`), and no `BACH_KERNELS` is needed.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, NdArraySplit};
use ndarray::{array, Array1};

mod other {
    /// A kernel source under another name.
    pub const SRC: bach_runtime::KernelSource = bach_runtime::KernelSource {
        name: "other.cu",
        code: "extern \"C\" __global__ void add_f64(unsigned long n, const double* a, const double* b, double* out) {}",
    };

    /// A kernel source in a `static`.
    pub static STATIC_SRC: bach_runtime::KernelSource = bach_runtime::KernelSource {
        name: "static.cu",
        code: "",
    };
}

/// Adds two arrays.
#[offload(split = NdArraySplit, gpu = "add", gpu_source = other::SRC)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

/// Subtracts two arrays; the option may come before `gpu`.
#[offload(gpu_source = other::STATIC_SRC, split = NdArraySplit, gpu = "sub")]
pub fn sub(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a - b
}

fn main() {
    let x = array![1.0, 2.0, 3.0];
    let y = array![10.0, 20.0, 30.0];
    let s = sub(add(&x, &y), &x);
    assert_eq!(evaluate(s).unwrap(), y);
}
