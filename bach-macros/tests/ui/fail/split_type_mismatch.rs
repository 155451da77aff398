use bach_runtime::{offload, NdArraySplit, SizeSplit};
use ndarray::Array1;

// `NdArraySplit` cannot split a `Vec`; `SizeSplit` cannot split an `f64`.
#[offload(split = NdArraySplit, split(s = SizeSplit))]
pub fn scale(a: &Vec<f64>, s: f64) -> Array1<f64> {
    a.iter().map(|x| x * s).collect()
}

fn main() {}
