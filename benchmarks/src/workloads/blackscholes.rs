//! Black-Scholes call and put prices (the paper's formulation: `log2`,
//! constants 3.0 and 1.5), from five arrays uniform in [1, 100).

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
        name: "price",
        low: 1.0,
        high: 100.0,
    },
    InputSpec {
        name: "strike",
        low: 1.0,
        high: 100.0,
    },
    InputSpec {
        name: "t",
        low: 1.0,
        high: 100.0,
    },
    InputSpec {
        name: "rate",
        low: 1.0,
        high: 100.0,
    },
    InputSpec {
        name: "vol",
        low: 1.0,
        high: 100.0,
    },
];

pub(super) static WORKLOAD: Workload = Workload {
    name: "blackscholes",
    description: "Black-Scholes call and put prices from 5 arrays (about 32 elementwise calls)",
    default_size: 26,
    size_meaning: "2^LOG2 elements",
    generate: |log2, seed| uniform_arrays(INPUTS, log2, seed),
    outputs: &["call", "put"],
    cpu: run_cpu,
    bach: run_bach,
    fused: Some(run_fused),
    gpu: Some(|g, x| Ok(crate::gpu::blackscholes(g, arrays(x)?)?)),
    explain: |x| Ok(bach_runtime::Graph::current().explain(&record(arrays(x)?))?),
    check: Check::Exact,
    result_line: None,
    anchors: &[numpy_anchor("blackscholes")],
};

fn run_cpu(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = arrays(x)?;
    let (call, put) = cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
    Ok(vec![call, put])
}

/// The workload on lazy arrays reading the inputs in place.
fn record(
    x: &[Array1<f64>],
) -> (
    LazyArray<'_, f64, ndarray::Ix1>,
    LazyArray<'_, f64, ndarray::Ix1>,
) {
    let [price, strike, t, rate, vol] = [0, 1, 2, 3, 4].map(|i| LazyArray::from(&x[i]));
    bach::blackscholes(&price, &strike, &t, &rate, &vol)
}

fn run_bach(x: &Inputs) -> Result<Timed, WorkloadError> {
    let x = arrays(x)?;
    time_lazy(|| record(x), |(call, put)| vec![call, put])
}

/// One element of the formula, in the operation order of
/// `annotated_libs::workloads` (so results are bit-identical to cpu mode; `a * 3.0 + 3.0`
/// there is `3.0 + 3.0 * a` here, the same IEEE operations).
#[inline(always)]
pub(crate) fn element(price: f64, strike: f64, t: f64, rate: f64, vol: f64) -> (f64, f64) {
    let c05 = 3.0;
    let c10 = 1.5;
    let invsqrt2 = 1.0 / 2f64.sqrt();
    let rsig = vol * vol * c05 + rate;
    let vol_sqrt = t.sqrt() * vol;
    let d1 = ((price / strike).log2() + rsig * t) / vol_sqrt;
    let d2 = d1 - vol_sqrt;
    let d1 = c05 + c05 * libm::erf(d1 * invsqrt2);
    let d2 = c05 + c05 * libm::erf(d2 * invsqrt2);
    let e_rt = (-rate * t).exp();
    let e_rt_strike = e_rt * strike;
    let call = price * d1 - e_rt_strike * d2;
    let put = e_rt_strike * (c10 - d2) - price * (c10 - d1);
    (call, put)
}

fn run_fused(x: &Inputs) -> Result<Outputs, WorkloadError> {
    let x = arrays(x)?;
    let (price, strike, t, rate, vol) = (
        slice(&x[0]),
        slice(&x[1]),
        slice(&x[2]),
        slice(&x[3]),
        slice(&x[4]),
    );
    let n = price.len();
    let mut call: Vec<f64> = Vec::with_capacity(n);
    let mut put: Vec<f64> = Vec::with_capacity(n);
    call.spare_capacity_mut()[..n]
        .par_chunks_mut(FUSED_CHUNK)
        .zip(put.spare_capacity_mut()[..n].par_chunks_mut(FUSED_CHUNK))
        .enumerate()
        .for_each(|(c, (call, put))| {
            let r = c * FUSED_CHUNK..c * FUSED_CHUNK + call.len();
            let (p, k, t, rt, v) = (
                &price[r.clone()],
                &strike[r.clone()],
                &t[r.clone()],
                &rate[r.clone()],
                &vol[r],
            );
            for i in 0..call.len() {
                let (c, q) = element(p[i], k[i], t[i], rt[i], v[i]);
                call[i].write(c);
                put[i].write(q);
            }
        });
    // SAFETY: the chunks tile 0..n and each wrote all of its elements.
    Ok(unsafe { vec![assume_init(call, n), assume_init(put, n)] })
}
