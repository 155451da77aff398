//! Tests that need no GPU run everywhere (the NVRTC ones skip without NVRTC unless
//! `BACH_REQUIRE_NVRTC=1`). Tests named `gpu_*` need a CUDA device: without one they print
//! why and pass, unless `BACH_REQUIRE_GPU=1`, which makes them fail. On a GPU machine:
//! `BACH_REQUIRE_GPU=1 cargo test -p bach-runtime --release -- device::cuda::tests::gpu_`.

use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::result::DriverError;

use super::calibrate::parse_costs;
use super::error::{from_cuda, gpu_err, kernel_not_found, CudaError};
use super::staging::{STAGING_CHUNK, STAGING_MAX_CHUNKS};
use super::*;
use crate::device::codec::DType;
use crate::device::{KernelSource, LaunchShape, MatrixRef};

/// `numpy.cu`, the kernels of the annotated NumPy library.
pub(super) const NUMPY_CU: KernelSource = KernelSource {
    name: "numpy.cu",
    code: concat!(
        include_str!("../../../../annotated-libs/kernels/common.cuh"),
        include_str!("../../../../annotated-libs/kernels/numpy.cu")
    ),
};
const MIB: usize = 1 << 20;

#[test]
fn elementwise_launches_cover_n_with_at_most_32_blocks_per_sm() {
    assert_eq!(elementwise_blocks(0, 132), 1);
    assert_eq!(elementwise_blocks(1, 132), 1);
    assert_eq!(elementwise_blocks(256, 132), 1);
    assert_eq!(elementwise_blocks(257, 132), 2);
    assert_eq!(elementwise_blocks(1_000_000, 132), 3907);
    assert_eq!(elementwise_blocks(100_000_000, 132), 132 * 32);
    assert_eq!(elementwise_blocks(100_000_000, 0), 32);
}

#[test]
fn reductions_get_one_block_per_partial() {
    use super::launch::grid_blocks;
    let elementwise = grid_blocks("add_f64", 1_000_000, LaunchShape::Elementwise, 132);
    assert_eq!(elementwise, Ok(3907));
    let reduction = LaunchShape::Reduction { partials: 7 };
    assert_eq!(grid_blocks("sum_f64", 1_000_000, reduction, 132), Ok(7));
    let huge = LaunchShape::Reduction {
        partials: usize::MAX,
    };
    assert_eq!(grid_blocks("sum_f64", 1, huge, 132), Ok(i32::MAX as u32));
    let none = LaunchShape::Reduction { partials: 0 };
    assert_eq!(
        grid_blocks("sum_f64", 1, none, 132),
        Err(Error::Device(
            "reduction kernel `sum_f64` launched with no partials".into()
        ))
    );
}

