//! Compiling through the launch path: NVRTC, the module cache and the disk cache, with a
//! stand-in for the driver's module loading (no GPU). Without NVRTC these tests print why and
//! pass, unless `BACH_REQUIRE_NVRTC=1`.

use super::*;
use crate::device::cuda::calibrate::{CALIBRATION_KERNEL, CALIBRATION_KERNELS};
use crate::device::cuda::discovery::ensure_nvrtc;
use crate::device::cuda::tests::{nvrtc_or_skip, NUMPY_CU};
use crate::error::Error;

fn temp_cache(tag: &str) -> (KernelCache, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bach-cuda-device-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (KernelCache::new(&dir), dir)
}

/// The kernel names in PTX text (`.entry name(`).
fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| l.split(".entry ").nth(1))
        .map(|rest| rest.split('(').next().unwrap_or("").trim().to_string())
        .collect()
}

/// Whether `name` is a NUL-terminated string in `image` (an ELF string table entry).
fn has_symbol(image: &[u8], name: &str) -> bool {
    let needle: Vec<u8> = [&[0u8][..], name.as_bytes(), &[0u8][..]].concat();
    image.windows(needle.len()).any(|w| w == needle.as_slice())
}

#[test]
fn every_numpy_cu_kernel_compiles_through_the_launch_path() {
    if !nvrtc_or_skip() {
        return;
    }
    let (disk, dir) = temp_cache("numpy");
    // The names every module must define: the PTX entries of the whole source.
    let ptx = compile::compile_for_target(
        &NUMPY_CU,
        compile::Target::ptx(ComputeCapability::new(8, 0)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names = ptx_entries(ptx.ptx().unwrap());
    assert!(
        names.len() >= 100,
        "only {} kernels in numpy.cu",
        names.len()
    );
    for expected in [
        "add_f64",
        "add_scalar_f32",
        "where_f64",
        "sum_f64",
        "logical_not_bool",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    for cc in [ComputeCapability::new(8, 0), ComputeCapability::new(9, 0)] {
        let cache = ModuleCache::<CompiledModule>::new(cc, Some(disk.clone()));
        let mut loads = 0;
        let module = cache
            .get(&NUMPY_CU, |m| {
                loads += 1;
                Ok(m.clone())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(module.target, compile::Target::cubin(cc));
        assert_eq!(&module.code[..4], b"\x7fELF");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !has_symbol(&module.code, n))
            .collect();
        assert!(
            missing.is_empty(),
            "kernels missing from the sm_{} CUBIN: {missing:?}",
            cc.arch()
        );
        // Cached per source: no second compilation or load, also for a copy of the source
        // at another address.
        let again = cache.get(&NUMPY_CU, |_| panic!("loaded twice")).unwrap();
        assert!(Arc::ptr_eq(&module, &again));
        let copy: &'static str = Box::leak(NUMPY_CU.code.to_string().into_boxed_str());
        let moved = KernelSource {
            name: "numpy.cu",
            code: copy,
        };
        let third = cache.get(&moved, |_| panic!("loaded twice")).unwrap();
        assert!(Arc::ptr_eq(&module, &third));
        assert_eq!(loads, 1);
    }
    // A new cache (a new device) reads the compiled code from disk.
    let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(9, 0), Some(disk));
    let module = cache.get(&NUMPY_CU, |m| Ok(m.clone())).unwrap();
    assert!(module.from_cache);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_calibration_kernel_compiles_through_the_launch_path() {
    if !nvrtc_or_skip() {
        return;
    }
    for cc in [ComputeCapability::new(8, 0), ComputeCapability::new(99, 0)] {
        let cache = ModuleCache::<CompiledModule>::new(cc, None);
        let module = cache
            .get(&CALIBRATION_KERNELS, |m| Ok(m.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        match module.ptx() {
            Some(ptx) => assert_eq!(ptx_entries(ptx), vec![CALIBRATION_KERNEL.to_string()]),
            None => assert!(has_symbol(&module.code, CALIBRATION_KERNEL)),
        }
    }
}

#[test]
fn a_device_newer_than_nvrtc_gets_ptx_through_the_launch_path() {
    if !nvrtc_or_skip() {
        return;
    }
    let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(99, 0), None);
    let module = cache
        .get(&NUMPY_CU, |m| Ok(m.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(module.target.kind, CodeKind::Ptx);
    assert!(module.ptx().unwrap().contains(".entry add_f64("));
}

#[test]
fn a_broken_source_fails_once_with_the_nvrtc_log() {
    if !nvrtc_or_skip() {
        return;
    }
    const BROKEN: KernelSource = KernelSource {
        name: "broken.cu",
        code: "extern \"C\" __global__ void k(unsigned long long n, float* x) { x[0] = undefined_thing; }",
    };
    let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(9, 0), None);
    let err = cache
        .get(&BROKEN, |_| panic!("nothing to load"))
        .unwrap_err();
    let Error::Device(text) = &err else {
        panic!("expected Error::Device, got {err:?}")
    };
    assert!(
        text.contains("broken.cu") && text.contains("undefined_thing"),
        "{text}"
    );
    assert!(text.contains("NVRTC log"), "{text}");
    // Kept: the same error again, without recompiling.
    let start = std::time::Instant::now();
    assert_eq!(
        cache
            .get(&BROKEN, |_| panic!("nothing to load"))
            .unwrap_err(),
        err
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(50));
}

#[test]
fn without_nvrtc_the_launch_path_reports_gpu_unavailable() {
    let Err(reason) = ensure_nvrtc() else {
        return;
    };
    let cache = ModuleCache::<CompiledModule>::new(ComputeCapability::new(9, 0), None);
    let err = cache.get(&NUMPY_CU, |m| Ok(m.clone())).unwrap_err();
    assert_eq!(err, Error::DeviceUnavailable(reason.to_string()));
}
