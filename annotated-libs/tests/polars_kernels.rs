//! The polars module's kernels without a GPU: its source (`common.cuh`,
//! `numpy.cu`, `polars.cu`) compiled as host C++ with `kernels/host_emulation.h`
//! and run over edge values, the total-order comparisons compared with polars'
//! own `gt`/`lt`; and the same source compiled by NVRTC, every kernel the
//! annotations name present in the PTX.
//!
//! Needs a C++ compiler (`$CXX`, else `g++`) and NVRTC; without one the
//! check prints why and passes, unless `BACH_REQUIRE_GXX=1` / `BACH_REQUIRE_NVRTC=1`.

use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;

use annotated_libs::polars::polars_core::prelude::{ChunkCompareIneq, Float64Chunked};
use annotated_libs::polars::BACH_KERNELS;

const KERNELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels");

type Launch = unsafe extern "C" fn(u32, u32, extern "C" fn(*mut c_void), *mut c_void);
type WithScalar<O> = unsafe extern "C" fn(u64, *const f64, f64, *mut O);

/// The module's source as a host library, or `None` (with a message).
fn host_library() -> Option<libloading::Library> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".to_string());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let source = dir.join(format!("polars-{}-{}.cu", std::process::id(), unique()));
    let lib_path = dir.join(format!("libpolars-{}-{}.so", std::process::id(), unique()));
    std::fs::write(&source, BACH_KERNELS.code).expect("write the source");
    let output = Command::new(&cxx)
        .args(["-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-include"])
        .arg(format!("{KERNELS_DIR}/host_emulation.h"))
        .args(["-x", "c++"])
        .arg(&source)
        .arg("-o")
        .arg(&lib_path)
        .output();
    let _ = std::fs::remove_file(&source);
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let reason = format!("cannot run the C++ compiler `{cxx}`: {e}");
            assert!(
                std::env::var("BACH_REQUIRE_GXX").as_deref() != Ok("1"),
                "BACH_REQUIRE_GXX=1 but {reason}"
            );
            eprintln!("skipping the polars host kernel check: {reason}");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "{cxx} failed on the polars kernels:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // SAFETY: the library just built; its initialisers only set up thread-locals.
    let lib = unsafe { libloading::Library::new(&lib_path) }.expect("load the kernels");
    let _ = std::fs::remove_file(&lib_path);
    Some(lib)
}

/// Runs `body` once per thread of a 3 x 5 grid (several blocks of several threads).
fn launch_grid<F: Fn() + Sync>(launch: Launch, body: &F) {
    extern "C" fn trampoline<F: Fn() + Sync>(ctx: *mut c_void) {
        // SAFETY: `ctx` is the `&F` below, alive for the whole launch.
        unsafe { (*(ctx as *const F))() }
    }
    // SAFETY: `bach_host_launch` calls `trampoline::<F>(ctx)` and returns after
    // every emulated thread has finished.
    unsafe { launch(3, 5, trampoline::<F>, body as *const F as *mut c_void) }
}

/// Runs the array-scalar kernel `name` (`(n, const double* a, double s, O* out)`:
/// polars.cu's comparisons write `bool`, its arithmetic `double`) over `a` with
/// scalar `s` on a 3 x 5 grid; `fill` is what `out` holds before the launch.
fn run<O: Copy + Send + Sync>(
    lib: &libloading::Library,
    name: &str,
    a: &[f64],
    s: f64,
    fill: O,
) -> Vec<O> {
    // SAFETY: the signatures of `bach_host_launch` (host_emulation.h) and of the
    // array-scalar kernels (polars.cu), with `O` the kernel's output type.
    let (launch, kernel) = unsafe {
        (
            *lib.get::<Launch>(b"bach_host_launch\0").unwrap(),
            *lib.get::<WithScalar<O>>(format!("{name}\0").as_bytes())
                .unwrap(),
        )
    };
    let mut out = vec![fill; a.len()];
    let (n, pa, po) = (
        a.len() as u64,
        a.as_ptr() as usize,
        out.as_mut_ptr() as usize,
    );
    let body = move || unsafe { kernel(n, pa as *const f64, s, po as *mut O) };
    launch_grid(launch, &body);
    out
}

