//! The calibration's helpers and the cost cache's file format, without a GPU (the calibration
//! itself is tested on a GPU in `cuda/tests.rs`).

use super::*;

#[test]
fn the_median_ignores_order_and_non_finite_values() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[f64::NAN, f64::INFINITY]), None);
    assert_eq!(median(&[3.0]), Some(3.0));
    assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[1.0, 9.0, f64::NAN, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(&[2.0, f64::NEG_INFINITY, 1.0, 100.0]), Some(2.0));
    assert_eq!(median(&[f64::MAX, f64::MAX]), Some(f64::MAX), "no overflow");
}

#[test]
fn cost_cache_file_names_name_the_device_and_driver() {
    assert_eq!(
        cost_cache_file_name("NVIDIA H100 80GB HBM3", (9, 0), (13, 0)),
        "NVIDIA_H100_80GB_HBM3-cc90-driver13.0.txt"
    );
    assert_eq!(
        cost_cache_file_name("NVIDIA A100-SXM4-40GB", (8, 0), (12, 4)),
        "NVIDIA_A100-SXM4-40GB-cc80-driver12.4.txt"
    );
}

#[test]
fn the_cost_cache_format_roundtrips() {
    let measured = DeviceCosts {
        link_bytes_per_s: 25.123456789e9,
        link_latency_s: 1.0 / 98_765.0,
        launch_s: 4.2e-6,
        elements_per_s: 1.4e11 / 3.0,
    };
    for costs in [measured, DeviceCosts::default()] {
        let text = format_costs(&costs);
        assert_eq!(text.lines().count(), 4, "{text}");
        for (line, key) in text.lines().zip(COST_KEYS) {
            assert_eq!(line.split_whitespace().next(), Some(key), "{text}");
        }
        assert_eq!(
            parse_costs(&text),
            Ok(costs),
            "exactly, bit for bit: {text}"
        );
    }
    // Any order, comments, blank lines, extra spaces, CRLF, other spellings of numbers.
    let text = "# device costs\r\n\nlaunch_s   5e-6\r\nelements_per_s 50000000000\n  link_latency_s\t0.00001\nlink_bytes_per_s 2e10";
    assert_eq!(parse_costs(text), Ok(DeviceCosts::default()));
}

