//! CSV columns read in row batches inside a plan: every batch size gives the
//! rows a whole-file parse gives (lines split across batches and across the
//! index's blocks, CRLF, a missing final newline, a header), values parse as
//! polars parses them, and every bad input is a typed error naming the file
//! and line, with nothing partial returned.

use std::path::{Path, PathBuf};

use annotated_libs::polars::polars_core::prelude::Float64Chunked;
use annotated_libs::polars::{csv::BLOCK, CsvColumn, CsvError, CsvOptions, LazySeries};
use bach_runtime::{Config, DevicePolicy, Error, Graph};

mod common;
use common::uniform;

/// A fresh file under the system's temporary directory.
fn file(name: &str, text: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bach-polars-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn graph(batch_size: usize) -> Graph {
    Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        batch_size: Some(batch_size),
        threads: Some(2),
        ..Config::default()
    })
}

fn values(c: &Float64Chunked) -> Vec<u64> {
    c.into_no_null_iter().map(f64::to_bits).collect()
}

/// The rows of `path` read lazily with batches of `batch` rows.
fn read_lazily(path: &Path, options: CsvOptions, batch: usize) -> Result<Float64Chunked, Error> {
    let csv = CsvColumn::open(path, options).expect("opens");
    let g = graph(batch);
    g.enter(|| g.evaluate(LazySeries::read(&csv)))
}

/// `xs` written one per line (Rust's shortest round-trip form), with `eol`
/// between lines and after the last one when `final_newline`.
fn text(header: Option<&str>, xs: &[f64], eol: &str, final_newline: bool) -> Vec<u8> {
    let mut lines: Vec<String> = header.into_iter().map(String::from).collect();
    lines.extend(xs.iter().map(|x| format!("{x:?}")));
    let mut s = lines.join(eol);
    if final_newline {
        s.push_str(eol);
    }
    s.into_bytes()
}

#[test]
fn every_batch_size_reads_every_row_in_every_line_format() {
    // More than three index blocks of text, so rows are found across blocks.
    let xs = uniform(40_000, -1e6, 1e6, 1).to_vec();
    assert!(text(None, &xs, "\n", true).len() > 3 * BLOCK);
    for (eol, final_newline, header) in [
        ("\n", true, None),
        ("\n", false, None),
        ("\r\n", true, None),
        ("\r\n", false, Some("total_population")),
        ("\n", true, Some("total_population")),
    ] {
        let has_header = header.is_some();
        let path = file(
            &format!("rows-{}-{final_newline}-{has_header}.csv", eol.len()),
            &text(header, &xs, eol, final_newline),
        );
        let options = CsvOptions { has_header };
        let whole = CsvColumn::open(&path, options).unwrap();
        assert_eq!(whole.rows(), xs.len());
        let expected: Vec<u64> = xs.iter().map(|x| x.to_bits()).collect();
        let parsed = whole.parse().unwrap();
        assert_eq!(
            values(&parsed),
            expected,
            "{eol:?} {final_newline} {header:?}"
        );
        assert_eq!(
            parsed.name().as_str(),
            header.unwrap_or(&format!("rows-{}-{final_newline}-{has_header}", eol.len()))
        );
        for batch in [7, 1000, 4096, 40_000, 1 << 20] {
            let got = read_lazily(&path, options, batch).unwrap();
            assert_eq!(
                values(&got),
                expected,
                "batch {batch}, {eol:?} {final_newline}"
            );
        }
    }
}

#[test]
fn any_row_range_parses_its_own_lines() {
    let xs = uniform(20_000, 0.0, 2e3, 2).to_vec();
    let path = file("ranges.csv", &text(None, &xs, "\n", true));
    let csv = CsvColumn::open(&path, CsvOptions::default()).unwrap();
    let mut s = 12345usize;
    for _ in 0..200 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let a = (s >> 33) % (xs.len() + 1);
        let b = (s >> 13) % (xs.len() + 1);
        let (lo, hi) = (a.min(b), a.max(b));
        let piece = csv.slice(lo..hi);
        assert_eq!(piece.rows(), hi - lo);
        let got = piece.parse().unwrap();
        let want: Vec<u64> = xs[lo..hi].iter().map(|x| x.to_bits()).collect();
        assert_eq!(values(&got), want, "rows {lo}..{hi}");
    }
}

