use bach_runtime::offload;
use ndarray::Array1;

#[offload(alloc, split = bach_runtime::NdArraySplit)]
pub fn empty() -> Array1<f64> {
    Array1::zeros(0)
}

fn main() {}
