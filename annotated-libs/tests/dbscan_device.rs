//! DBSCAN on a device: on the simulated device (small, so the rows page
//! through it in blocks) against linfa's labels; its kernels compiled by
//! NVRTC, and run as host C++ against the same arithmetic written in Rust.

mod common;

#[path = "common/host_cpp.rs"]
mod host_cpp;
use host_cpp::{launch, Ptr};

use annotated_libs::linfa::clustering::device::{self, block_rows, DeviceDbscanError};
use annotated_libs::linfa::clustering::{eager, DbscanError, DbscanParams};
use bach_runtime::{Device, SimulatedDevice};
use ndarray::Array2;

/// `n` points in `d` dimensions around `k` centers uniform in (-2, 2) plus unit normal noise,
/// then standardized; a few points pushed far out (noise) and a few halfway (borders).
fn data(n: usize, d: usize, k: usize, seed: u64) -> Array2<f64> {
    let centers = common::uniform(k * d, -2.0, 2.0, seed);
    let u = common::uniform(2 * n * d, 0.0, 1.0, seed + 1);
    let mut x = Array2::from_shape_fn((n, d), |(i, j)| {
        let t = 2 * (i * d + j);
        let normal = (-2.0 * (1.0 - u[t]).ln()).sqrt() * (std::f64::consts::TAU * u[t + 1]).cos();
        centers[(i % k) * d + j] + normal
    });
    annotated_libs::workloads::ndarray_cpu::standardize(&mut x);
    for i in (0..n).step_by(37) {
        x.row_mut(i).mapv_inplace(|v| v * 3.0);
    }
    x
}

fn params(n: usize, d: usize, k: usize) -> DbscanParams {
    let min_samples = ((n as f64 / k as f64) * 0.05).max(2.0).ceil() as usize;
    DbscanParams::new((d as f64).sqrt(), min_samples).unwrap()
}

#[test]
fn device_labels_are_linfas_whole_and_paged() {
    let (n, d, k) = (300, 48, 5);
    let x = data(n, d, k, 5);
    let p = params(n, d, k);
    let want = eager::dbscan_linear(&x, p).unwrap();
    assert!(want.iter().any(|&l| l == -1), "the data has noise: {want}");
    assert!(*want.iter().max().unwrap() >= 2, "and clusters: {want}");
    // All rows in one block; then blocks of 32 and of fewer rows than a tile.
    let whole = 8 * n + 2 * n * 8 * d + 4 * n;
    for capacity in [1 << 24, whole / 4, 8 * n + 2 * 20 * (8 * d + 4)] {
        let dev = SimulatedDevice::with_capacity(capacity);
        let got = device::dbscan(&dev, &x, p).unwrap();
        assert_eq!(got, want, "capacity {capacity}");
        let stats = dev.stats();
        assert!(stats.peak_bytes <= capacity as u64, "{stats:?}");
        if capacity < whole {
            // Paged: more uploads of row blocks than blocks.
            let blocks = n.div_ceil(block_rows(n, d, capacity).unwrap()) as u64;
            assert!(blocks > 1 && stats.uploads > blocks, "{stats:?}");
        }
    }
}

#[test]
fn border_points_join_the_cluster_linfa_reaches_first() {
    // Two groups of core points and one point within eps of both: linfa's scan
    // reaches it from the group seeded first (the one with the smaller indices).
    let mut rows: Vec<[f64; 2]> = vec![];
    for i in 0..4 {
        rows.push([10.0 + 0.1 * i as f64, 0.0]);
    }
    for i in 0..4 {
        rows.push([0.1 * i as f64, 0.0]);
    }
    rows.push([5.15, 0.0]); // 4.85 from the first group's last point, 4.85 from the second's
    rows.push([100.0, 0.0]);
    let x = Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
    let p = DbscanParams::new(4.9, 4).unwrap();
    let want = eager::dbscan_linear(&x, p).unwrap();
    assert_eq!(want.to_vec(), [0, 0, 0, 0, 1, 1, 1, 1, 0, -1]);
    for capacity in [1 << 20, 8 * 10 + 2 * 3 * (8 * 2 + 4)] {
        let dev = SimulatedDevice::with_capacity(capacity);
        assert_eq!(
            device::dbscan(&dev, &x, p).unwrap(),
            want,
            "capacity {capacity}"
        );
    }
}

