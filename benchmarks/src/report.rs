//! Turning sweep records into `table.md` and SVG charts.
//!
//! Times compared are median **Total** seconds (Init + Runtime), so bach pays
//! for recording its graph; for cpu, fused and the Python peers (anchors:
//! numpy, pandas, scikit-learn, ...) Total equals Runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::record::Record;
use crate::workloads;

/// Mode order in tables and legends (peers come after these, by name).
const MODE_ORDER: &[&str] = &["cpu", "bach", "fused", "numpy", "gpu"];

/// The modes bach-bench runs; every other mode is a Python peer (an anchor).
const BENCH_MODES: &[&str] = &["cpu", "bach", "fused", "gpu"];

fn mode_rank(m: &str) -> usize {
    MODE_ORDER
        .iter()
        .position(|x| *x == m)
        .unwrap_or(MODE_ORDER.len())
}

fn workload_rank(w: &str) -> usize {
    let names = workloads::names();
    names.iter().position(|x| *x == w).unwrap_or(names.len())
}

/// Median total seconds by (display rank, mode).
type ByMode = BTreeMap<(usize, String), f64>;

/// A chart line: label, colour, `(log2 size, value)` points.
type Line = (String, RGBColor, Vec<(u32, f64)>);

/// Median total seconds by workload, then size, then mode (the last record of
/// a configuration wins).
#[derive(Debug, Default, Clone)]
pub struct Results {
    by: BTreeMap<(usize, String), BTreeMap<u32, ByMode>>,
    bach_init: BTreeMap<(String, u32), f64>,
}

impl Results {
    /// Indexes `records`.
    pub fn new(records: &[Record]) -> Results {
        let mut r = Results::default();
        for rec in records {
            r.by.entry((workload_rank(&rec.workload), rec.workload.clone()))
                .or_default()
                .entry(rec.log2_size)
                .or_default()
                .insert((mode_rank(&rec.mode), rec.mode.clone()), rec.median_total_s);
            if rec.mode == "bach" {
                r.bach_init
                    .insert((rec.workload.clone(), rec.log2_size), rec.median_init_s);
            }
        }
        r
    }

    /// Workloads present, in registry order.
    pub fn workloads(&self) -> Vec<&str> {
        self.by.keys().map(|(_, w)| w.as_str()).collect()
    }

    /// Modes present for `workload`, in display order.
    pub fn modes(&self, workload: &str) -> Vec<String> {
        let mut modes: Vec<(usize, String)> = self
            .sizes_of(workload)
            .flat_map(|(_, m)| m.keys().cloned())
            .collect();
        modes.sort();
        modes.dedup();
        modes.into_iter().map(|(_, m)| m).collect()
    }

    fn sizes_of<'a>(
        &'a self,
        workload: &'a str,
    ) -> impl Iterator<Item = (&'a u32, &'a ByMode)> + 'a {
        self.by
            .iter()
            .filter(move |((_, w), _)| w == workload)
            .flat_map(|(_, sizes)| sizes.iter())
    }

    /// The median total seconds of one configuration.
    pub fn time(&self, workload: &str, log2: u32, mode: &str) -> Option<f64> {
        self.sizes_of(workload)
            .find(|(s, _)| **s == log2)
            .and_then(|(_, m)| m.get(&(mode_rank(mode), mode.to_string())).copied())
    }

    /// `(log2 size, seconds)` for one workload and mode, by size.
    pub fn series(&self, workload: &str, mode: &str) -> Vec<(u32, f64)> {
        self.sizes_of(workload)
            .filter_map(|(s, m)| {
                m.get(&(mode_rank(mode), mode.to_string()))
                    .map(|t| (*s, *t))
            })
            .collect()
    }

    /// `time(a) / time(b)` at each size where both exist.
    pub fn ratio(&self, workload: &str, a: &str, b: &str) -> Vec<(u32, f64)> {
        self.sizes_of(workload)
            .filter_map(|(s, _)| {
                Some((
                    *s,
                    self.time(workload, *s, a)? / self.time(workload, *s, b)?,
                ))
            })
            .collect()
    }
}

/// A duration in seconds with a readable unit.
pub fn fmt_time(s: f64) -> String {
    if !s.is_finite() {
        "—".into()
    } else if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

fn fmt_opt_time(t: Option<f64>) -> String {
    t.map_or("—".into(), fmt_time)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}x"))
}

