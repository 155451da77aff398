//! Haversine: great-circle distance in miles from a fixed point to each
//! (lat, lon), with lat uniform in [-1.5, 1.5) and lon in [-3.1, 3.1) radians.

use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{ndarray_bach as bach, ndarray_cpu as cpu};
use ndarray::Array1;
use rayon::prelude::*;

use super::{
    arrays, assume_init, numpy_anchor, slice, time_lazy, uniform_arrays, Check, Inputs, Outputs,
    Timed, Workload, WorkloadError, FUSED_CHUNK,
};
use crate::inputs::InputSpec;

/// The input arrays: one uniform stream per argument.
const INPUTS: &[InputSpec] = &[
    InputSpec {
        name: "lat",
        low: -1.5,
        high: 1.5,
    },
    InputSpec {
        name: "lon",
        low: -3.1,
        high: 3.1,
    },
];

pub(super) static WORKLOAD: Workload = Workload {
    name: "haversine",
    description: "great-circle distances from a fixed point (about 17 elementwise calls)",
    default_size: 26,
    size_meaning: "2^LOG2 elements",
    generate: |log2, seed| uniform_arrays(INPUTS, log2, seed),
    outputs: &["miles"],
    cpu: run_cpu,
    bach: run_bach,
    fused: Some(run_fused),
    gpu: Some(|g, x| Ok(crate::gpu::haversine(g, arrays(x)?)?)),
    explain: |x| Ok(bach_runtime::Graph::current().explain(&record(arrays(x)?))?),
    check: Check::Exact,
    result_line: None,
    anchors: &[numpy_anchor("haversine")],
};

fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = arrays(x)?;
    Ok(vec![cpu::haversine(&x[0], &x[1])])
}

/// The workload on lazy arrays reading the inputs in place.
fn record(x: &[Array1<f64>]) -> LazyArray<'_, f64, ndarray::Ix1> {
    bach::haversine(&LazyArray::from(&x[0]), &LazyArray::from(&x[1]))
}

fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let x = arrays(x)?;
    time_lazy(|| record(x), |miles| vec![miles])
}

/// One element, in the operation order of `annotated_libs::workloads`
/// (so results are bit-identical to cpu mode); `cos_lat1` is `cos(lat1)`.
#[inline(always)]
pub(crate) fn element(lat2: f64, lon2: f64, cos_lat1: f64) -> f64 {
    let lat1 = 0.70984286;
    let lon1 = 1.23892197;
    let miles = 3959.0;
    let s = ((lat2 - lat1) / 2.0).sin();
    let dlat = s * s;
    let s = ((lon2 - lon1) / 2.0).sin();
    let dlon = s * s;
    let a = dlat + lat2.cos() * cos_lat1 * dlon;
    2.0 * a.sqrt().asin() * miles
}

fn run_fused(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = arrays(x)?;
    let (lat, lon) = (slice(&x[0]), slice(&x[1]));
    let n = lat.len();
    let cos_lat1 = f64::cos(0.70984286);
    let mut out: Vec<f64> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(FUSED_CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            let r = c * FUSED_CHUNK..c * FUSED_CHUNK + out.len();
            let (la, lo) = (&lat[r.clone()], &lon[r]);
            for i in 0..out.len() {
                out[i].write(element(la[i], lo[i], cos_lat1));
            }
        });
    // SAFETY: the chunks tile 0..n and each wrote all of its elements.
    Ok(unsafe { vec![assume_init(out, n)] })
}
