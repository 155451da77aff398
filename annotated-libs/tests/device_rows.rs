//! Matrices split by rows and values passed whole (fitted models) on a
//! simulated device: device functions (`gpu_fn`) over rows of any width,
//! models uploaded once per stage, a device function's reduction partials,
//! kernels elementwise over matrix rows, and a matrix kept on the device
//! between stages. Every plan gives the eager CPU result, bit for bit, at
//! every device capacity.
// Calls borrow their arguments as the CPU functions' callers do.
#![allow(clippy::needless_borrows_for_generic_args)]

use std::borrow::Cow;
use std::sync::Arc;

use annotated_libs::ndarray::{Array2 as LazyMatrix, LazyArray};
use bach_runtime::{
    evaluate, offload, register_device_value, Broadcast, Config, DType, Device, DeviceCall,
    DeviceOutput, DevicePolicy, DeviceValue, Graph, Lazy, NdArraySplit, Placement, Result,
    SimulatedDevice, SplitKind, SplitType,
};
use ndarray::{Array1, Array2, Axis};

/// A fitted affine map `x -> x . weights + bias` (`weights`: features x
/// outputs): a model, passed whole to every batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    weights: Array2<f64>,
    bias: Array1<f64>,
}

impl Affine {
    fn apply(&self, x: &Array2<f64>) -> Array2<f64> {
        x.dot(&self.weights) + &self.bias
    }
}

/// On a device: `[features, outputs]` then the weights row-major, then the bias.
impl DeviceValue for Affine {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(&self) -> Cow<'_, [u8]> {
        let (f, o) = self.weights.dim();
        let numbers = [f as f64, o as f64]
            .into_iter()
            .chain(self.weights.iter().copied())
            .chain(self.bias.iter().copied());
        Cow::Owned(numbers.flat_map(f64::to_ne_bytes).collect())
    }
    fn from_device_bytes(bytes: &[u8]) -> Self {
        let x: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        let (f, o) = (x[0] as usize, x[1] as usize);
        Affine {
            weights: Array2::from_shape_vec((f, o), x[2..2 + f * o].to_vec()).unwrap(),
            bias: Array1::from(x[2 + f * o..].to_vec()),
        }
    }
}

/// Column sums of matrices, merged by adding: a reduction over rows.
pub struct ColumnSum;

impl SplitType<Array1<f64>> for ColumnSum {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &Array1<f64>) -> Option<usize> {
        None
    }
    fn split(value: &Array1<f64>, _: std::ops::Range<usize>) -> Array1<f64> {
        value.clone()
    }
    fn merge(pieces: Vec<Array1<f64>>) -> Result<Array1<f64>> {
        let mut it = pieces.into_iter();
        let first = it.next().unwrap_or_else(|| Array1::zeros(0));
        Ok(it.fold(first, |acc, p| acc + p))
    }
}

/// The device function of every call here: its result computed by the
/// call's host stand-in, in one launch whose output has `width` numbers per
/// row (`rows`: `n` for a row-split result, 1 for a reduction's partial).
fn on_device(call: &DeviceCall<'_>, rows: usize, width: usize) -> Result<DeviceOutput> {
    let out = call.device.alloc(rows * width * 8)?;
    let mut args: Vec<bach_runtime::KernelArg<'_>> = call
        .inputs
        .iter()
        .map(|i| bach_runtime::KernelArg::In(i.buf))
        .collect();
    args.push(bach_runtime::KernelArg::Out(&out));
    call.device.launch(&bach_runtime::Launch {
        source: annotated_libs::numpy::BACH_KERNELS,
        kernel: "host_stand_in".into(),
        n: rows * width,
        args,
        shape: bach_runtime::LaunchShape::Elementwise,
        reference: call.host,
    })?;
    Ok(DeviceOutput { buf: out, width })
}

