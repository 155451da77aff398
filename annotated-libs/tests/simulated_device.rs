//! The device executor on a simulated device with bounded memory: results equal
//! eager CPU evaluation at every capacity, memory is never exceeded, transfers
//! are the minimum the plan implies, and out-of-memory takes the documented path.
// Calls borrow their arguments as the CPU functions' callers do.
#![allow(clippy::needless_borrows_for_generic_args)]

use std::sync::Arc;

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::numpy as np;
use annotated_libs::workloads;
use bach_runtime::{
    evaluate, Config, Device, DeviceBuffer, DeviceCosts, DevicePolicy, Error, Graph, Placement,
    Queue, SimulatedDevice, SimulatedDeviceConfig,
};
use ndarray::Array1;

mod common;
use common::{bits, uniform};

/// A graph that runs every eligible stage on `device` (placement forced, so
/// that small test sizes exercise the device executor).
fn graph_on(device: Arc<SimulatedDevice>) -> Graph {
    graph_with_budget(device, None)
}

/// [`graph_on`] any device, with a device memory budget (`Config::device_memory`).
fn graph_with_budget(device: Arc<dyn Device>, device_memory: Option<usize>) -> Graph {
    let g = Graph::with_config(Config {
        device: DevicePolicy::Device,
        device_memory,
        ..Config::default()
    });
    g.set_device(Some(device));
    g
}

fn bs_inputs(n: usize) -> Vec<Array1<f64>> {
    (0..5).map(|i| uniform(n, 1.0, 100.0, 7 + i)).collect()
}

#[test]
fn blackscholes_runs_on_the_device_and_matches_the_cpu_at_every_capacity() {
    let n = 20_000;
    let x = bs_inputs(n);
    let (call_ref, put_ref) = workloads::cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
    // From far more than the data down to a few kilobytes (paging in many batches).
    for capacity in [1 << 30, 4 << 20, 256 << 10, 16 << 10, 2 << 10] {
        let dev = Arc::new(SimulatedDevice::with_capacity(capacity));
        let g = graph_on(dev.clone());
        let (call, put) = g
            .enter(|| {
                let (c, p) = workloads::bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
                let e = g.explain(&(c.clone(), p.clone())).unwrap();
                assert_eq!(e.stages.len(), 1, "{e}");
                assert_eq!(e.stages[0].placement, Placement::Device, "{e}");
                evaluate((c, p))
            })
            .unwrap();
        assert_eq!(bits(&call), bits(&call_ref), "capacity {capacity}");
        assert_eq!(bits(&put), bits(&put_ref), "capacity {capacity}");
        let stats = dev.stats();
        assert!(
            stats.peak_bytes as usize <= capacity,
            "peak {} > capacity {capacity}",
            stats.peak_bytes
        );
        assert_eq!(dev.in_use(), 0, "every device buffer was freed");
        // Each input crosses the link once, each output comes back once: the minimum.
        assert_eq!(stats.upload_bytes, 5 * 8 * n as u64, "capacity {capacity}");
        assert_eq!(
            stats.download_bytes,
            2 * 8 * n as u64,
            "capacity {capacity}"
        );
        assert_eq!(stats.uploads % 5, 0);
        assert_eq!(
            stats.uploads / 5,
            stats.downloads / 2,
            "as many batches up as down"
        );
        if capacity < 64 << 10 {
            assert!(stats.uploads > 5, "small devices page through many batches");
        }
        // Serial time: every transfer pays the link, every launch its overhead.
        let c = bach_runtime::DeviceCosts::default();
        let floor = (stats.upload_bytes + stats.download_bytes) as f64 / c.link_bytes_per_s
            + (stats.uploads + stats.downloads) as f64 * c.link_latency_s
            + stats.launches as f64 * c.launch_s;
        let serial = stats.serial_ns as f64 * 1e-9;
        assert!(
            serial >= floor * 0.999 && serial <= floor * 1.01 + 31.0 * n as f64 / c.elements_per_s,
            "{serial} vs {floor}"
        );
        // Pipelined: upload, compute and download of neighbouring batches
        // overlap, so the stage takes about the slowest of the three per batch.
        let batches = stats.uploads as f64 / 5.0;
        let up = stats.upload_bytes as f64 / c.link_bytes_per_s
            + stats.uploads as f64 * c.link_latency_s;
        let down = stats.download_bytes as f64 / c.link_bytes_per_s
            + stats.downloads as f64 * c.link_latency_s;
        let compute = serial - up - down;
        let slowest = up.max(compute).max(down) / batches;
        let pipeline = (up + compute + down) / batches + (batches - 1.0) * slowest;
        let modelled = stats.modelled_ns as f64 * 1e-9;
        assert!(
            (modelled - pipeline).abs() <= 0.02 * pipeline,
            "capacity {capacity}: modelled {modelled} s vs pipeline {pipeline} s ({batches} batches)"
        );
        if batches >= 8.0 {
            assert!(modelled < 0.8 * serial, "{modelled} vs serial {serial}");
        }
    }
}

