use bach_runtime::offload;
use ndarray::Array1;

// A `Result` alias hides the error type: the macro reads only the syntax.
#[offload(split = bach_runtime::NdArraySplit)]
pub fn read_scale(a: &Array1<f64>, path: String) -> std::io::Result<Array1<f64>> {
    let scale: f64 = std::fs::read_to_string(path)?.trim().parse().unwrap_or(1.0);
    Ok(a * scale)
}

#[offload(split = bach_runtime::NdArraySplit)]
pub fn check(a: &Array1<f64>) -> std::fmt::Result {
    let _ = a;
    Ok(())
}

fn main() {}