#[test]
fn error_messages_carry_their_context() {
    assert_eq!(
        kernel_not_found("add_f64", "numpy.cu"),
        Error::Device("kernel `add_f64` not found in numpy.cu".into())
    );
    let oom = DriverError(driver_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let Error::Device(text) = gpu_err("allocating 4096 bytes", oom) else {
        panic!("a driver error is Error::Device")
    };
    assert!(
        text.starts_with("allocating 4096 bytes: CUDA_ERROR_OUT_OF_MEMORY"),
        "{text}"
    );
    assert_eq!(
        from_cuda(CudaError::Unavailable(GpuUnavailable::NoNvrtc)),
        Error::DeviceUnavailable(GpuUnavailable::NoNvrtc.to_string())
    );
}

#[test]
fn open_without_a_gpu_is_gpu_unavailable_not_a_panic() {
    match discovery::availability() {
        Err(reason) => {
            let err = CudaDevice::open(0).unwrap_err();
            assert_eq!(err, Error::DeviceUnavailable(reason.to_string()));
            assert!(err.to_string().starts_with("device unavailable: "), "{err}");
            eprintln!("no GPU here: {err}");
        }
        Ok(devices) => {
            let missing = CudaDevice::open(devices.len()).unwrap_err();
            assert!(
                matches!(missing, Error::DeviceUnavailable(_)),
                "{missing:?}"
            );
        }
    }
}

/// `true` when NVRTC is loadable; otherwise prints why and returns `false`, or panics when
/// `BACH_REQUIRE_NVRTC=1`.
pub(super) fn nvrtc_or_skip() -> bool {
    let Err(reason) = discovery::ensure_nvrtc() else {
        return true;
    };
    if std::env::var("BACH_REQUIRE_NVRTC").as_deref() == Ok("1") {
        panic!("BACH_REQUIRE_NVRTC=1 but {reason}");
    }
    eprintln!("skipping: {reason}");
    false
}

// ---- on a GPU ----------------------------------------------------------------------------------

/// The first CUDA device, or `None` (printing why) when there is none; panics instead when
/// `BACH_REQUIRE_GPU=1`.
fn gpu_or_skip() -> Option<(MutexGuard<'static, ()>, Arc<CudaDevice>)> {
    // One GPU test at a time, so that memory measurements see only their own allocations.
    static GPU_TESTS: Mutex<()> = Mutex::new(());
    let guard = lock(&GPU_TESTS);
    match CudaDevice::open(0) {
        Ok(device) => Some((guard, device)),
        Err(e) => {
            if std::env::var("BACH_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("BACH_REQUIRE_GPU=1 but {e}");
            }
            eprintln!("skipping (needs a CUDA device): {e}");
            None
        }
    }
}

fn no_emulation(_: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    unreachable!("a CUDA device runs compiled kernels")
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn upload_f64(device: &CudaDevice, v: &[f64]) -> DeviceBuffer {
    let buf = device.alloc(v.len() * 8).unwrap();
    device.upload(&f64_bytes(v), &buf).unwrap();
    buf
}

fn download_f64(device: &CudaDevice, buf: &DeviceBuffer, n: usize) -> Vec<f64> {
    let mut bytes = vec![0u8; n * 8];
    device.download(buf, &mut bytes).unwrap();
    f64s(&bytes)
}

fn launch(device: &CudaDevice, kernel: &str, n: usize, args: Vec<KernelArg<'_>>) -> Result<()> {
    launch_shaped(device, kernel, n, LaunchShape::Elementwise, args)
}

fn launch_shaped(
    device: &CudaDevice,
    kernel: &str,
    n: usize,
    shape: LaunchShape,
    args: Vec<KernelArg<'_>>,
) -> Result<()> {
    device.launch(&Launch {
        source: NUMPY_CU,
        kernel: kernel.to_string(),
        n,
        args,
        shape,
        reference: &no_emulation,
    })
}

#[test]
fn gpu_alloc_upload_download_roundtrip() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    eprintln!("{}", device.name());
    assert!(device.free_memory() > 0);
    let before = device.stats();
    // Sizes around the staging chunk (8 MiB), odd ones, and several chunks.
    for bytes in [
        0,
        1,
        1000,
        4096,
        3 * MIB + 7,
        STAGING_CHUNK,
        STAGING_CHUNK + 1,
        20 * MIB + 3,
    ] {
        let data: Vec<u8> = (0..bytes).map(|i| (i * 7 + i / 251) as u8).collect();
        let buf = device.alloc(bytes).unwrap();
        assert_eq!(buf.len(), bytes);
        device.upload(&data, &buf).unwrap();
        let mut back = vec![0xAAu8; bytes];
        device.download(&buf, &mut back).unwrap();
        assert!(back == data, "roundtrip of {bytes} bytes");
        if bytes > 10 {
            let mut prefix = vec![0u8; 10];
            device.download(&buf, &mut prefix).unwrap();
            assert_eq!(prefix, data[..10]);
        }
    }
    let small = device.alloc(16).unwrap();
    assert!(matches!(
        device.upload(&[0u8; 17], &small),
        Err(Error::Device(_))
    ));
    assert!(matches!(
        device.download(&small, &mut [0u8; 17]),
        Err(Error::Device(_))
    ));
    let simulated = crate::device::SimulatedDevice::with_capacity(1024)
        .alloc(16)
        .unwrap();
    assert!(matches!(
        device.upload(&[0u8; 4], &simulated),
        Err(Error::Device(_))
    ));
    let stats = device.stats();
    assert_eq!(stats.uploads - before.uploads, 8);
    assert_eq!(stats.downloads - before.downloads, 8 + 6);
    assert!(stats.peak_bytes >= 20 * MIB as u64);
}

#[test]
fn gpu_add_f64_on_1e6_elements_matches_the_cpu() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 1_000_000;
    let a: Vec<f64> = (0..n).map(|i| (i as f64).sin() * 1e3).collect();
    let b: Vec<f64> = (0..n).map(|i| 1.0 / (i as f64 + 0.5)).collect();
    let (da, db) = (upload_f64(&device, &a), upload_f64(&device, &b));
    let out = device.alloc(n * 8).unwrap();
    launch(
        &device,
        "add_f64",
        n,
        vec![KernelArg::In(&da), KernelArg::In(&db), KernelArg::Out(&out)],
    )
    .unwrap();
    let got = download_f64(&device, &out, n);
    let mismatches = (0..n)
        .filter(|&i| got[i].to_bits() != (a[i] + b[i]).to_bits())
        .count();
    assert_eq!(
        mismatches, 0,
        "add_f64 differs from the CPU in {mismatches} elements"
    );
    assert_eq!(device.stats().launches, 1);
}

