//! Differential tests of the annotated polars columns: every operation, and
//! the crime index built from them, evaluated by Bach at several batch sizes
//! and on a small simulated device, against plain polars run eagerly.

use std::sync::Arc;

use annotated_libs::polars::polars_core::prelude::{
    BooleanChunked, ChunkCompareIneq, Float64Chunked,
};
use annotated_libs::polars::{ops, LazySeries, SeriesSplit};
use annotated_libs::workloads::{polars_bach, polars_cpu};
use bach_runtime::{
    Config, Device, DevicePolicy, Graph, Placement, SimulatedDevice, SimulatedDeviceConfig,
    SplitType,
};

mod common;
use common::{fast_device, uniform};

/// A column with values around the crime index's thresholds, and NaN,
/// infinities and signed zeros sprinkled in.
fn column(n: usize, lo: f64, hi: f64, seed: u64) -> Float64Chunked {
    let mut v = uniform(n, lo, hi, seed).to_vec();
    let specials = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        500000.0,
    ];
    for (i, x) in v.iter_mut().enumerate() {
        if (i * 7 + seed as usize).is_multiple_of(97) {
            *x = specials[(i / 97) % specials.len()];
        }
    }
    Float64Chunked::from_vec("x".into(), v)
}

fn bits(c: &Float64Chunked) -> Vec<Option<u64>> {
    c.iter().map(|x| x.map(f64::to_bits)).collect()
}

fn mask_bits(c: &BooleanChunked) -> Vec<Option<bool>> {
    c.iter().collect()
}

fn cpu_graph(batch: usize) -> Graph {
    Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        batch_size: Some(batch),
        threads: Some(2),
        ..Config::default()
    })
}

/// A simulated device of `capacity` bytes, every stage placed on it.
fn device_graph(capacity: usize) -> (Graph, Arc<SimulatedDevice>) {
    let device = Arc::new(SimulatedDevice::new(SimulatedDeviceConfig {
        capacity,
        ..Default::default()
    }));
    let g = Graph::with_config(Config {
        device: DevicePolicy::Device,
        ..Config::default()
    });
    g.set_device(Some(device.clone()));
    (g, device)
}

/// Every elementwise operation of the lazy column, recorded from three inputs.
fn record<'a>(
    a: &'a Float64Chunked,
    b: &'a Float64Chunked,
    c: &'a Float64Chunked,
) -> Vec<LazySeries<'a>> {
    let (a, b, c) = (LazySeries::new(a), LazySeries::new(b), LazySeries::new(c));
    let gt = a.gt(0.25);
    let lt = b.lt(-0.5);
    vec![
        &a + &b,
        &a - &c,
        &b * &c,
        &a / &b,
        &a + 2.5,
        &b - 1e3,
        &c * -3.0,
        &a / 7.0,
        a.mask(&gt, 9.0),
        b.mask(&lt, f64::NAN),
        a.zip_with(&lt, &c),
    ]
}

/// The same, eagerly on plain polars.
fn eager(a: &Float64Chunked, b: &Float64Chunked, c: &Float64Chunked) -> Vec<Float64Chunked> {
    let gt = a.gt(0.25);
    let lt = b.lt(-0.5);
    vec![
        a + b,
        a - c,
        b * c,
        a / b,
        a + 2.5,
        b - 1e3,
        c * -3.0,
        a / 7.0,
        ops::mask::cpu(a, &gt, 9.0),
        ops::mask::cpu(b, &lt, f64::NAN),
        ops::zip_with::cpu(&lt, a, c),
    ]
}

#[test]
fn every_operation_matches_plain_polars_at_every_batch_size_and_on_a_device() {
    let n = 3000;
    let (a, b, c) = (
        column(n, -1.0, 1.0, 1),
        column(n, -1.0, 1.0, 2),
        column(n, -1.0, 1.0, 3),
    );
    let want: Vec<_> = eager(&a, &b, &c).iter().map(bits).collect();
    for batch in [1, 13, 256, n, 1 << 20] {
        let g = cpu_graph(batch);
        let got = g.enter(|| g.evaluate(record(&a, &b, &c))).unwrap();
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(&bits(got), want, "operation {i}, batch {batch}");
        }
    }
    // A device that holds a few hundred rows at a time: many pages.
    let (g, device) = device_graph(1 << 16);
    let got = g.enter(|| g.evaluate(record(&a, &b, &c))).unwrap();
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(&bits(got), want, "operation {i} on the device");
    }
    let run = g.last_run().unwrap();
    assert!(
        run.stages.iter().all(|s| s.placement == Placement::Device),
        "{run}"
    );
    assert!(device.stats().peak_bytes <= 1 << 16);
    assert_eq!(device.in_use(), 0);
}