/// Values at the edges of the kernels' arithmetic, and the crime index's thresholds.
const EDGES: [f64; 13] = [
    f64::NAN,
    -f64::NAN,
    0.0,
    -0.0,
    1.0,
    -1.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MIN_POSITIVE / 2.0,
    f64::MAX,
    500000.0,
    0.02,
    0.01,
];

#[test]
fn total_order_comparisons_match_polars() {
    let Some(lib) = host_library() else { return };
    let edges = EDGES;
    let a = Float64Chunked::from_vec("a".into(), edges.to_vec());
    for &s in &edges {
        let gt: Vec<bool> = a.gt(s).iter().map(|b| b.expect("no nulls")).collect();
        let lt: Vec<bool> = a.lt(s).iter().map(|b| b.expect("no nulls")).collect();
        assert_eq!(
            run(&lib, "tot_gt_scalar_f64", &edges, s, false),
            gt,
            "gt {s}"
        );
        assert_eq!(
            run(&lib, "tot_lt_scalar_f64", &edges, s, false),
            lt,
            "lt {s}"
        );
    }
}

#[test]
fn scalar_arithmetic_is_polars_bit_for_bit() {
    // polars divides by s as a multiplication by 1 / s and returns the column
    // itself for + 0 and - 0: the kernels the annotations name must agree to
    // the bit, or a device plan would differ from the CPU one (and flip rows
    // at the crime index's thresholds).
    let Some(lib) = host_library() else { return };
    let mut values = EDGES.to_vec();
    // Values where x / 100000 and x * 1e-5 round differently are common.
    values.extend((0..2000).map(|i| 123456.789 + i as f64 * 77.7));
    let a = Float64Chunked::from_vec("a".into(), values.clone());
    // Bits, except that every NaN is one NaN: the sign of a NaN result is not
    // specified (x86 and the C compiler disagree on `x + -NaN`).
    let canonical = |x: f64| {
        if x.is_nan() {
            f64::NAN.to_bits()
        } else {
            x.to_bits()
        }
    };
    let bits = |c: &Float64Chunked| -> Vec<u64> {
        c.iter().map(|v| canonical(v.expect("no nulls"))).collect()
    };
    let mut divisions_that_differ = 0;
    for s in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        2.0,
        2000.0,
        100000.0,
        3.0,
        f64::NAN,
        f64::INFINITY,
    ] {
        let cases: [(&str, Float64Chunked); 4] = [
            ("pl_add_scalar_f64", &a + s),
            ("pl_sub_scalar_f64", &a - s),
            ("pl_mul_scalar_f64", &a * s),
            ("pl_div_scalar_f64", &a / s),
        ];
        for (name, want) in cases {
            let got: Vec<u64> = run(&lib, name, &values, s, 0.5)
                .iter()
                .map(|&x| canonical(x))
                .collect();
            assert_eq!(got, bits(&want), "{name} with {s}");
        }
        divisions_that_differ += values
            .iter()
            .filter(|&&x| (x / s).to_bits() != (x * (1.0 / s)).to_bits())
            .count();
    }
    // The check is not vacuous: plain division differs from polars' somewhere.
    assert!(divisions_that_differ > 0);
}

#[test]
fn nvrtc_compiles_every_kernel_the_annotations_name() {
    let ptx = match bach_runtime::compile_to_ptx(&BACH_KERNELS, 9, 0) {
        Ok(ptx) => ptx,
        Err(bach_runtime::Error::DeviceUnavailable(reason)) => {
            assert!(
                std::env::var("BACH_REQUIRE_NVRTC").as_deref() != Ok("1"),
                "BACH_REQUIRE_NVRTC=1 but {reason}"
            );
            eprintln!("skipping the NVRTC check of the polars kernels: {reason}");
            return;
        }
        Err(e) => panic!("NVRTC rejected the polars kernels: {e}"),
    };
    for kernel in [
        "tot_gt_scalar",
        "tot_lt_scalar",
        "add",
        "subtract",
        "multiply",
        "divide",
        "pl_add_scalar",
        "pl_sub_scalar",
        "pl_mul_scalar",
        "pl_div_scalar",
        "mask",
        "where",
        "sum",
    ] {
        assert!(
            ptx.contains(&format!(".entry {kernel}_f64(")),
            "{kernel}_f64 missing"
        );
    }
}

/// A number no other call in this process has had: the host libraries of
/// tests running at once in one process get distinct names.
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
