use bach_runtime::{offload, KernelSource};
use ndarray::Array1;

const BACH_KERNELS: KernelSource = KernelSource { name: "k.cu", code: "" };

#[derive(Debug)]
pub struct Negative;

impl std::fmt::Display for Negative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("negative")
    }
}

impl std::error::Error for Negative {}

// A kernel cannot report the function's error.
#[offload(split = bach_runtime::NdArraySplit, gpu = "sqrt")]
pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, Negative> {
    Ok(a.mapv(f64::sqrt))
}

fn on_device(call: &bach_runtime::DeviceCall) -> bach_runtime::Result<bach_runtime::DeviceOutput> {
    let buf = call.device.alloc(call.n * 8)?;
    Ok(bach_runtime::DeviceOutput { buf, width: 1 })
}

// A device function can (it returns `Error::Call`): no error here.
#[offload(split = bach_runtime::NdArraySplit, gpu_fn = on_device)]
pub fn checked_sqrt2(a: &Array1<f64>) -> Result<Array1<f64>, Negative> {
    Ok(a.mapv(f64::sqrt))
}

fn main() {}