#[test]
fn a_device_too_small_for_one_element_falls_back_to_the_cpu() {
    let x = bs_inputs(1000);
    let dev = Arc::new(SimulatedDevice::with_capacity(16));
    let g = graph_on(dev.clone());
    let (call, _) = g
        .enter(|| {
            evaluate(workloads::bach::blackscholes(
                &x[0], &x[1], &x[2], &x[3], &x[4],
            ))
        })
        .unwrap();
    let (call_ref, _) = workloads::cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
    assert_eq!(bits(&call), bits(&call_ref));
    assert_eq!(dev.stats().launches, 0);
    // The last run says so.
    let run = g.last_run().unwrap();
    assert_eq!(run.stages[0].placement, Placement::Cpu, "{run}");
    assert!(run.stages[0].reason.contains("out of memory"), "{run}");
}

#[test]
fn an_injected_out_of_memory_halves_the_batch_and_loses_nothing() {
    let x = bs_inputs(10_000);
    for fail in [0, 1, 3, 17] {
        let dev = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
            capacity: 1 << 30,
            fail_alloc: Some(fail),
            ..Default::default()
        }));
        let g = graph_on(dev.clone());
        let h = g.enter(|| workloads::bach::haversine(&x[0], &x[1]));
        let got = g.evaluate(h).unwrap();
        assert_eq!(
            bits(&got),
            bits(&workloads::cpu::haversine(&x[0], &x[1])),
            "fail at {fail}"
        );
        assert!(
            dev.stats().uploads >= 2,
            "retried after the failed allocation"
        );
    }
}

#[test]
fn stages_without_kernels_stay_on_the_cpu_and_the_rest_goes_to_the_device() {
    let a = uniform(5000, -1.0, 1.0, 1);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 20));
    let g = graph_on(dev.clone());
    let (y, m) = g
        .enter(|| {
            // multiply has a kernel, moments (inside mean) has none: with a
            // device present they go to separate stages, so multiply still
            // runs on the device.
            let m = np::mean(&np::multiply(&a, &a));
            let y = np::multiply_scalar(&a, &m);
            let e = g.explain(&(y.clone(), m.clone())).unwrap();
            let stages: Vec<_> = e
                .stages
                .iter()
                .map(|s| (s.placement, s.ops.clone()))
                .collect();
            assert_eq!(
                stages,
                [
                    (Placement::Device, vec!["multiply"]),
                    (Placement::Cpu, vec!["moments"]),
                    (Placement::Cpu, vec!["moments_mean"]),
                    (Placement::Device, vec!["multiply_scalar"]),
                ],
                "{e}"
            );
            evaluate((y, m))
        })
        .unwrap();
    let m_ref = cpu::mean(&cpu::multiply(&a, &a));
    assert!((m - m_ref).abs() <= 1e-12 * m_ref.abs());
    assert_eq!(bits(&y), bits(&cpu::multiply_scalar(&a, m)));
    assert!(dev.stats().launches > 0);
}

#[test]
fn a_memory_budget_caps_what_the_device_uses() {
    let x = bs_inputs(50_000);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
    let g = graph_with_budget(dev.clone(), Some(64 << 10));
    let out = g
        .enter(|| evaluate(workloads::bach::haversine(&x[0], &x[1])))
        .unwrap();
    assert_eq!(bits(&out), bits(&workloads::cpu::haversine(&x[0], &x[1])));
    assert!(
        dev.stats().peak_bytes <= 64 << 10,
        "peak {}",
        dev.stats().peak_bytes
    );
}