#[test]
fn gpu_scalar_arguments_and_f32_kernels() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 300_001;
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
    let da = device.alloc(n * 4).unwrap();
    device
        .upload(
            &a.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>(),
            &da,
        )
        .unwrap();
    let out = device.alloc(n * 4).unwrap();
    // out = 10 - a
    launch(
        &device,
        "scalar_subtract_f32",
        n,
        vec![
            KernelArg::In(&da),
            KernelArg::F32(10.0),
            KernelArg::Out(&out),
        ],
    )
    .unwrap();
    let mut bytes = vec![0u8; n * 4];
    device.download(&out, &mut bytes).unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    for i in 0..n {
        assert_eq!(got[i], 10.0 - a[i], "element {i}");
    }
    // f64 scalar: out = a * 3
    let x: Vec<f64> = (0..n).map(|i| i as f64 - 7.5).collect();
    let dx = upload_f64(&device, &x);
    let out64 = device.alloc(n * 8).unwrap();
    launch(
        &device,
        "multiply_scalar_f64",
        n,
        vec![
            KernelArg::In(&dx),
            KernelArg::F64(3.0),
            KernelArg::Out(&out64),
        ],
    )
    .unwrap();
    let got = download_f64(&device, &out64, n);
    assert!((0..n).all(|i| got[i] == x[i] * 3.0));
}

#[test]
fn gpu_sum_f64_writes_one_partial_per_output_entry() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 1_000_003;
    let a: Vec<f64> = (0..n).map(|i| (i % 1000) as f64).collect();
    let da = upload_f64(&device, &a);
    for partials in [1, 7, 1024] {
        let out = upload_f64(&device, &vec![f64::NAN; partials]);
        launch_shaped(
            &device,
            "sum_f64",
            n,
            LaunchShape::Reduction { partials },
            vec![KernelArg::In(&da), KernelArg::Out(&out)],
        )
        .unwrap();
        let got = download_f64(&device, &out, partials);
        assert!(
            got.iter().all(|p| p.is_finite()),
            "every partial written: {got:?}"
        );
        assert_eq!(
            got.iter().sum::<f64>(),
            a.iter().sum::<f64>(),
            "{partials} partials"
        );
    }
    let none = device.alloc(8).unwrap();
    assert!(matches!(
        launch_shaped(
            &device,
            "sum_f64",
            n,
            LaunchShape::Reduction { partials: 0 },
            vec![KernelArg::In(&da), KernelArg::Out(&none)]
        ),
        Err(Error::Device(_))
    ));
}

#[test]
fn gpu_missing_kernel_is_an_error() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let buf = device.alloc(8).unwrap();
    let err = launch(
        &device,
        "add_f128",
        1,
        vec![KernelArg::In(&buf), KernelArg::Out(&buf)],
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::Device("kernel `add_f128` not found in numpy.cu".into())
    );
    // The device still works.
    launch(
        &device,
        "negative_f64",
        1,
        vec![KernelArg::In(&buf), KernelArg::Out(&buf)],
    )
    .unwrap();
    device.synchronize().unwrap();
}

