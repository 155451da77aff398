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
