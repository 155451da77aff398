use bach_runtime::offload;
use ndarray::Array1;

#[offload(gpu = "add")]
pub fn add(a: &Array1<f64>, b: &Array1<f64>, scale: f64) -> Array1<f64> {
    (a + b) * scale
}

fn main() {}