#[test]
fn the_cost_cache_parser_rejects_garbage() {
    let good = format_costs(&DeviceCosts::default());
    let without = |key: &str| -> String {
        good.lines()
            .filter(|l| !l.starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let garbage = [
        String::new(),
        "garbage".to_string(),
        "\u{0}\u{1}\u{fffd}".to_string(),
        without("launch_s"),
        format!("{good}launch_s 5e-6\n"),
        format!("{good}warp_size 32\n"),
        good.replace("launch_s 5e-6", "launch_s"),
        good.replace("launch_s 5e-6", "launch_s 5e-6 us"),
        good.replace("launch_s 5e-6", "launch_s five"),
        good.replace("launch_s 5e-6", "launch_s NaN"),
        good.replace("launch_s 5e-6", "launch_s inf"),
        good.replace("launch_s 5e-6", "launch_s 0"),
        good.replace("launch_s 5e-6", "launch_s -5e-6"),
        good.replace("launch_s 5e-6", "launch_s=5e-6"),
        good.replace("launch_s", "LAUNCH_S"),
    ];
    for text in &garbage {
        assert!(parse_costs(text).is_err(), "accepted {text:?}");
    }
    assert_eq!(
        parse_costs(&without("elements_per_s")),
        Err("`elements_per_s` is missing".to_string())
    );
    assert!(parse_costs(&good.replace("launch_s 5e-6", "launch_s 0"))
        .unwrap_err()
        .contains("line 3"));
}

#[test]
fn the_cost_cache_is_written_atomically() {
    let dir = std::env::temp_dir().join(format!("bach-cost-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("costs").join(cost_cache_file_name(
        "NVIDIA H100 80GB HBM3",
        (9, 0),
        (13, 0),
    ));
    let first = DeviceCosts::default();
    write_atomically(&path, &format_costs(&first)).unwrap();
    assert_eq!(
        parse_costs(&std::fs::read_to_string(&path).unwrap()),
        Ok(first)
    );
    let second = DeviceCosts {
        launch_s: 7e-6,
        ..first
    };
    write_atomically(&path, &format_costs(&second)).unwrap();
    assert_eq!(
        parse_costs(&std::fs::read_to_string(&path).unwrap()),
        Ok(second)
    );
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temporary file left: {entries:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// What a [`ModelDevice`] was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Upload(usize),
    Download(usize),
    Launch(usize),
    Sync,
}

/// A device as the calibration sees it, in model time: enqueueing costs the host `enqueue_s`;
/// the device runs its work in order, each piece once it is enqueued and the piece before it
/// is done; waiting for the device costs `sync_s` after it is done.
struct ModelDevice {
    host_s: f64,
    device_s: f64,
    enqueue_s: f64,
    sync_s: f64,
    copy_s: f64,
    bytes_per_s: f64,
    kernel_s: f64,
    elements_per_s: f64,
    log: Vec<Op>,
}

impl ModelDevice {
    /// A PCIe-attached GPU: 50 GB/s with 5 us per copy, 2 us of kernel plus 100 G elements/s,
    /// 4 us to enqueue anything and 20 us to wait for the device.
    fn new() -> Self {
        ModelDevice {
            host_s: 0.0,
            device_s: 0.0,
            enqueue_s: 4e-6,
            sync_s: 20e-6,
            copy_s: 5e-6,
            bytes_per_s: 50e9,
            kernel_s: 2e-6,
            elements_per_s: 100e9,
            log: Vec::new(),
        }
    }

    fn enqueue(&mut self, op: Op, device_s: f64) {
        self.log.push(op);
        self.host_s += self.enqueue_s;
        self.device_s = self.device_s.max(self.host_s) + device_s;
    }
}

impl Bench for ModelDevice {
    fn upload(&mut self, bytes: usize) -> Result<()> {
        self.enqueue(
            Op::Upload(bytes),
            self.copy_s + bytes as f64 / self.bytes_per_s,
        );
        Ok(())
    }

    fn download(&mut self, bytes: usize) -> Result<()> {
        self.enqueue(
            Op::Download(bytes),
            self.copy_s + bytes as f64 / self.bytes_per_s,
        );
        self.host_s = self.device_s + self.sync_s;
        Ok(())
    }

    fn launch(&mut self, elements: usize) -> Result<()> {
        self.enqueue(
            Op::Launch(elements),
            self.kernel_s + elements as f64 / self.elements_per_s,
        );
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.log.push(Op::Sync);
        self.host_s = self.host_s.max(self.device_s) + self.sync_s;
        Ok(())
    }

    fn seconds(&self) -> f64 {
        self.host_s
    }
}

#[test]
fn a_launch_costs_what_it_costs_back_to_back_not_a_round_trip() {
    let mut device = ModelDevice::new();
    let costs = measure(&mut device).unwrap();
    // Back to back, a launch costs its enqueue (the 2 us kernel runs meanwhile), plus a share
    // of the two waits around the batch: 4.44 us, not the 26 us of a launch and a wait each.
    let per_launch = (LAUNCH_REPEATS as f64 * 4e-6 + 2e-6 + 20e-6) / LAUNCH_REPEATS as f64;
    assert!(
        (costs.launch_s - per_launch).abs() < 1e-9,
        "{costs:?}, expected {per_launch}"
    );
    // The launch that loads the module, then each sample: one batch framed by one wait before
    // and one after.
    let mut batches = Vec::new();
    for window in device.log.split(|op| *op == Op::Sync) {
        if !window.is_empty() && window.iter().all(|op| *op == Op::Launch(1)) {
            batches.push(window.len());
        }
    }
    let mut expected = vec![1];
    expected.extend([LAUNCH_REPEATS; LAUNCH_BATCHES]);
    assert_eq!(batches, expected);
}

#[test]
fn the_model_devices_figures_come_back() {
    let model = ModelDevice::new();
    let costs = measure(&mut ModelDevice::new()).unwrap();
    let near =
        |measured: f64, actual: f64, tolerance: f64| (measured / actual - 1.0).abs() < tolerance;
    // 64 MiB at 50 GB/s, with 5 us per copy and 24 us of enqueue and wait around it.
    assert!(
        near(costs.link_bytes_per_s, model.bytes_per_s, 0.03),
        "{costs:?}"
    );
    // 1 KiB: enqueue, copy and wait.
    let latency = model.enqueue_s + model.copy_s + 1024.0 / model.bytes_per_s + model.sync_s;
    assert!(near(costs.link_latency_s, latency, 1e-9), "{costs:?}");
    // 2^24 elements, with 2 us of kernel and a share of enqueue and waits: within 5%.
    assert!(
        near(costs.elements_per_s, model.elements_per_s, 0.05),
        "{costs:?}"
    );
}

#[test]
fn a_clock_that_does_not_move_is_nonsense_not_costs() {
    let mut frozen = ModelDevice {
        enqueue_s: 0.0,
        sync_s: 0.0,
        copy_s: 0.0,
        bytes_per_s: f64::INFINITY,
        kernel_s: 0.0,
        elements_per_s: f64::INFINITY,
        ..ModelDevice::new()
    };
    let err = measure(&mut frozen).unwrap_err();
    assert!(
        matches!(&err, Error::Device(text) if text.contains("nonsense")),
        "{err:?}"
    );
}
