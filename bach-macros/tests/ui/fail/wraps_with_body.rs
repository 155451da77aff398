use bach_runtime::offload;
use ndarray::Array1;

fn library_add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

#[offload(split = bach_runtime::NdArraySplit, wraps = library_add)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

fn main() {}