fn affine_on_device(call: &DeviceCall<'_>) -> Result<DeviceOutput> {
    // The model's header says its output width; a real kernel reads it
    // from the model's buffer on the device, the test from its shape.
    assert_eq!(call.inputs.len(), 2);
    assert_eq!(call.inputs[0].rows, None, "the model is passed whole");
    assert_eq!(call.inputs[1].rows, Some(call.n));
    let features = call.inputs[1].width;
    let outputs = (call.inputs[0].buf.len() / 8 - 2) / (features + 1);
    on_device(call, call.n, outputs)
}

/// `model.apply(x)`, rows split, the model broadcast.
#[offload(split(model = Broadcast, x = NdArraySplit), ret = NdArraySplit, gpu_fn = affine_on_device)]
pub fn affine(model: &Affine, x: &Array2<f64>) -> Array2<f64> {
    model.apply(x)
}

fn column_sums_on_device(call: &DeviceCall<'_>) -> Result<DeviceOutput> {
    on_device(call, 1, call.inputs[0].width)
}

/// Column sums of `x`, rows split, partials added.
#[offload(split = NdArraySplit, ret = ColumnSum, gpu_fn = column_sums_on_device)]
pub fn column_sums(x: &Array2<f64>) -> Array1<f64> {
    x.sum_axis(Axis(0))
}

fn center_on_device(call: &DeviceCall<'_>) -> Result<DeviceOutput> {
    on_device(call, call.n, call.inputs[0].width)
}

/// `x - row / rows` for every row of `x`: the row passed whole.
#[offload(split(x = NdArraySplit, row = Broadcast), ret = NdArraySplit, gpu_fn = center_on_device)]
pub fn center(x: &Array2<f64>, row: &Array1<f64>, rows: f64) -> Array2<f64> {
    x - &(row / rows)
}

fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 1.0
    })
}

fn model(features: usize, outputs: usize) -> Affine {
    Affine {
        weights: matrix(features, outputs, 99),
        bias: Array1::from_iter((0..outputs).map(|k| k as f64 * 0.25 - 1.0)),
    }
}

fn graph_on(device: Arc<SimulatedDevice>) -> Graph {
    register_device_value::<Affine>();
    let g = Graph::with_config(Config {
        device: DevicePolicy::Device,
        ..Config::default()
    });
    g.set_device(Some(device));
    g
}

fn bits2(a: &Array2<f64>) -> (Vec<usize>, Vec<u64>) {
    (a.shape().to_vec(), a.iter().map(|x| x.to_bits()).collect())
}

#[test]
fn a_model_passed_whole_and_rows_of_any_width_run_on_the_device() {
    let (rows, features, outputs) = (5_000, 13, 3);
    let x = matrix(rows, features, 1);
    let m = model(features, outputs);
    let expected = m.apply(&x).mapv(f64::sqrt);
    // From more than the data down to a few batches' worth (paging).
    for capacity in [1 << 30, 256 << 10, 48 << 10] {
        let dev = Arc::new(SimulatedDevice::with_capacity(capacity));
        let g = graph_on(dev.clone());
        let y = g
            .enter(|| {
                let projected = LazyArray::from_lazy(affine(&m, &x));
                // A kernel (ndarray's sqrt) elementwise over rows of 3 numbers.
                let y: LazyMatrix<'_, f64> = projected.sqrt();
                let e = g.explain(&y).unwrap();
                assert_eq!(e.stages.len(), 1, "{e}");
                assert_eq!(e.stages[0].placement, Placement::Device, "{e}");
                evaluate(y)
            })
            .unwrap();
        assert_eq!(bits2(&y), bits2(&expected), "capacity {capacity}");
        let stats = dev.stats();
        assert!(stats.peak_bytes <= capacity as u64, "capacity {capacity}");
        // The rows go up once, the model once for the whole stage, and the
        // results come down once.
        let model_bytes = (2 + features * outputs + outputs) as u64 * 8;
        assert_eq!(
            stats.upload_bytes,
            (rows * features * 8) as u64 + model_bytes,
            "capacity {capacity}"
        );
        assert_eq!(stats.download_bytes, (rows * outputs * 8) as u64);
        if capacity < 1 << 20 {
            assert!(stats.uploads > 3, "paged in batches: {stats:?}");
        }
    }
}

