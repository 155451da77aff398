//! These tests need NVRTC (not a GPU). Without it they print why and pass, unless
//! `BACH_REQUIRE_NVRTC=1` (set in CI), which makes them fail.

use super::*;
use crate::device::cuda::tests::{nvrtc_or_skip, NUMPY_CU};

const SM_90: ComputeCapability = ComputeCapability::new(9, 0);

/// A kernel source named `name` with text `code`.
const fn source(name: &'static str, code: &'static str) -> KernelSource {
    KernelSource { name, code }
}

/// Every kernel `numpy.cu` must define (see the naming convention at its top).
fn expected_kernels() -> Vec<String> {
    let mut names = Vec::new();
    for dtype in ["f32", "f64"] {
        for op in ["add", "subtract", "multiply", "divide", "power"] {
            names.push(format!("{op}_{dtype}"));
            names.push(format!("{op}_scalar_{dtype}"));
            names.push(format!("scalar_{op}_{dtype}"));
        }
        for op in [
            "minimum",
            "maximum",
            "greater",
            "less",
            "greater_equal",
            "less_equal",
            "equal",
            "not_equal",
        ] {
            names.push(format!("{op}_{dtype}"));
            names.push(format!("{op}_scalar_{dtype}"));
        }
        for op in [
            "negative",
            "abs",
            "sqrt",
            "exp",
            "log",
            "log2",
            "log10",
            "sin",
            "cos",
            "tan",
            "arcsin",
            "arccos",
            "arctan",
            "erf",
            "square",
            "where",
            "where_scalar",
            "mask",
            "sum",
            "min",
            "max",
        ] {
            names.push(format!("{op}_{dtype}"));
        }
    }
    for op in ["logical_and", "logical_or", "logical_not"] {
        names.push(format!("{op}_bool"));
    }
    names
}

