use bach_runtime::offload;
use ndarray::Array1;

// No `BACH_KERNELS` in scope, and no `gpu_source`.
#[offload(split = bach_runtime::NdArraySplit, gpu = "add")]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

fn main() {}