#[test]
fn cpu_policy_ignores_the_device_and_gpu_policy_without_one_is_an_error() {
    let a = uniform(100, 0.0, 1.0, 2);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 20));
    let g = Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        ..Config::default()
    });
    g.set_device(Some(dev.clone()));
    g.enter(|| evaluate(np::sqrt(&a))).unwrap();
    assert_eq!(dev.stats().launches, 0);

    // No device attached, and this machine has no GPU driver: forcing the GPU fails clearly.
    let forced = Graph::with_config(Config {
        device: DevicePolicy::Device,
        ..Config::default()
    });
    if bach_runtime::gpu_status().devices.is_empty() {
        match forced.enter(|| evaluate(np::sqrt(&a))) {
            Err(Error::DeviceUnavailable(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected GpuUnavailable, got {other:?}"),
        }
    }
}

#[test]
fn placement_moves_from_cpu_to_device_as_size_grows() {
    // A device with a fast link and fast kernels: small stages pay latency and
    // launches, large ones win.
    let costs = DeviceCosts {
        link_bytes_per_s: 50e9,
        link_latency_s: 20e-6,
        launch_s: 10e-6,
        elements_per_s: 100e9,
    };
    let dev = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
        capacity: 1 << 32,
        costs,
        ..Default::default()
    }));
    let g = Graph::with_config(Config::default()); // Auto: the cost model decides
    g.set_device(Some(dev));
    let mut placements = Vec::new();
    for log2 in [4, 10, 16, 22] {
        let x = bs_inputs(1 << log2);
        let e = g
            .enter(|| {
                g.explain(&workloads::bach::blackscholes(
                    &x[0], &x[1], &x[2], &x[3], &x[4],
                ))
            })
            .unwrap();
        assert_eq!(e.stages.len(), 1);
        let s = &e.stages[0];
        assert!(s.cost.cpu_s > 0.0, "{e}");
        match s.cost.device_s() {
            Some(device_s) => {
                assert!(device_s > 0.0, "{e}");
                assert_eq!(s.cost.bytes_up, (5 * 8) << log2);
                assert_eq!(s.cost.bytes_down, (2 * 8) << log2);
            }
            // Settled early: the CPU beats the device's launches alone.
            None => {
                assert_eq!(s.placement, Placement::Cpu, "{e}");
                assert!(s.reason.contains("launch(es) alone"), "{e}");
                assert!(s.cost.cpu_s <= 31.0 * costs.launch_s, "{e}");
            }
        }
        placements.push(s.placement);
    }
    assert_eq!(placements[0], Placement::Cpu, "{placements:?}");
    assert_eq!(placements[3], Placement::Device, "{placements:?}");
    // Once it moves to the device it stays there as size grows.
    let first_gpu = placements
        .iter()
        .position(|p| *p == Placement::Device)
        .unwrap();
    assert!(
        placements[first_gpu..]
            .iter()
            .all(|p| *p == Placement::Device),
        "{placements:?}"
    );
}

#[test]
fn last_run_reports_measured_time_beside_the_prediction() {
    let x = bs_inputs(4096);
    let g = Graph::new();
    g.enter(|| evaluate(workloads::bach::haversine(&x[0], &x[1])))
        .unwrap();
    let run = g.last_run().expect("a run happened");
    assert_eq!(run.stages.len(), 1);
    assert!(run.stages[0].measured_s.unwrap() > 0.0);
    assert!(run.to_string().contains("measured"), "{run}");
}

#[test]
fn reductions_run_on_the_device_and_merge_partials() {
    for n in [0usize, 1, 1000, 70_000, 300_001] {
        let a = uniform(n, -1.0, 1.0, 5);
        let dev = Arc::new(SimulatedDevice::with_capacity(1 << 20));
        let g = graph_on(dev.clone());
        let (s, mn) = g.enter(|| {
            let sq = np::multiply(&a, &a);
            let s = np::sum(&sq);
            let mn = np::min(&a);
            let e = g.explain(&(s.clone(), mn.clone())).unwrap();
            assert!(
                e.stages.iter().all(|s| s.placement == Placement::Device),
                "{e}"
            );
            (g.evaluate(s), g.evaluate(mn))
        });
        let s_ref = cpu::sum(&cpu::multiply(&a, &a));
        let s = s.unwrap();
        assert!(
            (s - s_ref).abs() <= 1e-12 * s_ref.abs().max(1.0),
            "n = {n}: {s} vs {s_ref}"
        );
        if n == 0 {
            assert!(
                matches!(mn, Err(Error::EmptyReduction { op: "min" })),
                "{mn:?}"
            );
        } else {
            assert_eq!(mn.unwrap(), cpu::min(&a), "n = {n}");
            assert!(dev.stats().launches > 0);
        }
    }
}

/// `a * s + b`, on the device as two kernels through a temporary buffer.
fn axpy_on_device(
    call: &bach_runtime::DeviceCall<'_>,
) -> bach_runtime::Result<bach_runtime::DeviceOutput> {
    let out = call.device.alloc(call.n * 8)?;
    use bach_runtime::{KernelArg, Launch};
    let n = call.n;
    let s = match call.scalars[0] {
        KernelArg::F64(s) => s,
        _ => unreachable!("axpy's scalar is an f64"),
    };
    let f64s = |b: &[u8]| {
        Array1::from_iter(
            b[..n * 8]
                .chunks_exact(8)
                .map(|c| f64::from_ne_bytes(c.try_into().unwrap())),
        )
    };
    let bytes = |a: Array1<f64>| a.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    let tmp = call.device.alloc(n * 8)?;
    call.device.launch(&Launch {
        source: annotated_libs::numpy::BACH_KERNELS,
        kernel: "multiply_scalar_f64".into(),
        n,
        args: vec![
            KernelArg::In(call.inputs[0].buf),
            KernelArg::F64(s),
            KernelArg::Out(&tmp),
        ],
        shape: bach_runtime::LaunchShape::Elementwise,
        reference: &|b| Ok(vec![bytes(cpu::multiply_scalar(&f64s(b[0]), s))]),
    })?;
    call.device.launch(&Launch {
        source: annotated_libs::numpy::BACH_KERNELS,
        kernel: "add_f64".into(),
        n,
        args: vec![
            KernelArg::In(&tmp),
            KernelArg::In(call.inputs[1].buf),
            KernelArg::Out(&out),
        ],
        shape: bach_runtime::LaunchShape::Elementwise,
        reference: &|b| Ok(vec![bytes(cpu::add(&f64s(b[0]), &f64s(b[1])))]),
    })?;
    Ok(bach_runtime::DeviceOutput { buf: out, width: 1 })
}

