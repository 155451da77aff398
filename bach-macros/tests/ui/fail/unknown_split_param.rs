use bach_runtime::offload;
use ndarray::Array1;

#[offload(split(a = bach_runtime::NdArraySplit, c = bach_runtime::NdArraySplit))]
pub fn f(a: &Array1<f64>, b: f64) -> Array1<f64> {
    a * b
}

fn main() {}