#[test]
fn gpu_the_allocator_reuses_buffers_over_10000_cycles() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 1 << 20;
    let first = device.allocator_stats();
    let mut free_after_first = 0;
    let mut reserved = None;
    for cycle in 0..10_000 {
        // An evaluate-sized batch: two inputs, an output, a tail-batch buffer.
        let a = device.alloc(n * 8).unwrap();
        let b = device.alloc(n * 8).unwrap();
        let out = device.alloc(n * 8).unwrap();
        let tail = device.alloc(12_345 * 8).unwrap();
        if cycle % 1000 == 0 {
            let x: Vec<f64> = (0..n).map(|i| (i + cycle) as f64).collect();
            device.upload(&f64_bytes(&x), &a).unwrap();
            device.upload(&f64_bytes(&x), &b).unwrap();
            launch(
                &device,
                "add_f64",
                n,
                vec![KernelArg::In(&a), KernelArg::In(&b), KernelArg::Out(&out)],
            )
            .unwrap();
            let got = download_f64(&device, &out, n);
            assert!((0..n).all(|i| got[i] == 2.0 * x[i]), "cycle {cycle}");
        }
        drop((a, b, out, tail));
        let s = device.allocator_stats();
        assert_eq!(s.live_bytes, first.live_bytes);
        let now = s.live_bytes + s.cached_bytes;
        assert_eq!(
            *reserved.get_or_insert(now),
            now,
            "the cache grew in cycle {cycle}"
        );
        if cycle == 0 {
            // After the module is loaded and the staging buffers exist.
            free_after_first = device.free_memory();
        }
    }
    let s = device.allocator_stats();
    assert!(
        s.driver_allocations - first.driver_allocations <= 4,
        "{s:?}"
    );
    assert!(s.reuses - first.reuses >= 4 * 9_999, "{s:?}");
    // The cached blocks count as free memory, and nothing leaked: free memory did not shrink.
    let slack = 16 * MIB; // other processes
    assert!(
        device.free_memory() + slack >= free_after_first,
        "{} < {free_after_first}",
        device.free_memory()
    );
    let freed = device.empty_cache().unwrap();
    assert_eq!(freed, s.cached_bytes);
    assert_eq!(device.allocator_stats().cached_blocks, 0);
}

#[test]
fn gpu_a_reused_block_is_ordered_after_the_kernel_that_read_it() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 1 << 22;
    let outs: Vec<(f64, DeviceBuffer)> = (0..8)
        .map(|k| {
            let input = upload_f64(&device, &vec![k as f64; n]);
            let out = device.alloc(n * 8).unwrap();
            launch(
                &device,
                "square_f64",
                n,
                vec![KernelArg::In(&input), KernelArg::Out(&out)],
            )
            .unwrap();
            drop(input); // reused by the next iteration's upload, while the kernel may still run
            ((k * k) as f64, out)
        })
        .collect();
    for (expected, out) in &outs {
        assert!(
            download_f64(&device, out, n).iter().all(|x| x == expected),
            "{expected}"
        );
    }
}

#[test]
fn gpu_the_memory_budget_is_enforced() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let device = device.with_memory_budget(64 * MIB);
    assert_eq!(device.memory_budget(), Some(64 * MIB));
    assert!(device.free_memory() <= 64 * MIB);
    let a = device.alloc(48 * MIB).unwrap();
    assert_eq!(device.free_memory(), 16 * MIB);
    match device.alloc(32 * MIB) {
        Err(Error::DeviceOutOfMemory { requested, free }) => {
            assert_eq!((requested, free), (32 * MIB, 16 * MIB))
        }
        other => panic!("expected DeviceOutOfMemory, got {other:?}"),
    }
    drop(a);
    assert_eq!(device.free_memory(), 64 * MIB);
    // Another size class: the cached 48 MiB block is released to stay in the budget.
    let b = device.alloc(32 * MIB).unwrap();
    let s = device.allocator_stats();
    assert!(s.live_bytes + s.cached_bytes <= 64 * MIB, "{s:?}");
    drop(b);
    device.set_memory_budget(None);
    assert!(device.free_memory() > 64 * MIB);
}

#[test]
fn gpu_driver_out_of_memory_is_typed_and_recoverable() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let cached = device.alloc(16 * MIB).unwrap();
    drop(cached);
    match device.alloc(device.total_memory() * 2) {
        Err(Error::DeviceOutOfMemory { requested, .. }) => {
            assert_eq!(requested, device.total_memory() * 2)
        }
        other => panic!("expected DeviceOutOfMemory, got {other:?}"),
    }
    assert_eq!(
        device.allocator_stats().cached_bytes,
        0,
        "the cache was emptied before giving up"
    );
    let again = upload_f64(&device, &[1.0, 2.0]);
    assert_eq!(download_f64(&device, &again, 2), vec![1.0, 2.0]);
}

