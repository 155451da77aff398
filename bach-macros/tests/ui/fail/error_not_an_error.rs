use bach_runtime::{offload, NdArraySplit};
use ndarray::Array1;

// The error type must be a `std::error::Error + Send + Sync + 'static`: a
// `String` is not one. The error points at it.
#[offload(split = NdArraySplit)]
pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, String> {
    Ok(a.mapv(f64::sqrt))
}

fn main() {}