#[test]
fn bad_input_and_too_little_memory_are_typed_errors() {
    let dev = SimulatedDevice::with_capacity(1 << 20);
    let p = DbscanParams::new(1.0, 3).unwrap();
    let mut x = data(40, 3, 2, 1);
    x[(7, 2)] = f64::NAN;
    let err = device::dbscan(&dev, &x, p).unwrap_err();
    assert!(
        matches!(
            err,
            DeviceDbscanError::Input(DbscanError::NonFinite { row: 7, col: 2, .. })
        ),
        "{err}"
    );
    x[(7, 2)] = f64::NEG_INFINITY;
    assert!(matches!(
        device::dbscan(&dev, &x, p),
        Err(DeviceDbscanError::Input(DbscanError::NonFinite {
            row: 7,
            ..
        }))
    ));
    // No memory for even one row beside the per-point state.
    let tiny = SimulatedDevice::with_capacity(8 * 40 + 10);
    let err = device::dbscan(&tiny, &data(40, 3, 2, 1), p).unwrap_err();
    assert!(
        matches!(
            err,
            DeviceDbscanError::Device(bach_runtime::Error::DeviceOutOfMemory { .. })
        ),
        "{err}"
    );
    // No rows, no features: as linfa (nothing; every point noise).
    assert_eq!(
        device::dbscan(&dev, &Array2::<f64>::zeros((0, 3)), p)
            .unwrap()
            .len(),
        0
    );
    let no_features = Array2::<f64>::zeros((5, 0));
    assert_eq!(
        device::dbscan(&dev, &no_features, p).unwrap(),
        eager::dbscan(&no_features, p).unwrap()
    );
    assert_eq!(dev.in_use(), 0, "every buffer freed");
}

#[test]
fn block_rows_fit_the_memory() {
    assert_eq!(block_rows(1000, 10, 1 << 30), Some(1000));
    let free = 8 * 1000 + 2 * 100 * (8 * 10 + 4);
    assert_eq!(block_rows(1000, 10, free), Some(96)); // a multiple of the tile
    assert_eq!(block_rows(1000, 10, 8 * 1000 + 2 * (8 * 10 + 4)), Some(1));
    assert_eq!(block_rows(1000, 10, 8 * 1000), None);
}