#[test]
fn gpu_calibration_gives_plausible_costs() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let plausible = |c: &DeviceCosts| {
        assert!(
            (1e9..=1e12).contains(&c.link_bytes_per_s),
            "bandwidth: {c:?}"
        );
        assert!(
            c.link_latency_s > 0.0 && c.link_latency_s < 1e-3,
            "latency: {c:?}"
        );
        assert!(c.launch_s > 0.0 && c.launch_s < 1e-3, "launch: {c:?}");
        assert!(
            c.elements_per_s > 1e8 && c.elements_per_s.is_finite(),
            "throughput: {c:?}"
        );
    };
    let stats = device.stats();
    let start = std::time::Instant::now();
    let first = device.costs();
    eprintln!(
        "{}: {first:?} in {:?} ({} measurement(s); cache {:?})",
        device.name(),
        start.elapsed(),
        device.cost_measurements(),
        device.cost_cache_path()
    );
    assert_ne!(
        first,
        DeviceCosts::default(),
        "the calibration failed (see the warning)"
    );
    plausible(&first);
    // The second call is served from memory.
    let measurements = device.cost_measurements();
    assert!(measurements <= 1);
    let again = std::time::Instant::now();
    assert_eq!(device.costs(), first);
    assert!(
        again.elapsed() < std::time::Duration::from_millis(1),
        "{:?}",
        again.elapsed()
    );
    assert_eq!(device.cost_measurements(), measurements);

    // A fresh measurement (not from the cache), well under a second once the kernel is loaded.
    let start = std::time::Instant::now();
    let measured = device.recalibrate().unwrap();
    let took = start.elapsed();
    eprintln!("recalibrated in {took:?}: {measured:?}");
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    plausible(&measured);
    assert_eq!(device.cost_measurements(), measurements + 1);
    assert_eq!(device.costs(), measured);
    assert_eq!(device.cost_measurements(), measurements + 1);
    if let Some(path) = device.cost_cache_path() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_costs(&text), Ok(measured), "{}", path.display());
    }
    // The calibration does not show in the device's counters.
    assert_eq!(device.stats(), stats);
    assert_eq!(device.allocator_stats().live_bytes, 0);
}

#[test]
fn gpu_buffers_may_outlive_their_device() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let buf = upload_f64(&device, &[1.0; 1000]);
    drop(device);
    drop(buf); // returned to the allocator's pool, freed with it
}

fn launch_on(
    device: &CudaDevice,
    queue: Queue,
    kernel: &str,
    n: usize,
    args: Vec<KernelArg<'_>>,
) -> Result<()> {
    device.launch_on(
        queue,
        &Launch {
            source: NUMPY_CU,
            kernel: kernel.to_string(),
            n,
            args,
            shape: LaunchShape::Elementwise,
            reference: &no_emulation,
        },
    )
}

fn finish_f64(device: &CudaDevice, pending: PendingDownload) -> Vec<f64> {
    let mut bytes = vec![0u8; pending.len()];
    device.finish_download(pending, &mut bytes).unwrap();
    f64s(&bytes)
}

#[test]
fn gpu_pipelined_batches_on_three_queues_give_the_right_values() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 1 << 20;
    let before = device.stats();
    // Two rounds, so that the second one reuses the first one's blocks across queues.
    for round in 0..2 {
        let mut pending = Vec::new();
        for batch in 0..8 {
            let x: Vec<f64> = (0..n)
                .map(|i| (round * 8 + batch) as f64 * 1e3 + i as f64 * 0.5)
                .collect();
            let input = device.alloc_on(Queue::Upload, n * 8).unwrap();
            device
                .upload_on(Queue::Upload, &f64_bytes(&x), &input)
                .unwrap();
            let uploaded = device.record(Queue::Upload).unwrap();
            device.wait(Queue::Compute, &uploaded).unwrap();
            let out = device.alloc_on(Queue::Compute, n * 8).unwrap();
            launch_on(
                &device,
                Queue::Compute,
                "square_f64",
                n,
                vec![KernelArg::In(&input), KernelArg::Out(&out)],
            )
            .unwrap();
            let computed = device.record(Queue::Compute).unwrap();
            device.wait(Queue::Download, &computed).unwrap();
            pending.push((
                x,
                device.start_download(Queue::Download, &out, n * 8).unwrap(),
            ));
            // Dropped while the copies and the kernel may still run: later batches reuse
            // the blocks, ordered by their fences.
            drop((input, out, uploaded, computed));
        }
        for (batch, (x, download)) in pending.into_iter().enumerate() {
            let got = finish_f64(&device, download);
            let wrong = (0..n).filter(|&i| got[i] != x[i] * x[i]).count();
            assert_eq!(
                wrong, 0,
                "round {round}, batch {batch}: {wrong} wrong values"
            );
        }
    }
    let stats = device.stats();
    assert_eq!(stats.uploads - before.uploads, 16);
    assert_eq!(stats.launches - before.launches, 16);
    assert_eq!(stats.downloads - before.downloads, 16);
    assert_eq!(
        stats.download_bytes - before.download_bytes,
        16 * n as u64 * 8
    );
    device.synchronize().unwrap();
    let s = device.allocator_stats();
    assert_eq!(s.live_bytes, 0, "{s:?}");
}

