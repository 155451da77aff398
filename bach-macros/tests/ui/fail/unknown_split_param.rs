use bach_runtime::{offload, NdArraySplit};
use ndarray::Array1;

#[offload(split(a = NdArraySplit, c = NdArraySplit))]
pub fn f(a: &Array1<f64>, b: f64) -> Array1<f64> {
    a * b
}

fn main() {}
