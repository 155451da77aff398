use super::*;

#[test]
fn probing_never_panics_and_agrees_with_itself() {
    let cuda = libcuda_present();
    let _ = ensure_nvrtc();
    match devices() {
        Ok(devs) => {
            assert!(cuda);
            assert!(!devs.is_empty());
            for d in &devs {
                assert!(d.compute_capability.major >= 3, "{d:?}");
                assert!(d.total_memory > 0, "{d:?}");
            }
        }
        Err(GpuUnavailable::NoDriver) => assert!(!cuda),
        Err(reason) => eprintln!("no GPU: {reason}"),
    }
    if let Err(reason) = availability() {
        assert!(!reason.to_string().is_empty());
    }
}

#[test]
fn compute_capability_arch_round_trips() {
    let cc = ComputeCapability::new(9, 0);
    assert_eq!(cc.arch(), 90);
    assert_eq!(
        ComputeCapability::from_arch(86),
        ComputeCapability::new(8, 6)
    );
    assert_eq!(
        ComputeCapability::from_arch(120),
        ComputeCapability::new(12, 0)
    );
    assert_eq!(cc.to_string(), "9.0");
}

#[test]
fn gpu_status_says_why_in_one_line() {
    let status = gpu_status();
    let text = status.to_string();
    match &status.unavailable {
        Some(_) => {
            assert!(!status.is_available());
            assert!(text.starts_with("no GPU: "), "{text}");
            assert!(
                text.lines()
                    .next()
                    .unwrap()
                    .ends_with("(running on the CPU)"),
                "{text}"
            );
        }
        None => assert!(
            status.is_available() && text.starts_with("GPU available"),
            "{text}"
        ),
    }
    if !libcuda_present() {
        assert_eq!(status.unavailable, Some(GpuUnavailable::NoDriver));
        assert_eq!(text, "no GPU: libcuda.so not found (running on the CPU)");
    }
    let fake = GpuStatus {
        devices: vec![DeviceInfo {
            ordinal: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: ComputeCapability::new(9, 0),
            total_memory: 80 << 30,
        }],
        unavailable: Some(GpuUnavailable::NoNvrtc),
    };
    let text = fake.to_string();
    assert!(
        text.starts_with("no GPU: libnvrtc.so (CUDA 13) not found"),
        "{text}"
    );
    assert!(
        text.ends_with("device 0: NVIDIA H100 80GB HBM3 (compute capability 9.0, 80.0 GiB)"),
        "{text}"
    );
}

#[test]
fn an_nvrtc_older_than_the_bindings_is_too_old() {
    let v = NvrtcVersion::new;
    assert_eq!(MIN_NVRTC, v(12, 0));
    for old in [v(9, 2), v(10, 2), v(11, 0), v(11, 8)] {
        assert_eq!(
            check_nvrtc_version(old),
            Err(GpuUnavailable::NvrtcTooOld {
                found: old,
                required: MIN_NVRTC
            }),
            "{old}"
        );
    }
    for fine in [v(12, 0), v(12, 4), v(12, 9), v(13, 0), v(13, 1), v(14, 0)] {
        assert_eq!(check_nvrtc_version(fine), Ok(()), "{fine}");
    }
    // By number, not by text: 12.10 is newer than 12.9.
    assert!(v(12, 10) > v(12, 9) && v(11, 10) < v(12, 0));
    let err = check_nvrtc_version(v(11, 8)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("NVRTC 11.8 is too old: compiling kernels needs NVRTC 12.0 or newer"),
        "{text}"
    );
    let status = GpuStatus {
        devices: Vec::new(),
        unavailable: Some(err),
    };
    assert_eq!(
        status.to_string(),
        "no GPU: libnvrtc.so is NVRTC 11.8, older than the 12.0 that compiles the kernels \
         (see .ci/install-nvrtc.sh) (running on the CPU)"
    );
}

#[test]
fn the_nvrtc_version_is_read_from_the_library_cudarc_loads() {
    let names = nvrtc_candidates();
    if cfg!(target_os = "linux") {
        assert_eq!(names[0], "libnvrtc.so");
        for name in ["libnvrtc64_130.so", "libnvrtc.so.13", "libnvrtc.so.11"] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
    match (loadable_nvrtc_version(), ensure_nvrtc()) {
        (Some(found), Ok(())) => {
            assert!(found >= MIN_NVRTC, "{found}");
            assert_eq!(crate::device::cuda::nvrtc::nvrtc_version().unwrap(), found);
        }
        (Some(found), Err(GpuUnavailable::NvrtcTooOld { found: too_old, .. })) => {
            assert_eq!(found, too_old)
        }
        (None, result) => assert!(result.is_err(), "cudarc loaded an NVRTC the probe did not"),
        (Some(found), Err(reason)) => eprintln!("NVRTC {found} unusable: {reason}"),
    }
}