/// `a * s + b`.
#[bach_runtime::offload(split = bach_runtime::NdArraySplit, gpu_fn = axpy_on_device)]
pub fn axpy(a: &Array1<f64>, b: &Array1<f64>, s: f64) -> Array1<f64> {
    cpu::add(&cpu::multiply_scalar(a, s), b)
}

#[test]
fn gpu_fn_functions_run_on_the_device() {
    let (a, b) = (uniform(10_000, -1.0, 1.0, 3), uniform(10_000, -1.0, 1.0, 4));
    let dev = Arc::new(SimulatedDevice::with_capacity(64 << 10));
    let g = graph_on(dev.clone());
    let y = g
        .enter(|| {
            let y = np::sqrt(&np::abs(&axpy(&a, &b, 2.5)));
            let e = g.explain(&y).unwrap();
            assert_eq!(e.stages.len(), 1, "{e}");
            assert_eq!(e.stages[0].placement, Placement::Device, "{e}");
            evaluate(y)
        })
        .unwrap();
    assert_eq!(
        bits(&y),
        bits(&cpu::sqrt(&cpu::abs(&axpy::cpu(&a, &b, 2.5))))
    );
    // Two launches for axpy plus abs and sqrt, in every batch.
    let launches = dev.stats().launches;
    assert!(launches >= 4, "{launches}");
    assert_eq!(launches % 4, 0, "four launches per batch");
    assert!(dev.stats().peak_bytes <= 64 << 10);
}

/// `sqrt(|a|)` through the call's own host stand-in.
fn via_host(
    call: &bach_runtime::DeviceCall<'_>,
) -> bach_runtime::Result<bach_runtime::DeviceOutput> {
    let out = call.device.alloc(call.n * 8)?;
    call.device.launch(&bach_runtime::Launch {
        source: annotated_libs::numpy::BACH_KERNELS,
        kernel: "root_abs_f64".into(),
        n: call.n,
        args: vec![
            bach_runtime::KernelArg::In(call.inputs[0].buf),
            bach_runtime::KernelArg::Out(&out),
        ],
        shape: bach_runtime::LaunchShape::Elementwise,
        reference: call.host,
    })?;
    Ok(bach_runtime::DeviceOutput { buf: out, width: 1 })
}

/// `sqrt(|a|)`.
#[bach_runtime::offload(split = bach_runtime::NdArraySplit, gpu_fn = via_host)]
pub fn root_abs(a: &Array1<f64>) -> Array1<f64> {
    cpu::sqrt(&cpu::abs(a))
}

#[test]
fn gpu_fn_host_stand_ins_work_in_every_batch() {
    let a = uniform(10_000, -4.0, 4.0, 8);
    let dev = Arc::new(SimulatedDevice::with_capacity(16 << 10));
    let g = graph_on(dev.clone());
    let y = g.enter(|| evaluate(root_abs(&a))).unwrap();
    assert_eq!(bits(&y), bits(&root_abs::cpu(&a)));
    assert!(dev.stats().launches > 1, "several batches");
}

/// A partition split type without in-place assembly (merges by concatenation).
pub struct PlainSplit;

impl bach_runtime::SplitType<Array1<f64>> for PlainSplit {
    const KIND: bach_runtime::SplitKind = bach_runtime::SplitKind::Partition;
    fn elements(v: &Array1<f64>) -> Option<usize> {
        Some(v.len())
    }
    fn split(v: &Array1<f64>, r: std::ops::Range<usize>) -> Array1<f64> {
        v.slice(ndarray::s![r]).to_owned()
    }
    fn merge(pieces: Vec<Array1<f64>>) -> bach_runtime::Result<Array1<f64>> {
        Ok(pieces.iter().flat_map(|p| p.iter().copied()).collect())
    }
}

use annotated_libs::numpy::BACH_KERNELS;

/// `sqrt`, split by [`PlainSplit`].
#[bach_runtime::offload(split = PlainSplit, gpu = "sqrt")]
pub fn plain_sqrt(a: &Array1<f64>) -> Array1<f64> {
    cpu::sqrt(a)
}

#[test]
fn split_types_without_assembly_are_merged_after_device_batches() {
    let a = uniform(10_000, 0.0, 4.0, 9);
    let dev = Arc::new(SimulatedDevice::with_capacity(16 << 10));
    let g = graph_on(dev.clone());
    let y = g.enter(|| evaluate(plain_sqrt(&a))).unwrap();
    assert_eq!(bits(&y), bits(&cpu::sqrt(&a)));
    assert!(dev.stats().launches > 1, "several batches");
}

/// Temperatures: a value type of the user's that can live on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Celsius(pub Vec<f64>);

