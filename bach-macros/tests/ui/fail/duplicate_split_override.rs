use bach_runtime::{offload, NdArraySplit};
use ndarray::Array1;

#[offload(split(a = NdArraySplit, a = NdArraySplit))]
pub fn f(a: &Array1<f64>) -> Array1<f64> {
    a.clone()
}

fn main() {}