#[test]
fn gpu_a_block_reused_on_another_queue_waits_for_its_last_kernel() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let n = 1 << 24;
    let input = upload_f64(&device, &vec![3.0; n]);
    let x = device.alloc(n * 8).unwrap();
    // Keep the compute queue busy writing `x`, then free it at once.
    for _ in 0..20 {
        launch(
            &device,
            "negative_f64",
            n,
            vec![KernelArg::In(&input), KernelArg::Out(&x)],
        )
        .unwrap();
    }
    drop(x);
    let reuses = device.allocator_stats().reuses;
    let y = device.alloc_on(Queue::Upload, n * 8).unwrap();
    assert_eq!(
        device.allocator_stats().reuses,
        reuses + 1,
        "the freed block is reused"
    );
    let fresh: Vec<f64> = (0..n).map(|i| i as f64 + 0.25).collect();
    device
        .upload_on(Queue::Upload, &f64_bytes(&fresh), &y)
        .unwrap();
    let uploaded = device.record(Queue::Upload).unwrap();
    // Read back on the download queue: no kernel may overwrite the upload.
    device.wait(Queue::Download, &uploaded).unwrap();
    let back = device.start_download(Queue::Download, &y, n * 8).unwrap();
    // And computed on the compute queue.
    device.wait(Queue::Compute, &uploaded).unwrap();
    let out = device.alloc(n * 8).unwrap();
    launch(
        &device,
        "square_f64",
        n,
        vec![KernelArg::In(&y), KernelArg::Out(&out)],
    )
    .unwrap();
    let got = finish_f64(&device, back);
    assert_eq!((0..n).filter(|&i| got[i] != fresh[i]).count(), 0);
    let squared = download_f64(&device, &out, n);
    assert_eq!(
        (0..n)
            .filter(|&i| squared[i] != fresh[i] * fresh[i])
            .count(),
        0
    );
}

#[test]
fn gpu_a_pending_download_may_be_dropped_unfinished() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let bytes = 3 * STAGING_CHUNK + 5;
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let buf = device.alloc(bytes).unwrap();
    device.upload(&data, &buf).unwrap();
    let uploaded = device.record(Queue::Compute).unwrap();
    device.wait(Queue::Download, &uploaded).unwrap();
    for _ in 0..20 {
        let pending = device.start_download(Queue::Download, &buf, bytes).unwrap();
        drop(pending); // the copies may still be writing the staging chunks
    }
    let empty = device.start_download(Queue::Compute, &buf, 0).unwrap();
    assert!(empty.is_empty());
    drop(empty);
    // The chunks came back and are reused once their copies are done, with the right bytes.
    let mut back = vec![0u8; bytes];
    device.download(&buf, &mut back).unwrap();
    assert!(back == data);
    device.synchronize().unwrap();
    let (held, idle) = device.staging_chunks();
    assert_eq!(held, idle, "every chunk is back in the pool");
    assert!(held <= STAGING_MAX_CHUNKS);
    // Finishing into a slice of the wrong length is an error, as is another device's download.
    let pending = device.start_download(Queue::Download, &buf, 16).unwrap();
    assert!(matches!(
        device.finish_download(pending, &mut [0u8; 15]),
        Err(Error::Device(_))
    ));
    let sim = crate::device::SimulatedDevice::with_capacity(1024);
    let sim_buf = sim.alloc(16).unwrap();
    let foreign = sim.start_download(Queue::Download, &sim_buf, 16).unwrap();
    assert!(matches!(
        device.finish_download(foreign, &mut [0u8; 16]),
        Err(Error::Device(_))
    ));
    // A pending download may outlive its device.
    let late = device.start_download(Queue::Download, &buf, bytes).unwrap();
    drop(buf);
    drop(device);
    drop(late);
}