#[test]
fn dbscan_kernels_compile_with_nvrtc() {
    let ptx = match bach_runtime::compile_to_ptx(&device::DBSCAN_KERNELS, 9, 0) {
        Ok(ptx) => ptx,
        Err(bach_runtime::Error::DeviceUnavailable(reason))
            if std::env::var("BACH_REQUIRE_NVRTC").as_deref() != Ok("1") =>
        {
            eprintln!("skipping: {reason}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    for kernel in [
        "dbscan_count_f64",
        "dbscan_union_f64",
        "dbscan_compress",
        "dbscan_border_f64",
    ] {
        assert!(
            ptx.contains(&format!(".entry {kernel}(")),
            "{kernel} missing"
        );
    }
}

// ---- the kernels as host C++ ----------------------------------------------------------

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = 0.0;
    for (x, y) in a.iter().zip(b) {
        let diff = x - y;
        acc += diff * diff;
    }
    acc
}

fn find(parent: &[i32], mut x: usize) -> usize {
    while parent[x] as usize != x {
        x = parent[x] as usize;
    }
    x
}

type Count =
    unsafe extern "C" fn(u64, *const f64, *const f64, i32, i32, i32, f64, *const i32, *mut i32);
type Union = unsafe extern "C" fn(
    u64,
    *const f64,
    *const f64,
    i32,
    i32,
    i32,
    f64,
    i32,
    i32,
    *const i32,
    *const i32,
    *mut i32,
);
type Compress = unsafe extern "C" fn(u64, *const i32, *mut i32);
type Border = unsafe extern "C" fn(
    u64,
    *const f64,
    *const f64,
    i32,
    i32,
    i32,
    f64,
    i32,
    i32,
    *const i32,
    *const i32,
    *const i32,
    *mut i32,
);

#[test]
fn dbscan_kernels_as_host_cpp_match_the_rust_arithmetic() {
    let Some(lib) = host_cpp::host_kernels("dbscan.cu") else {
        return;
    };
    // 70 rows of 40 features: tiles cut rows (70 = 2 * 32 + 6) and features (40 = 32 + 8).
    let (n, d) = (70, 40);
    let x = data(n, d, 3, 9);
    let xs = x.as_slice().unwrap().to_vec();
    let p = params(n, d, 3);
    let eps2 = p.eps_squared();
    let near =
        |i: usize, j: usize| sq_dist(&xs[i * d..(i + 1) * d], &xs[j * d..(j + 1) * d]) < eps2;
    // SAFETY (each `get`): the Rust types above follow the kernels' parameter lists.
    let count: Count = unsafe { *lib.get(b"dbscan_count_f64\0").unwrap() };
    let union: Union = unsafe { *lib.get(b"dbscan_union_f64\0").unwrap() };
    let compress: Compress = unsafe { *lib.get(b"dbscan_compress\0").unwrap() };
    let border: Border = unsafe { *lib.get(b"dbscan_border_f64\0").unwrap() };
    let tiles = |q: usize, c: usize| (q.div_ceil(32) * c.div_ceil(32) * 256) as u64;

    // Counts: rows 0..70 against candidates 0..45 then 45..70, accumulated.
    let counts = vec![0i32; n];
    let (xp, cp) = (Ptr::of(&xs), Ptr::of(&counts));
    for (c0, c1) in [(0, 45), (45, 70)] {
        let xc = Ptr((xp.0) + c0 * d * 8);
        let elems = tiles(n, c1 - c0);
        // SAFETY: the buffers hold the rows and counts the arguments describe.
        launch(&lib, 2, device::TILE_THREADS as u32, || unsafe {
            count(
                elems,
                xp.c(),
                xc.c(),
                n as i32,
                (c1 - c0) as i32,
                d as i32,
                eps2,
                cp.c(),
                cp.m(),
            )
        });
    }
    let want: Vec<i32> = (0..n)
        .map(|i| (0..n).filter(|&j| near(i, j)).count() as i32)
        .collect();
    assert_eq!(counts, want);

    // Components of the core points: query rows 0..32 and 32..70 against all rows.
    let core: Vec<i32> = want
        .iter()
        .map(|&c| i32::from(c as usize >= p.min_samples()))
        .collect();
    assert!(core.contains(&0) && core.contains(&1), "{core:?}");
    let parent: Vec<i32> = (0..n as i32).collect();
    let (corep, pp) = (Ptr::of(&core), Ptr::of(&parent));
    for (q0, q1) in [(0, 32), (32, 70)] {
        let xq = Ptr(xp.0 + q0 * d * 8);
        let elems = tiles(q1 - q0, n);
        // SAFETY: as above; `parent` holds n entries.
        launch(&lib, 3, device::TILE_THREADS as u32, || unsafe {
            union(
                elems,
                xq.c(),
                xp.c(),
                (q1 - q0) as i32,
                n as i32,
                d as i32,
                eps2,
                q0 as i32,
                0,
                corep.c(),
                pp.c(),
                pp.m(),
            )
        });
    }
    // SAFETY: as above.
    launch(&lib, 1, device::TILE_THREADS as u32, || unsafe {
        compress(n as u64, pp.c(), pp.m())
    });
    let mut want_parent: Vec<i32> = (0..n as i32).collect();
    for a in 0..n {
        for b in a + 1..n {
            if core[a] == 1 && core[b] == 1 && near(a, b) {
                let (ra, rb) = (find(&want_parent, a), find(&want_parent, b));
                want_parent[ra.max(rb)] = ra.min(rb) as i32;
            }
        }
    }
    let want_root: Vec<i32> = (0..n).map(|i| find(&want_parent, i) as i32).collect();
    assert_eq!(parent, want_root);

    // Border owners of rows 32..70.
    let owner = vec![i32::MAX; n - 32];
    let op = Ptr::of(&owner);
    let xq = Ptr(xp.0 + 32 * d * 8);
    let elems = tiles(n - 32, n);
    // SAFETY: as above; `owner` holds one entry per query row.
    launch(&lib, 2, device::TILE_THREADS as u32, || unsafe {
        border(
            elems,
            xq.c(),
            xp.c(),
            (n - 32) as i32,
            n as i32,
            d as i32,
            eps2,
            32,
            0,
            corep.c(),
            pp.c(),
            op.c(),
            op.m(),
        )
    });
    let want_owner: Vec<i32> = (32..n)
        .map(|a| {
            (0..n)
                .filter(|&b| core[a] == 0 && core[b] == 1 && near(a, b))
                .map(|b| want_root[b])
                .min()
                .unwrap_or(i32::MAX)
        })
        .collect();
    assert_eq!(owner, want_owner);
}
