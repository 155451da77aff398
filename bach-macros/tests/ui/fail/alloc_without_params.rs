use bach_runtime::{offload, NdArraySplit};
use ndarray::Array1;

#[offload(alloc, split = NdArraySplit)]
pub fn empty() -> Array1<f64> {
    Array1::zeros(0)
}

fn main() {}