#[test]
fn special_values_parse_as_polars_parses_floats() {
    // polars' CSV reader parses Float64 fields with `fast_float2::parse`.
    let lines = [
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "-infinity",
        "1e308",
        "1e309",
        "-0.0",
        "1E-5",
        "+3.5",
        ".5",
        "5.",
        "000123.250000",
    ];
    let path = file("special.csv", lines.join("\n").as_bytes());
    for batch in [1, 3, 100] {
        let got = read_lazily(&path, CsvOptions::default(), batch).unwrap();
        let got: Vec<f64> = got.into_no_null_iter().collect();
        assert!(got[0].is_nan() && got[1].is_nan());
        assert_eq!(
            got[2..6],
            [
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY
            ]
        );
        assert_eq!(got[6], 1e308);
        assert_eq!(got[7], f64::INFINITY);
        assert_eq!(got[8].to_bits(), (-0.0f64).to_bits());
        assert_eq!(got[9..], [1e-5, 3.5, 0.5, 5.0, 123.25]);
    }
}

#[test]
fn a_header_only_file_is_an_empty_column() {
    for text in ["tp", "tp\n", "tp\r\n"] {
        let path = file("header-only.csv", text.as_bytes());
        let csv = CsvColumn::open(&path, CsvOptions { has_header: true }).unwrap();
        assert_eq!(csv.rows(), 0);
        let got = read_lazily(&path, CsvOptions { has_header: true }, 16).unwrap();
        assert_eq!(got.len(), 0);
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let path = std::env::temp_dir().join("bach-polars-no-such-dir/none.csv");
    let err = CsvColumn::open(&path, CsvOptions::default()).unwrap_err();
    let CsvError::Io { path: p, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(p, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("none.csv"), "{err}");
}

#[test]
fn an_empty_file_is_an_error_naming_it() {
    let path = file("empty.csv", b"");
    for has_header in [false, true] {
        let err = CsvColumn::open(&path, CsvOptions { has_header }).unwrap_err();
        assert!(
            matches!(&err, CsvError::Empty { path: p } if *p == path),
            "{err:?}"
        );
        assert_eq!(err.to_string(), format!("{}: empty file", path.display()));
    }
}

/// The `CsvError` of a failed lazy read.
#[track_caller]
fn csv_error(err: &Error) -> &CsvError {
    let Error::Call { op, source } = err else {
        panic!("expected Error::Call, got {err:?}")
    };
    assert_eq!(*op, "read_column");
    source.downcast_ref::<CsvError>().expect("a CsvError")
}

#[test]
fn a_malformed_line_is_an_error_naming_file_and_line_at_every_batch_size() {
    let xs = uniform(5000, 0.0, 1.0, 3).to_vec();
    for (bad, at, has_header) in [
        ("abc", 0, false),
        ("1.5,2.5", 2500, false),
        ("", 4999, false),
        ("12 ", 1234, true),
        ("\"3.0\"", 4000, true),
    ] {
        let mut lines: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
        lines[at] = bad.to_string();
        if has_header {
            lines.insert(0, "x".into());
        }
        let path = file("malformed.csv", (lines.join("\n") + "\n").as_bytes());
        let line = at + 1 + usize::from(has_header);
        let check = |err: &CsvError| {
            let CsvError::Malformed {
                path: p,
                line: l,
                text,
            } = err
            else {
                panic!("{err:?}")
            };
            assert_eq!((p, *l, text.as_str()), (&path, line, bad), "{bad:?}");
            assert!(err
                .to_string()
                .starts_with(&format!("{}:{line}:", path.display())));
        };
        let options = CsvOptions { has_header };
        check(
            &CsvColumn::open(&path, options)
                .unwrap()
                .parse()
                .unwrap_err(),
        );
        for batch in [1, 100, 4096, 1 << 20] {
            let err = read_lazily(&path, options, batch).unwrap_err();
            check(csv_error(&err));
        }
    }
}

#[test]
fn columns_of_different_lengths_are_an_error_naming_the_shorter_file_and_line() {
    let a = file("long.csv", b"1\n2\n3\n4\n");
    let b = file("short.csv", b"1\n2\n3");
    let long = CsvColumn::open(&a, CsvOptions::default()).unwrap();
    let short = CsvColumn::open(&b, CsvOptions::default()).unwrap();
    assert!(CsvColumn::same_rows(&[&long, &long]).is_ok());
    for pair in [[&long, &short], [&short, &long]] {
        let err = CsvColumn::same_rows(&pair).unwrap_err();
        let CsvError::LengthMismatch {
            path,
            rows,
            other,
            other_rows,
            line,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((path, *rows, other, *other_rows, *line), (&b, 3, &a, 4, 4));
        assert!(err.to_string().contains("short.csv"), "{err}");
    }
    // Combined lazily without the check, the runtime refuses the lengths too.
    let g = graph(2);
    let err = g
        .enter(|| g.evaluate(&LazySeries::read(&long) + &LazySeries::read(&short)))
        .unwrap_err();
    assert!(matches!(err, Error::LengthMismatch { .. }), "{err:?}");
}