/// What the table says when there are no records.
pub const NOTHING_MEASURED: &str = "Nothing was measured: no results.\n";

/// The markdown table: one row per workload and size ([`NOTHING_MEASURED`]
/// without records).
pub fn table_markdown(records: &[Record]) -> String {
    if records.is_empty() {
        return NOTHING_MEASURED.to_string();
    }
    let r = Results::new(records);
    let mut out = String::from(
        "Median Total seconds (Init + Runtime; Init is 0 except for bach, shown separately). \
         bach vs cpu = cpu / bach (speedup); bach/fused = bach / fused (1.00x is the CPU limit); \
         peers: each Python peer's time and peer / bach (speedup over it).\n\n",
    );
    out.push_str(
        "| workload | size | cpu | bach | fused | gpu | bach init | bach vs cpu | bach/fused | peers (peer / bach) |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for w in r.workloads() {
        for (size, by_mode) in r.sizes_of(w) {
            let t = |m: &str| r.time(w, *size, m);
            let ratio = |a: &str, b: &str| Some(t(a)? / t(b)?);
            let peers: Vec<String> = by_mode
                .iter()
                .filter(|((_, m), _)| !BENCH_MODES.contains(&m.as_str()))
                .map(|((_, m), secs)| {
                    format!("{m} {} ({})", fmt_time(*secs), fmt_ratio(ratio(m, "bach")))
                })
                .collect();
            out.push_str(&format!(
                "| {w} | 2^{size} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                fmt_opt_time(t("cpu")),
                fmt_opt_time(t("bach")),
                fmt_opt_time(t("fused")),
                fmt_opt_time(t("gpu")),
                fmt_opt_time(r.bach_init.get(&(w.to_string(), *size)).copied()),
                fmt_ratio(ratio("cpu", "bach")),
                fmt_ratio(ratio("bach", "fused")),
                if peers.is_empty() {
                    "—".to_string()
                } else {
                    peers.join("; ")
                },
            ));
        }
    }
    out
}