impl bach_runtime::DeviceValue for Celsius {
    const DTYPE: bach_runtime::DType = bach_runtime::DType::F64;
    fn to_device_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.0
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect::<Vec<u8>>()
            .into()
    }
    fn from_device_bytes(bytes: &[u8]) -> Self {
        Celsius(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }
}

/// Splits [`Celsius`] by element ranges.
pub struct CelsiusSplit;

impl bach_runtime::SplitType<Celsius> for CelsiusSplit {
    const KIND: bach_runtime::SplitKind = bach_runtime::SplitKind::Partition;
    fn elements(v: &Celsius) -> Option<usize> {
        Some(v.0.len())
    }
    fn split(v: &Celsius, r: std::ops::Range<usize>) -> Celsius {
        Celsius(v.0[r].to_vec())
    }
    fn merge(pieces: Vec<Celsius>) -> bach_runtime::Result<Celsius> {
        Ok(Celsius(pieces.into_iter().flat_map(|p| p.0).collect()))
    }
}

/// Warmer by `by` degrees (the `add_scalar_f64` kernel does the same).
#[bach_runtime::offload(split = CelsiusSplit, gpu = "add_scalar")]
pub fn warmer(t: &Celsius, by: f64) -> Celsius {
    Celsius(t.0.iter().map(|x| x + by).collect())
}

#[test]
fn registered_user_types_run_on_the_device() {
    bach_runtime::register_device_value::<Celsius>();
    let t = Celsius((0..10_000).map(|i| i as f64 / 7.0).collect());
    let dev = Arc::new(SimulatedDevice::with_capacity(16 << 10));
    let g = graph_on(dev.clone());
    let got = g
        .enter(|| {
            let h = warmer(&warmer(&t, 1.5), -0.25);
            let e = g.explain(&h).unwrap();
            assert_eq!(e.stages[0].placement, Placement::Device, "{e}");
            evaluate(h)
        })
        .unwrap();
    assert_eq!(got, warmer::cpu(&warmer::cpu(&t, 1.5), -0.25));
    assert!(dev.stats().launches > 2, "several batches of two kernels");
}

#[test]
fn the_cost_model_predicts_the_pipelined_device_time() {
    // Large enough that bandwidth matters, small capacity so that it pages.
    let n = 200_000;
    let x = bs_inputs(n);
    for capacity in [1 << 30, 8 << 20, 1 << 20] {
        let dev = Arc::new(SimulatedDevice::with_capacity(capacity));
        let g = graph_on(dev.clone());
        let (call, put) =
            g.enter(|| workloads::bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]));
        let e = g.explain(&(call.clone(), put.clone())).unwrap();
        let stage = &e.stages[0];
        assert_eq!(stage.placement, Placement::Device, "{e}");
        g.evaluate((call, put)).unwrap();
        let stats = dev.stats();
        let batches = stats.uploads / 5;
        assert_eq!(stage.cost.batches, batches, "predicted batches ran: {e}");
        let batch = stage
            .batch_size
            .expect("device stages report their batch size");
        assert_eq!(n.div_ceil(batch) as u64, batches, "{e}");
        if capacity < 8 << 20 {
            assert!(batches >= 3, "pages through the device: {e}");
        }
        let predicted = stage.cost.device_s().unwrap();
        let modelled = stats.modelled_ns as f64 * 1e-9;
        assert!(
            (predicted - modelled).abs() <= 0.05 * modelled,
            "capacity {capacity}: predicted {predicted} s, device model {modelled} s\n{e}"
        );
        assert!(predicted <= stage.cost.device_serial_s().unwrap());
    }
}

/// `sq - sum(sq)` with `sq = a * a`, in `g`: two device stages (the sum must
/// be whole before the subtraction), with `sq` passed from the first to the
/// second. Returns the result and the plan.
fn square_minus_sum(
    g: &Graph,
    a: &Array1<f64>,
) -> (bach_runtime::Result<Array1<f64>>, bach_runtime::Explain) {
    g.enter(|| {
        let sq = np::multiply(a, a);
        let s = np::sum(&sq);
        let z = np::subtract_scalar(&sq, s);
        let e = g.explain(&z).unwrap();
        (g.evaluate(z), e)
    })
}

/// Checks `z` against eager CPU evaluation of [`square_minus_sum`].
fn check_square_minus_sum(a: &Array1<f64>, z: &Array1<f64>) {
    let sq = cpu::multiply(a, a);
    let z_ref = cpu::subtract_scalar(&sq, cpu::sum(&sq));
    let err = z
        .iter()
        .zip(&z_ref)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    // The sum's partials combine in another order than the CPU's.
    assert!(err <= 1e-9 * a.len() as f64, "{err}");
}