#[test]
fn numpy_cu_compiles_to_cubin_and_ptx_for_sm_90() {
    if !nvrtc_or_skip() {
        return;
    }
    let src = NUMPY_CU;
    eprintln!(
        "NVRTC {}, archs {:?}",
        nvrtc_version().unwrap(),
        supported_archs().unwrap()
    );

    let cubin = compile_for_target(&src, Target::cubin(SM_90)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&cubin.code[..4], b"\x7fELF", "a CUBIN is an ELF image");
    assert!(!cubin.from_cache);

    let ptx = compile_for_target(&src, Target::ptx(SM_90)).unwrap_or_else(|e| panic!("{e}"));
    let text = ptx.ptx().expect("PTX is text");
    assert!(text.contains(".target sm_90"), "PTX targets compute_90");
    let missing: Vec<String> = expected_kernels()
        .into_iter()
        .filter(|k| !text.contains(&format!(".entry {k}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "kernels missing from numpy.cu's PTX: {missing:?}"
    );
    // The f32 kernels use the float overloads of the math functions: no double detour.
    let mut kernel = "";
    for line in text.lines() {
        if let Some(rest) = line.split(".entry ").nth(1) {
            kernel = rest.split('(').next().unwrap_or("");
        }
        assert!(
            !(kernel.ends_with("_f32") && line.contains("cvt.f64.f32")),
            "float->double conversion in {kernel}: {line}"
        );
    }
}

#[test]
fn a_broken_source_gives_an_error_with_the_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let src = source(
        "broken.cu",
        "extern \"C\" __global__ void k(float* x) { x[0] = undefined_thing; }",
    );
    let err = compile_for_target(&src, Target::cubin(SM_90)).unwrap_err();
    match &err {
        CudaError::Compile {
            source_name,
            status,
            log,
            ..
        } => {
            assert_eq!(source_name, "broken.cu");
            assert_eq!(status, "NVRTC_ERROR_COMPILATION");
            assert!(log.contains("undefined_thing"), "log: {log}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("broken.cu") && message.contains("undefined_thing"),
        "{message}"
    );
    // `compile` reports the source error too, rather than falling back to PTX.
    let err = compile(&src, SM_90, None).unwrap_err();
    assert!(matches!(err, CudaError::Compile { .. }), "{err:?}");
}

#[test]
fn compile_uses_and_fills_the_cache() {
    if !nvrtc_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bach-kernel-cache-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let cache = KernelCache::new(&dir);
    let src = NUMPY_CU;

    let first = compile(&src, SM_90, Some(&cache)).unwrap();
    assert_eq!(first.target, Target::cubin(SM_90));
    assert!(!first.from_cache);
    let second = compile(&src, SM_90, Some(&cache)).unwrap();
    assert!(second.from_cache);
    assert_eq!(first.code, second.code);

    let entries: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one entry, no temporary files left: {entries:?}"
    );
    let version = nvrtc_version().unwrap();
    assert!(
        entries[0].starts_with("numpy-")
            && entries[0].ends_with(&format!(".sm_90.nvrtc{version}.cubin"))
    );

    // A different source is a different entry.
    let other = concat!(
        include_str!("../../../../../annotated-libs/kernels/common.cuh"),
        include_str!("../../../../../annotated-libs/kernels/numpy.cu"),
        "\n// changed\n"
    );
    let third = compile(&source("numpy.cu", other), SM_90, Some(&cache)).unwrap();
    assert!(!third.from_cache);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_arch_newer_than_nvrtc_falls_back_to_ptx() {
    if !nvrtc_or_skip() {
        return;
    }
    let src = source(
        "tiny.cu",
        "extern \"C\" __global__ void k(float* x) { x[0] = 1.0f; }",
    );
    let module = compile(&src, ComputeCapability::new(99, 9), None).unwrap();
    assert_eq!(module.target.kind, CodeKind::Ptx);
    assert_eq!(Some(&module.target.arch), supported_archs().unwrap().last());
    assert!(module.ptx().unwrap().contains(".entry k("));
}

#[test]
fn target_choice() {
    let supported = [75, 80, 86, 89, 90, 100, 120];
    assert_eq!(choose_target(SM_90, &supported), Some(Target::cubin(SM_90)));
    assert_eq!(
        choose_target(ComputeCapability::new(8, 7), &supported),
        Some(Target {
            kind: CodeKind::Ptx,
            arch: 86
        })
    );
    assert_eq!(
        choose_target(ComputeCapability::new(7, 0), &supported),
        None
    );
}

#[test]
fn cache_keys_differ_by_source_target_and_version() {
    let v13 = NvrtcVersion {
        major: 13,
        minor: 0,
    };
    let a = source("numpy.cu", "a");
    let key = CacheKey::new(&a, Target::cubin(SM_90), v13);
    assert!(key.file_name().starts_with("numpy-"));
    assert!(
        key.file_name().ends_with(".sm_90.nvrtc13.0.cubin"),
        "{}",
        key.file_name()
    );
    assert_ne!(
        key,
        CacheKey::new(&source("numpy.cu", "b"), Target::cubin(SM_90), v13)
    );
    assert_ne!(
        key.file_name(),
        CacheKey::new(&a, Target::ptx(SM_90), v13).file_name()
    );
    let v131 = NvrtcVersion {
        major: 13,
        minor: 1,
    };
    assert_ne!(
        key.file_name(),
        CacheKey::new(&a, Target::cubin(SM_90), v131).file_name()
    );
    // Stable across runs and Rust versions (FNV-1a).
    assert_eq!(
        key.file_name(),
        CacheKey::new(&a, Target::cubin(SM_90), v13).file_name()
    );
}

#[test]
fn cache_store_is_atomic_and_load_reads_back() {
    let dir = std::env::temp_dir().join(format!("bach-kernel-cache-store-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let cache = KernelCache::new(&dir);
    let key = CacheKey::new(
        &source("x.cu", "x"),
        Target::ptx(SM_90),
        NvrtcVersion {
            major: 13,
            minor: 0,
        },
    );
    assert_eq!(cache.load(&key), None);
    let path = cache.store(&key, b"ptx one").unwrap();
    assert_eq!(path, cache.path(&key));
    cache.store(&key, b"ptx two").unwrap();
    assert_eq!(cache.load(&key).as_deref(), Some(&b"ptx two"[..]));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_nvrtc_compilation_reports_why() {
    let Err(reason) = ensure_nvrtc() else {
        return;
    };
    let err = compile(&source("x.cu", ""), SM_90, None).unwrap_err();
    assert!(
        matches!(&err, CudaError::Unavailable(r) if *r == reason),
        "{err:?}"
    );
}
