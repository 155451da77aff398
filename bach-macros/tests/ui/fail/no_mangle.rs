use bach_runtime::offload;
use ndarray::Array1;

#[offload(split = bach_runtime::NdArraySplit)]
#[no_mangle]
pub fn twice(a: &Array1<f64>) -> Array1<f64> {
    a * 2.0
}

fn main() {}