#[test]
fn intermediates_between_device_stages_stay_on_the_device() {
    // Stage 1: sq = a * a and its sum; stage 2: sq - sum (reads sq piece by
    // piece after the whole sum). sq never needs to visit the host.
    let n = 50_000;
    let a = uniform(n, -1.0, 1.0, 11);
    // Room for sq: kept; no room (sq over a quarter of the device): round trip.
    for (capacity, kept) in [(1 << 30, true), (1 << 20, false)] {
        let dev = Arc::new(SimulatedDevice::with_capacity(capacity));
        let g = graph_on(dev.clone());
        let (z, e) = square_minus_sum(&g, &a);
        assert_eq!(e.stages.len(), 2, "{e}");
        assert!(
            e.stages.iter().all(|s| s.placement == Placement::Device),
            "{e}"
        );
        assert_eq!(e.stages[0].kept_on_device, kept as usize, "{e}");
        check_square_minus_sum(&a, &z.unwrap());
        let stats = dev.stats();
        let n8 = 8 * n as u64;
        if kept {
            assert_eq!(stats.upload_bytes, n8, "only `a` goes up");
            assert!(
                stats.download_bytes < n8 + 8 * 1024,
                "only z and the sum's partials come down"
            );
            assert_eq!(e.stages[0].cost.bytes_down, 0, "{e}");
            assert_eq!(e.stages[1].cost.bytes_up, 0, "{e}");
        } else {
            assert_eq!(stats.upload_bytes, 2 * n8, "`a`, then sq again");
            assert!(stats.download_bytes >= 2 * n8, "sq and z come down");
        }
        assert_eq!(
            dev.in_use(),
            0,
            "kept values are freed after their last reader"
        );
        assert!(stats.peak_bytes as usize <= capacity);
    }
}

#[test]
fn in_memory_data_is_pipelined_and_paging_keeps_the_throughput() {
    // The device model's version of the paging target: with a memory budget of
    // 1/8 of the data, at least 90% of the in-memory throughput. The target is
    // for 2^26 elements; at 2^20 (64 times fewer, to keep the test fast) the
    // fixed costs per transfer and launch are scaled down 64 times, so that
    // they weigh what they would at 2^26.
    let n = 1 << 20;
    let x = bs_inputs(n);
    let data = 7 * 8 * n; // five inputs, two outputs
    let defaults = DeviceCosts::default();
    let costs = DeviceCosts {
        link_latency_s: defaults.link_latency_s / 64.0,
        launch_s: defaults.launch_s / 64.0,
        ..defaults
    };
    let run = |capacity: usize| {
        let dev = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
            capacity,
            costs,
            ..Default::default()
        }));
        let g = graph_on(dev.clone());
        let (call, put) =
            g.enter(|| workloads::bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]));
        let e = g.explain(&(call.clone(), put.clone())).unwrap();
        let (call, put) = g.evaluate((call, put)).unwrap();
        (dev.stats(), e, call, put)
    };
    let (in_memory, e_in, call, put) = run(1 << 40);
    let (paged, e_paged, call_paged, put_paged) = run(data / 8);
    assert_eq!(bits(&call), bits(&call_paged));
    assert_eq!(bits(&put), bits(&put_paged));
    // Even when everything fits, the stage is cut into batches that overlap.
    assert!(e_in.stages[0].cost.batches > 1, "{e_in}");
    assert!(
        in_memory.modelled_ns < in_memory.serial_ns * 3 / 4,
        "{in_memory:?}"
    );
    assert!(paged.peak_bytes as usize <= data / 8);
    let ratio = in_memory.modelled_ns as f64 / paged.modelled_ns as f64;
    eprintln!(
        "modelled: in memory {} us ({} serial), paged {} us; paged throughput {ratio:.3} of in-memory",
        in_memory.modelled_ns / 1000,
        in_memory.serial_ns / 1000,
        paged.modelled_ns / 1000
    );
    assert!(
        ratio >= 0.9,
        "paged throughput {ratio:.3} of in-memory\n{e_in}\n{e_paged}"
    );
}

/// A simulated device whose allocations all fail once a download has started:
/// the stages after the first one's downloads cannot run on it.
struct FailsAfterFirstDownload {
    inner: SimulatedDevice,
    failing: std::sync::atomic::AtomicBool,
}

impl Device for FailsAfterFirstDownload {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn free_memory(&self) -> usize {
        self.inner.free_memory()
    }
    fn alloc_on(&self, queue: Queue, bytes: usize) -> bach_runtime::Result<DeviceBuffer> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::DeviceOutOfMemory {
                requested: bytes,
                free: 0,
            });
        }
        self.inner.alloc_on(queue, bytes)
    }
    fn upload_on(&self, queue: Queue, src: &[u8], dst: &DeviceBuffer) -> bach_runtime::Result<()> {
        self.inner.upload_on(queue, src, dst)
    }
    fn launch_on(
        &self,
        queue: Queue,
        launch: &bach_runtime::Launch<'_>,
    ) -> bach_runtime::Result<()> {
        self.inner.launch_on(queue, launch)
    }
    fn copy_on(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        src_offset: usize,
        dst: &DeviceBuffer,
        dst_offset: usize,
        bytes: usize,
    ) -> bach_runtime::Result<()> {
        self.inner
            .copy_on(queue, src, src_offset, dst, dst_offset, bytes)
    }
    fn start_download(
        &self,
        queue: Queue,
        src: &DeviceBuffer,
        bytes: usize,
    ) -> bach_runtime::Result<bach_runtime::PendingDownload> {
        self.failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.start_download(queue, src, bytes)
    }
    fn finish_download(
        &self,
        pending: bach_runtime::PendingDownload,
        dst: &mut [u8],
    ) -> bach_runtime::Result<()> {
        self.inner.finish_download(pending, dst)
    }
    fn record(&self, queue: Queue) -> bach_runtime::Result<bach_runtime::Event> {
        self.inner.record(queue)
    }
    fn wait(&self, queue: Queue, event: &bach_runtime::Event) -> bach_runtime::Result<()> {
        self.inner.wait(queue, event)
    }
    fn host_wait(&self, event: &bach_runtime::Event) -> bach_runtime::Result<()> {
        self.inner.host_wait(event)
    }
    fn synchronize(&self) -> bach_runtime::Result<()> {
        self.inner.synchronize()
    }
    fn stats(&self) -> bach_runtime::TransferStats {
        self.inner.stats()
    }
}

