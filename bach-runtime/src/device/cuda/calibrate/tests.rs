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
