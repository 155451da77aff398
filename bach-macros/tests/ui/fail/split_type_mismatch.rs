use bach_runtime::{offload, NdArraySplit};
use ndarray::Array1;

// `NdArraySplit` splits ndarray arrays: neither a `Vec` nor an `f64`. The errors
// point at the split type that does not fit, default or override.
#[offload(split = NdArraySplit, split(s = NdArraySplit))]
pub fn scale(a: &Vec<f64>, s: f64) -> Array1<f64> {
    a.iter().map(|x| x * s).collect()
}

fn main() {}