#[test]
fn gpu_zero_byte_transfers_need_no_copy() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let buf = device.alloc_on(Queue::Upload, 0).unwrap();
    device.upload_on(Queue::Upload, &[], &buf).unwrap();
    let pending = device.start_download(Queue::Download, &buf, 0).unwrap();
    assert_eq!(pending.len(), 0);
    device.finish_download(pending, &mut []).unwrap();
    device.download(&buf, &mut []).unwrap();
}

#[test]
fn gpu_the_pinned_pool_does_not_grow_over_1000_cycles() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let sizes = [1000, 3 * MIB + 7, STAGING_CHUNK + 1];
    let buffers: Vec<(Vec<u8>, DeviceBuffer)> = sizes
        .iter()
        .map(|&bytes| {
            let data: Vec<u8> = (0..bytes).map(|i| (i * 13 % 256) as u8).collect();
            (data, device.alloc(bytes).unwrap())
        })
        .collect();
    // Uploads and downloads on one queue: a finished download has waited for every earlier
    // copy, so each cycle needs at most 2 chunks in flight each way.
    let mut back = vec![0u8; STAGING_CHUNK + 1];
    for cycle in 0..1000 {
        for (data, buf) in &buffers {
            device.upload(data, buf).unwrap();
            let dst = &mut back[..data.len()];
            device.download(buf, dst).unwrap();
            if cycle % 100 == 0 {
                assert!(dst == &data[..], "cycle {cycle}");
            }
        }
        let (held, idle) = device.staging_chunks();
        assert!(held <= 4, "cycle {cycle}: {held} chunks");
        assert_eq!(held, idle, "cycle {cycle}: a chunk was not given back");
    }
    // Pipelined on three queues, with overlapping downloads: bounded by the pool's cap.
    for cycle in 0..1000 {
        let mut pending = Vec::new();
        for (data, buf) in &buffers {
            device.upload_on(Queue::Upload, data, buf).unwrap();
            let uploaded = device.record(Queue::Upload).unwrap();
            device.wait(Queue::Download, &uploaded).unwrap();
            pending.push(
                device
                    .start_download(Queue::Download, buf, data.len())
                    .unwrap(),
            );
        }
        for ((data, _), download) in buffers.iter().zip(pending) {
            let dst = &mut back[..data.len()];
            device.finish_download(download, dst).unwrap();
            if cycle % 100 == 0 {
                assert!(dst == &data[..], "cycle {cycle}");
            }
        }
        assert!(device.staging_chunks().0 <= STAGING_MAX_CHUNKS);
    }
    let (held, idle) = device.staging_chunks();
    assert_eq!(held, idle);
    assert!(held <= 8, "{held} chunks");
}

#[test]
fn gpu_events_order_queues_and_belong_to_their_device() {
    let Some((_gpu, device)) = gpu_or_skip() else {
        return;
    };
    let event = device.record(Queue::Compute).unwrap();
    device.wait(Queue::Download, &event).unwrap();
    device.host_wait(&event).unwrap();
    // Recycled events keep working.
    for _ in 0..1000 {
        let e = device.record(Queue::Upload).unwrap();
        device.wait(Queue::Compute, &e).unwrap();
    }
    device.synchronize().unwrap();
    let other = CudaDevice::open(device.ordinal()).unwrap();
    let foreign = other.record(Queue::Compute).unwrap();
    assert!(matches!(
        device.wait(Queue::Compute, &foreign),
        Err(Error::Device(_))
    ));
    assert!(matches!(device.host_wait(&foreign), Err(Error::Device(_))));
    let simulated = crate::device::SimulatedDevice::with_capacity(1024)
        .record(Queue::Compute)
        .unwrap();
    assert!(matches!(
        device.wait(Queue::Upload, &simulated),
        Err(Error::Device(_))
    ));
    drop(other);
    drop(foreign); // outlives its device
}

// ---- linear algebra (cuBLAS, cuSOLVER; linalg.rs): not yet run on a GPU --------------------------

