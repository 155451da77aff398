use bach_runtime::offload;
use ndarray::Array1;

#[offload(split = bach_runtime::NdArraySplit)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64>;

fn main() {
    // The declaration is re-emitted with a body: its uses still type-check.
    let _: Array1<f64> = add(&Array1::zeros(1), &Array1::zeros(1));
}