fn color(mode: &str) -> RGBColor {
    match mode {
        "cpu" => RGBColor(214, 39, 40),
        "bach" => RGBColor(31, 119, 180),
        "fused" => RGBColor(44, 160, 44),
        "numpy" => RGBColor(255, 127, 14),
        "gpu" => RGBColor(148, 103, 189),
        "pandas" => RGBColor(140, 86, 75),
        "polars-eager" => RGBColor(227, 119, 194),
        "polars-lazy" => RGBColor(188, 189, 34),
        "scikit-learn" => RGBColor(23, 190, 207),
        _ => RGBColor(90, 90, 90),
    }
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One log-log chart: x is log2(elements) (labelled 2^k), y is log scale
/// with ticks at powers of `log_base`.
fn line_chart(
    path: &Path,
    caption: &str,
    y_desc: &str,
    lines: &[Line],
    reference: Option<f64>,
    log_base: f64,
) -> DrawResult<()> {
    let points = lines.iter().flat_map(|(_, _, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (u32::MAX, 0u32, f64::INFINITY, 0f64);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        if y > 0.0 && y.is_finite() {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if let Some(r) = reference {
        y0 = y0.min(r);
        y1 = y1.max(r);
    }
    if x0 > x1 || y0 > y1 {
        return Ok(());
    }
    let (y0, y1) = (y0 / 1.5, y1 * 1.5);
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(
            x0 as i32 - 1..x1 as i32 + 1,
            (y0..y1).log_scale().base(log_base),
        )?;
    chart
        .configure_mesh()
        .x_desc("elements")
        .y_desc(y_desc)
        .x_labels((x1 - x0 + 3) as usize)
        .x_label_formatter(&|x| format!("2^{x}"))
        .y_labels(12)
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else if *y >= 0.01 {
                format!("{y:.2}")
            } else {
                format!("{y:.0e}")
            }
        })
        .draw()?;
    if let Some(r) = reference {
        chart.draw_series(LineSeries::new(
            [(x0 as i32 - 1, r), (x1 as i32 + 1, r)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
    }
    for (label, c, pts) in lines {
        let pts: Vec<(i32, f64)> = pts.iter().map(|&(x, y)| (x as i32, y)).collect();
        let c = *c;
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draws, per workload, `runtime_<workload>.svg` (median total time per mode
/// vs size, log-log) and `speedup_<workload>.svg` (bach's speedup over cpu and
/// over each Python peer and over fused vs size). Returns the files written.
pub fn draw_charts(records: &[Record], dir: &Path) -> DrawResult<Vec<PathBuf>> {
    let r = Results::new(records);
    let mut written = Vec::new();
    for w in r.workloads() {
        let lines: Vec<_> = r
            .modes(w)
            .into_iter()
            .map(|m| (m.clone(), color(&m), r.series(w, &m)))
            .collect();
        let path = dir.join(format!("runtime_{w}.svg"));
        line_chart(
            &path,
            &format!("{w}: median total time"),
            "seconds",
            &lines,
            None,
            10.0,
        )?;
        written.push(path);

        let mut speedups = Vec::new();
        let peers = r
            .modes(w)
            .into_iter()
            .filter(|m| !BENCH_MODES.contains(&m.as_str()));
        let bases: Vec<String> = std::iter::once("cpu".to_string())
            .chain(peers)
            .chain(std::iter::once("fused".to_string()))
            .collect();
        for base in &bases {
            let c = color(base);
            let pts = r.ratio(w, base, "bach");
            if !pts.is_empty() {
                speedups.push((format!("bach vs {base} ({base} / bach)"), c, pts));
            }
        }
        if !speedups.is_empty() {
            let path = dir.join(format!("speedup_{w}.svg"));
            line_chart(
                &path,
                &format!("{w}: speedup of bach"),
                "speedup (x)",
                &speedups,
                Some(1.0),
                2.0,
            )?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Machine;

    fn rec(workload: &str, mode: &str, log2: u32, total: f64) -> Record {
        Record {
            workload: workload.into(),
            mode: mode.into(),
            log2_size: log2,
            elements: 1 << log2,
            trials: 1,
            init_s: vec![0.0],
            runtime_s: vec![total],
            total_s: vec![total],
            median_init_s: if mode == "bach" { 1e-5 } else { 0.0 },
            median_runtime_s: total,
            median_total_s: total,
            threads: 2,
            batch_size: None,
            seed: 42,
            checked: false,
            machine: Machine {
                cpu_model: "test".into(),
                cores: 2,
                os: "test".into(),
                arch: "x86_64".into(),
            },
            git_commit: "unknown".into(),
            git_dirty: None,
            timestamp: "1970-01-01T00:00:00Z".into(),
            source: "test".into(),
        }
    }

    fn sample() -> Vec<Record> {
        vec![
            rec("haversine", "cpu", 10, 2e-4),
            rec("haversine", "bach", 10, 1e-4),
            rec("blackscholes", "cpu", 16, 0.5),
            rec("blackscholes", "bach", 16, 0.1),
            rec("blackscholes", "fused", 16, 0.08),
            rec("blackscholes", "numpy", 16, 0.4),
            rec("blackscholes", "bach", 16, 0.125), // a rerun: the last one wins
            rec("blackscholes", "cpu", 20, 8.0),
            rec("blackscholes", "bach", 20, 1.0),
        ]
    }

    #[test]
    fn table_has_ratios_and_dashes() {
        let t = table_markdown(&sample());
        let row = t
            .lines()
            .find(|l| l.starts_with("| blackscholes | 2^16 |"))
            .unwrap();
        assert_eq!(
            row,
            "| blackscholes | 2^16 | 500.00 ms | 125.00 ms | 80.00 ms | — | 10.0 µs | 4.00x | 1.56x | numpy 400.00 ms (3.20x) |"
        );
        let row = t
            .lines()
            .find(|l| l.starts_with("| haversine | 2^10 |"))
            .unwrap();
        assert!(row.contains("| — |"), "{row}");
        // Registry order: blackscholes before haversine.
        assert!(t.find("| blackscholes").unwrap() < t.find("| haversine").unwrap());
    }

    #[test]
    fn no_records_no_table_no_charts() {
        assert_eq!(table_markdown(&[]), NOTHING_MEASURED);
        let dir = std::env::temp_dir().join(format!("bach-report-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(draw_charts(&[], &dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn charts_are_svg_with_text() {
        let dir = std::env::temp_dir().join(format!("bach-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = draw_charts(&sample(), &dir).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert!(
            names.contains(&"runtime_blackscholes.svg") && names.contains(&"speedup_haversine.svg")
        );
        let svg = std::fs::read_to_string(dir.join("runtime_blackscholes.svg")).unwrap();
        assert!(
            svg.starts_with("<svg")
                && svg.contains("<text")
                && svg.contains("2^16")
                && svg.contains("\nbach\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
