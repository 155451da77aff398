use bach_runtime::offload;
use ndarray::Array1;

const SRC: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "k.cu",
    code: "",
};

#[offload(split = bach_runtime::NdArraySplit, gpu_source = SRC)]
pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a + b
}

fn main() {}