#[test]
fn a_stage_that_falls_back_to_the_cpu_downloads_the_values_kept_on_the_device() {
    let n = 50_000;
    let a = uniform(n, -1.0, 1.0, 12);
    let dev = Arc::new(FailsAfterFirstDownload {
        inner: SimulatedDevice::with_capacity(1 << 30),
        failing: false.into(),
    });
    let g = graph_with_budget(dev.clone(), None);
    let (z, e) = square_minus_sum(&g, &a);
    assert_eq!(e.stages[0].kept_on_device, 1, "{e}");
    check_square_minus_sum(&a, &z.unwrap());
    let last = g.last_run().unwrap();
    assert_eq!(last.stages[1].placement, Placement::Cpu, "{last}");
    assert!(last.stages[1].reason.contains("out of memory"), "{last}");
    // sq came down once, for the CPU stage.
    assert!(dev.stats().download_bytes >= 8 * n as u64);
    assert_eq!(dev.inner.in_use(), 0);
}

#[test]
fn a_forced_device_stage_of_unknown_size_is_not_cut_into_one_element_batches() {
    // The column means come from a whole-value stage: the size of the sqrt
    // stage is unknown when placing it. Forced onto the device, it must still
    // run in batches sized by memory, not in batches of one element.
    let m = ndarray::Array2::from_shape_fn((4, 20_000), |(i, j)| (i * 7 + j) as f64 / 3.0);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
    let g = graph_on(dev.clone());
    let y = g
        .enter(|| {
            let y = np::sqrt(&np::mean_axis0(&m));
            let e = g.explain(&y).unwrap();
            let last = e.stages.last().unwrap();
            assert_eq!(last.placement, Placement::Device, "{e}");
            assert_ne!(last.batch_size, Some(1), "{e}");
            evaluate(y)
        })
        .unwrap();
    // The column sums come from row batches (rows of 20000 numbers: a few rows
    // per CPU batch), merged in row order: equal up to the order of additions.
    let want = cpu::sqrt(&cpu::mean_axis0(&m));
    assert!(y
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() <= 1e-15 * b.abs()));
    let launches = dev.stats().launches;
    assert!(launches <= 8, "{launches} launches for 20000 elements");
}

#[test]
fn a_value_a_cpu_stage_also_reads_is_uploaded_again_and_the_plan_says_so() {
    // sq = a * a feeds a device stage (sq - sum) and a CPU stage (`moments`
    // has no kernel): it cannot stay on the device, so the device stage
    // uploads it. Placement must predict that upload, not assume sq is there.
    let n = 1 << 18;
    let a = uniform(n, -1.0, 1.0, 13);
    let fast = DeviceCosts {
        link_bytes_per_s: 1e12,
        link_latency_s: 1e-7,
        launch_s: 1e-7,
        elements_per_s: 1e12,
    };
    let dev = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
        capacity: 1 << 32,
        costs: fast,
        ..Default::default()
    }));
    let g = Graph::with_config(Config::default());
    g.set_device(Some(dev.clone()));
    let (z, e) = g.enter(|| {
        let sq = np::multiply(&a, &a);
        let z = np::subtract_scalar(&sq, np::sum(&sq));
        let m = np::mean(&sq);
        let e = g.explain(&(z.clone(), m.clone())).unwrap();
        (g.evaluate((z, m)), e)
    });
    let (z, _) = z.unwrap();
    check_square_minus_sum(&a, &z);
    let sub = e
        .stages
        .iter()
        .find(|s| s.ops == ["subtract_scalar"])
        .unwrap();
    assert_eq!(sub.placement, Placement::Device, "{e}");
    assert!(e.stages.iter().all(|s| s.kept_on_device == 0), "{e}");
    let n8 = 8 * n as u64;
    assert_eq!(sub.cost.bytes_up, n8, "sq goes up again: {e}");
    assert_eq!(dev.stats().upload_bytes, 2 * n8, "`a`, then sq");
    // The predicted batches are the ones that ran.
    let batches: u64 = e
        .stages
        .iter()
        .filter(|s| s.placement == Placement::Device)
        .map(|s| s.cost.batches)
        .sum();
    assert_eq!(dev.stats().uploads, batches, "{e}");
}

