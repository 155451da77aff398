//! Calibrated CPU costs are cached on disk per machine. Its own test binary:
//! it sets `BACH_CACHE_DIR` before anything reads it.

use std::sync::Arc;

use bach_runtime::{offload, Config, Graph, KernelSource, NdArraySplit, SimulatedDevice};
use ndarray::Array1;

const BACH_KERNELS: KernelSource = KernelSource {
    name: "test.cu",
    code: "",
};

/// Squares, slowly enough to measure.
#[offload(split = NdArraySplit, gpu = "square")]
pub fn square_it(a: &Array1<f64>) -> Array1<f64> {
    a.mapv(|x| x * x)
}

#[test]
fn cpu_costs_are_measured_once_and_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("bach-cost-cache-{}", std::process::id()));
    std::env::set_var("BACH_CACHE_DIR", &dir);
    let g = Graph::with_config(Config::default());
    g.set_device(Some(Arc::new(SimulatedDevice::with_capacity(1 << 30))));
    let x = Array1::from_elem(100_000, 1.5);
    let e = g.enter(|| g.explain(&square_it(&x))).unwrap();
    assert!(e.stages[0].cost.cpu_s > 0.0, "{e}");
    let costs = dir.join("costs");
    let file = std::fs::read_dir(&costs)
        .expect("a costs directory")
        .map(|f| f.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("cpu-"))
        .expect("a CPU cost file");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("square_it(ndarray::"), "{text}");
    bach_runtime::recalibrate();
    assert!(!file.exists(), "recalibrate forgets the cached costs");
    let _ = std::fs::remove_dir_all(&dir);
}