#[test]
fn comparisons_follow_polars_total_order_on_every_placement() {
    let a = Float64Chunked::from_vec(
        "a".into(),
        vec![
            f64::NAN,
            1.0,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            2.0,
        ],
    );
    for s in [0.0, -0.0, 1.0, f64::NAN, f64::INFINITY] {
        let want = (mask_bits(&a.gt(s)), mask_bits(&a.lt(s)));
        let lazy = |g: &Graph| {
            g.enter(|| {
                let x = LazySeries::new(&a);
                g.evaluate((x.gt(s), x.lt(s)))
            })
            .unwrap()
        };
        let (gt, lt) = lazy(&cpu_graph(2));
        assert_eq!((mask_bits(&gt), mask_bits(&lt)), want, "s = {s}");
        let (gt, lt) = lazy(&device_graph(1 << 20).0);
        assert_eq!(
            (mask_bits(&gt), mask_bits(&lt)),
            want,
            "s = {s} on the device"
        );
    }
}

#[test]
fn the_crime_index_matches_plain_polars() {
    let n = 5000;
    let tp = column(n, 1e5, 1e6, 4);
    let ap = column(n, 5e4, 5e5, 5);
    let nr = column(n, 0.0, 2e3, 6);
    let want = polars_cpu::crime_index(&tp, &ap, &nr);
    let close = |got: f64| {
        (got.is_nan() && want.is_nan()) || (got - want).abs() <= 1e-9 * want.abs().max(1.0)
    };
    for batch in [1, 100, 4096, 1 << 20] {
        let g = cpu_graph(batch);
        let got = g
            .enter(|| {
                let (tp, ap, nr) = (
                    LazySeries::new(&tp),
                    LazySeries::new(&ap),
                    LazySeries::new(&nr),
                );
                g.evaluate(polars_bach::crime_index(&tp, &ap, &nr))
            })
            .unwrap();
        assert!(close(got), "batch {batch}: {got} vs {want}");
    }
    for fast in [false, true] {
        let (g, _) = device_graph(1 << 18);
        if fast {
            // Placement by the cost model, with a device predicted far faster.
            g.set_config(Config::default());
            g.set_device(Some(fast_device(None)));
        }
        let got = g
            .enter(|| {
                let (tp, ap, nr) = (
                    LazySeries::new(&tp),
                    LazySeries::new(&ap),
                    LazySeries::new(&nr),
                );
                g.evaluate(polars_bach::crime_index(&tp, &ap, &nr))
            })
            .unwrap();
        assert!(close(got), "device: {got} vs {want}");
        let run = g.last_run().unwrap();
        assert!(
            run.stages.iter().any(|s| s.placement == Placement::Device),
            "{run}"
        );
    }
}

#[test]
fn series_split_slices_without_copying_and_appends() {
    let a = column(1000, 0.0, 1.0, 7);
    let pieces: Vec<Float64Chunked> = [0..0, 0..300, 300..301, 301..1000]
        .map(|r| SeriesSplit::split(&a, r))
        .to_vec();
    // A slice shares the column's buffer.
    let base = a.cont_slice().unwrap().as_ptr();
    assert_eq!(
        pieces[2].cont_slice().unwrap().as_ptr(),
        base.wrapping_add(300)
    );
    let merged: Float64Chunked = SeriesSplit::merge(pieces).unwrap();
    assert_eq!(bits(&merged), bits(&a));
    let empty: Float64Chunked = SeriesSplit::merge(Vec::new()).unwrap();
    assert_eq!(empty.len(), 0);
}

#[test]
fn mismatched_lengths_are_refused_before_anything_runs() {
    let a = column(10, 0.0, 1.0, 8);
    let b = column(11, 0.0, 1.0, 9);
    let g = cpu_graph(4);
    let err = g
        .enter(|| {
            let (a, b) = (LazySeries::new(&a), LazySeries::new(&b));
            g.evaluate(a.mask(&b.gt(0.5), 1.0))
        })
        .unwrap_err();
    assert!(
        matches!(err, bach_runtime::Error::LengthMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn mask_is_polars_set_bit_for_bit_nulls_included() {
    use annotated_libs::polars::polars_core::prelude::ChunkSet;
    let a = column(2000, -1.0, 1.0, 10);
    let with_nulls: Float64Chunked = a
        .iter()
        .enumerate()
        .map(|(i, x)| if i % 5 == 0 { None } else { x })
        .collect();
    let cond: BooleanChunked = a
        .iter()
        .enumerate()
        .map(|(i, x)| if i % 7 == 0 { None } else { x.map(|x| x > 0.0) })
        .collect();
    for a in [&a, &with_nulls] {
        for value in [0.5, f64::NAN, -0.0] {
            let want = a.set(&cond, Some(value)).unwrap();
            assert_eq!(
                bits(&ops::mask::cpu(a, &cond, value)),
                bits(&want),
                "{value}"
            );
        }
    }
}