#[test]
fn a_device_function_reduces_rows_and_a_matrix_stays_on_the_device_between_stages() {
    let (rows, cols) = (3_000, 6);
    let x = matrix(rows, cols, 2);
    // Eager: y = sqrt(|x|); s = column sums of y; z = y - s / rows.
    let y_cpu = x.mapv(f64::abs).mapv(f64::sqrt);
    for capacity in [1 << 30, 64 << 10] {
        let dev = Arc::new(SimulatedDevice::with_capacity(capacity));
        let g = graph_on(dev.clone());
        let (s, z) = g
            .enter(|| {
                let xl: LazyMatrix<'_, f64> = LazyArray::from(&x);
                let y = xl.abs().sqrt();
                let s: Lazy<'_, Array1<f64>> = column_sums(y.as_lazy());
                let z = center(y.as_lazy(), &s, rows as f64);
                let e = g.explain(&(s.clone(), z.clone())).unwrap();
                assert_eq!(e.stages.len(), 2, "{e}");
                assert!(
                    e.stages.iter().all(|s| s.placement == Placement::Device),
                    "{e}"
                );
                // y (a kernel's result, so its width is known before the
                // stage runs) stays on the device for the second stage.
                if capacity >= 1 << 30 {
                    assert_eq!(e.stages[0].kept_on_device, 1, "{e}");
                }
                evaluate((s, z))
            })
            .unwrap();
        // The partials are added in batch order, so compare with the same
        // merge of the same batches: within rounding of one sum.
        let s_cpu = y_cpu.sum_axis(Axis(0));
        for (a, b) in s.iter().zip(&s_cpu) {
            assert!((a - b).abs() <= 1e-9 * b.abs(), "{a} vs {b}");
        }
        let z_cpu = center::cpu(&y_cpu, &s, rows as f64);
        assert_eq!(bits2(&z), bits2(&z_cpu), "capacity {capacity}");
        let stats = dev.stats();
        assert!(stats.peak_bytes <= capacity as u64);
        // x goes up once; y is never uploaded (kept on the device, or
        // downloaded and uploaded again when it does not fit).
        if capacity >= 1 << 30 {
            assert_eq!(
                stats.upload_bytes,
                (rows * cols * 8 + cols * 8) as u64,
                "{stats:?}"
            );
        }
    }
}

/// A device function that returns a result of the wrong size is a device
/// error, never a wrong answer: under `auto` the stage runs on the CPU.
fn short_output(call: &DeviceCall<'_>) -> Result<DeviceOutput> {
    // Rows of `width` numbers, said to be one number wider.
    let mut out = on_device(call, call.n, call.inputs[0].width)?;
    out.width += 1;
    Ok(out)
}

#[offload(split = NdArraySplit, gpu_fn = short_output)]
pub fn twice(x: &Array2<f64>) -> Array2<f64> {
    x * 2.0
}

#[test]
fn a_device_function_with_a_wrong_result_size_is_an_error_not_an_answer() {
    let x = matrix(100, 4, 3);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
    let g = graph_on(dev);
    let r = g.enter(|| evaluate(twice(&x)));
    match r {
        Err(bach_runtime::Error::Device(message)) => {
            assert!(message.contains("twice"), "{message}")
        }
        other => panic!("expected a device error, got {other:?}"),
    }
    // Under `auto` the CPU computes it.
    let auto = Graph::with_config(Config {
        device: DevicePolicy::Auto,
        ..Config::default()
    });
    auto.set_device(Some(Arc::new(SimulatedDevice::with_capacity(1 << 30))));
    let y = auto.enter(|| evaluate(twice(&x))).unwrap();
    assert_eq!(y, &x * 2.0);
}