#[test]
fn the_device_libraries_load_or_say_why_without_panicking() {
    for (status, library) in [
        (discovery::ensure_cublas(), "cuBLAS"),
        (discovery::ensure_cusolver(), "cuSOLVER"),
    ] {
        if let Err(reason) = status {
            assert!(reason.contains(library), "{reason}");
            eprintln!("{library} is not usable here: {reason}");
        }
    }
}

fn linalg_upload(dev: &CudaDevice, v: &[f64]) -> DeviceBuffer {
    let buf = dev.alloc(v.len() * 8).unwrap();
    dev.upload(&f64_bytes(v), &buf).unwrap();
    buf
}

fn linalg_download(dev: &CudaDevice, buf: &DeviceBuffer) -> Vec<f64> {
    let mut bytes = vec![0u8; buf.len()];
    dev.download(buf, &mut bytes).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn linalg_values(len: usize, seed: usize) -> Vec<f64> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0)
        .collect()
}

#[test]
fn gpu_gemm_in_every_transpose_combination_is_the_row_major_product() {
    let Some((_guard, dev)) = gpu_or_skip() else {
        return;
    };
    let (m, n, k) = (70, 33, 45);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2);
        let (a, b, c0) = (
            linalg_values(1 + ar * lda, 1),
            linalg_values(br * ldb, 2),
            linalg_values(m * ldc, 3),
        );
        let (abuf, bbuf, cbuf) = (
            linalg_upload(&dev, &a),
            linalg_upload(&dev, &b),
            linalg_upload(&dev, &c0),
        );
        let g = Gemm {
            dtype: DType::F64,
            m,
            n,
            k,
            alpha: 2.0,
            a: MatrixRef::new(&abuf, lda).at(8),
            transpose_a: ta,
            b: MatrixRef::new(&bbuf, ldb),
            transpose_b: tb,
            beta: -1.0,
            c: MatrixRef::new(&cbuf, ldc),
        };
        dev.gemm_on(Queue::Compute, &g).unwrap();
        let got = linalg_download(&dev, &cbuf);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    let x = if ta {
                        a[1 + p * lda + i]
                    } else {
                        a[1 + i * lda + p]
                    };
                    let y = if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                    acc += x * y;
                }
                // Small integers: exact in any order.
                assert_eq!(
                    got[i * ldc + j],
                    2.0 * acc - c0[i * ldc + j],
                    "({i}, {j}) {ta} {tb}"
                );
            }
            for j in n..ldc {
                assert_eq!(got[i * ldc + j], c0[i * ldc + j], "padding");
            }
        }
    }
}

#[test]
fn gpu_syevd_gives_ascending_orthonormal_eigenpairs() {
    let Some((_guard, dev)) = gpu_or_skip() else {
        return;
    };
    let n = 40;
    // A symmetric matrix: B + B^T.
    let b: Vec<f64> = (0..n * n).map(|i| ((i as f64) * 0.731).sin()).collect();
    let a: Vec<f64> = (0..n * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            b[i * n + j] + b[j * n + i]
        })
        .collect();
    let m = linalg_upload(&dev, &a);
    let (values_buf, vectors_buf) = (dev.alloc(n * 8).unwrap(), dev.alloc(n * n * 8).unwrap());
    dev.symmetric_eigen_on(
        Queue::Compute,
        &SymmetricEigen {
            dtype: DType::F64,
            n,
            matrix: &m,
            matrix_offset: 0,
            values: &values_buf,
            values_offset: 0,
            vectors: &vectors_buf,
            vectors_offset: 0,
            largest: n,
            reference: &|_| unreachable!("a GPU runs cuSOLVER"),
        },
    )
    .unwrap();
    let (w, v) = (
        linalg_download(&dev, &values_buf),
        linalg_download(&dev, &vectors_buf),
    );
    assert!(w.windows(2).all(|p| p[0] <= p[1]), "ascending: {w:?}");
    assert_eq!(linalg_download(&dev, &m), a, "the matrix is not changed");
    for j in 0..n {
        let vj = &v[j * n..(j + 1) * n];
        let norm: f64 = vj.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-12, "unit vector {j}");
        for i in 0..n {
            let av: f64 = (0..n).map(|p| a[i * n + p] * vj[p]).sum();
            assert!((av - w[j] * vj[i]).abs() < 1e-10, "A v = w v for pair {j}");
        }
    }
}