#[test]
fn kept_values_are_predicted_with_the_batches_that_run() {
    // With sq kept on the device, both stages' predictions (batch counts and
    // the device copies of the kept pieces included) match the device model.
    for n in [1 << 20, 3 << 20] {
        let a = uniform(n, -1.0, 1.0, 14);
        let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
        let g = graph_on(dev.clone());
        let (z, e) = square_minus_sum(&g, &a);
        check_square_minus_sum(&a, &z.unwrap());
        assert_eq!(e.stages[0].kept_on_device, 1, "{e}");
        let stats = dev.stats();
        assert_eq!(stats.uploads, e.stages[0].cost.batches, "{e}");
        assert_eq!(
            stats.downloads,
            e.stages[0].cost.batches + e.stages[1].cost.batches,
            "the sum's partials per batch of stage 0, z per batch of stage 1: {e}"
        );
        let predicted: f64 = e.stages.iter().map(|s| s.cost.device_s().unwrap()).sum();
        let modelled = stats.modelled_ns as f64 * 1e-9;
        assert!(
            (predicted - modelled).abs() <= 0.05 * modelled,
            "predicted {predicted} s, device model {modelled} s\n{e}"
        );
    }
}

#[test]
fn reduction_partials_count_against_the_memory_budget() {
    // Three batches in flight each hold a partial of the max beside their
    // pieces: the budget must leave room for them.
    let n = 4099;
    let x = bs_inputs(n);
    let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
    let budget = 4032;
    let g = graph_with_budget(dev.clone(), Some(budget));
    let (neg, m) = g
        .enter(|| evaluate((np::negative(&x[0]), np::max(&x[1]))))
        .unwrap();
    assert_eq!(bits(&neg), bits(&cpu::negative(&x[0])));
    assert_eq!(m, cpu::max(&x[1]));
    let peak = dev.stats().peak_bytes as usize;
    assert!(peak <= budget, "peak {peak} over the budget {budget}");
}

#[test]
fn concurrent_evaluations_share_one_device_correctly() {
    // Two threads page different data through one small device at once: their
    // batches interleave on the same queues and compete for memory (out of
    // memory halves batches or falls back to the CPU); results stay exact and
    // every queue access stays ordered.
    let dev = Arc::new(SimulatedDevice::with_capacity(96 << 10));
    std::thread::scope(|scope| {
        for seed in 0..4u64 {
            let dev = dev.clone();
            scope.spawn(move || {
                let n = 30_000 + seed as usize * 1000;
                let x: Vec<Array1<f64>> = (0..5)
                    .map(|i| uniform(n, 1.0, 100.0, seed * 10 + i))
                    .collect();
                let (call_ref, put_ref) =
                    workloads::cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
                let g = graph_on(dev);
                for _ in 0..3 {
                    let (call, put) = g
                        .enter(|| {
                            evaluate(workloads::bach::blackscholes(
                                &x[0], &x[1], &x[2], &x[3], &x[4],
                            ))
                        })
                        .unwrap();
                    assert_eq!(bits(&call), bits(&call_ref));
                    assert_eq!(bits(&put), bits(&put_ref));
                }
            });
        }
    });
    assert!(dev.stats().peak_bytes <= 96 << 10);
    assert!(dev.stats().launches > 0);
    assert_eq!(dev.in_use(), 0);
}

#[test]
fn a_memory_budget_is_never_exceeded_even_below_one_batch_in_flight() {
    // From below one element (the CPU runs the stage) through one and two
    // batches in flight to many: exact results, and the device never holds
    // more than the budget.
    let n = 3000;
    let x = bs_inputs(n);
    let (call_ref, put_ref) = workloads::cpu::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
    let mut placements = Vec::new();
    for budget in [100usize, 400, 700, 1000, 4000, 64 << 10] {
        let dev = Arc::new(SimulatedDevice::with_capacity(1 << 30));
        let g = graph_with_budget(dev.clone(), Some(budget));
        let (call, put) = g
            .enter(|| {
                evaluate(workloads::bach::blackscholes(
                    &x[0], &x[1], &x[2], &x[3], &x[4],
                ))
            })
            .unwrap();
        assert_eq!(bits(&call), bits(&call_ref), "budget {budget}");
        assert_eq!(bits(&put), bits(&put_ref), "budget {budget}");
        let peak = dev.stats().peak_bytes as usize;
        assert!(peak <= budget, "budget {budget}: peak {peak}");
        placements.push(g.last_run().unwrap().stages[0].placement);
    }
    assert_eq!(
        placements[0],
        Placement::Cpu,
        "100 bytes hold no element: {placements:?}"
    );
    assert_eq!(
        *placements.last().unwrap(),
        Placement::Device,
        "{placements:?}"
    );
}