/// `explain` names the predicted crossover of a device-eligible stage, and
/// placement by the cost model agrees with it: the device runs the stage
/// exactly when it has at least that many elements.
#[test]
fn explain_shows_the_predicted_crossover_and_placement_agrees_with_it() {
    let g = Graph::with_config(Config {
        device: DevicePolicy::Auto,
        ..Config::default()
    });
    g.set_device(Some(Arc::new(SimulatedDevice::with_capacity(1 << 30))));
    let mut crossovers = Vec::new();
    for log2 in [4, 10, 16, 22] {
        let n = 1usize << log2;
        let x: Vec<Array1<f64>> = (0..5)
            .map(|i| Array1::from_iter((0..n).map(|k| 1.0 + ((k * 7 + i) % 97) as f64)))
            .collect();
        let e = g
            .enter(|| {
                let (c, p) = annotated_libs::workloads::bach::blackscholes(
                    &x[0], &x[1], &x[2], &x[3], &x[4],
                );
                g.explain(&(c, p))
            })
            .unwrap();
        assert_eq!(e.stages.len(), 1, "{e}");
        let stage = &e.stages[0];
        let crossover = stage
            .crossover
            .expect("the simulated device wins at some size");
        assert_eq!(
            stage.placement == Placement::Device,
            n >= crossover,
            "n = {n}: {e}"
        );
        assert!(
            e.to_string().contains(&format!(
                "device predicted faster from {crossover} elements"
            )),
            "{e}"
        );
        crossovers.push(crossover);
    }
    // The crossover is a property of the calls, not of this size.
    assert!(
        crossovers.windows(2).all(|w| w[0] == w[1]),
        "{crossovers:?}"
    );
}

/// A fit: an affine map from the data (its Gram matrix's first columns,
/// scaled, and its column means), read whole.
#[offload(split(x = Broadcast, outputs = Broadcast), gpu_fn = fit_on_device)]
pub fn fit(x: &Array2<f64>, outputs: usize) -> Affine {
    let rows = x.nrows().max(1) as f64;
    let gram = x.t().dot(x) / rows;
    Affine {
        weights: gram.slice(ndarray::s![.., ..outputs]).to_owned(),
        bias: x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()))
            .slice(ndarray::s![..outputs])
            .to_owned(),
    }
}

fn fit_on_device(call: &DeviceCall<'_>) -> Result<DeviceOutput> {
    assert_eq!(call.inputs[0].rows, None, "x is read whole");
    let features = call.inputs[0].width;
    assert_eq!(call.n * features * 8, call.inputs[0].buf.len());
    let outputs = match call.scalars[0] {
        bach_runtime::KernelArg::U64(k) => k as usize,
        ref other => panic!("the output count is a u64, not {other:?}"),
    };
    // The model's bytes: its header, weights and bias.
    on_device(call, 1, 2 + features * outputs + outputs)
}

#[test]
fn a_fit_runs_whole_on_the_device_and_its_model_feeds_a_row_split_stage() {
    let (rows, features, outputs) = (2_000, 7, 2);
    let x = matrix(rows, features, 5);
    let expected = fit::cpu(&x, outputs).apply(&x);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
    let g = graph_on(dev.clone());
    let y = g
        .enter(|| {
            let m = fit(&x, outputs);
            let y = affine(&m, &x);
            let e = g.explain(&y).unwrap();
            assert_eq!(e.stages.len(), 2, "{e}");
            assert_eq!(e.stages[0].kind, bach_runtime::StageKind::Whole, "{e}");
            assert!(
                e.stages.iter().all(|s| s.placement == Placement::Device),
                "{e}"
            );
            evaluate(y)
        })
        .unwrap();
    assert_eq!(bits2(&y), bits2(&expected));
    // Under `auto`, a whole call stays on the CPU (its cost is not predicted).
    let auto = Graph::with_config(Config {
        device: DevicePolicy::Auto,
        ..Config::default()
    });
    auto.set_device(Some(dev));
    let e = auto.enter(|| auto.explain(&fit(&x, outputs))).unwrap();
    assert_eq!(e.stages[0].placement, Placement::Cpu, "{e}");
}
