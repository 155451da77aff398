//! Running one benchmark configuration: inputs, timed trials, the result check.

use std::time::{Duration, Instant};

use std::sync::Arc;

use bach_runtime::{Config, CudaDevice, Device, Graph, SimulatedDevice};
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::workloads::{Check, Inputs, Outputs, Timed, Workload, WorkloadError};

/// How a workload is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The plain CPU library (ndarray, polars, linfa), one operation at a time over whole values.
    Cpu,
    /// The same source through the annotated library, recorded lazily and run by `evaluate`.
    Bach,
    /// One hand-written rayon loop per workload: the CPU limit for the same formula.
    Fused,
    /// Hand-written GPU code: explicit transfers, one kernel per operation (needs a GPU).
    Gpu,
}

impl Mode {
    /// The name used on the command line and in JSON records.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cpu => "cpu",
            Mode::Bach => "bach",
            Mode::Fused => "fused",
            Mode::Gpu => "gpu",
        }
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What to run.
    pub workload: &'static Workload,
    /// How to run it.
    pub mode: Mode,
    /// The problem has `2^log2_size` elements.
    pub log2_size: u32,
    /// Timed repetitions (at least 1).
    pub trials: usize,
    /// Bach's worker threads (`Config::threads`); the caller sizes rayon's
    /// global pool (used by fused mode) with [`configure_threads`].
    pub threads: Option<usize>,
    /// Bach's batch size (`Config::batch_size`); `None`: the runtime's default.
    pub batch_size: Option<usize>,
    /// Seed of the input data.
    pub seed: u64,
    /// Compare the last trial's result with cpu mode on the same inputs.
    pub check: bool,
    /// Testing aid: flip the lowest bit of this element (modulo the length) of
    /// the first result before checking, to prove that `check` catches it.
    pub corrupt_index: Option<usize>,
    /// Testing aid: use a simulated device instead of the GPU (gpu and bach modes).
    pub simulated_device: bool,
    /// Print Bach's plan before the trials and the measured last run after them.
    pub explain: bool,
}

/// The timings of one trial, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrialTimes {
    /// Building the computation (bach: recording the graph; 0 for cpu and fused).
    pub init: f64,
    /// The computation itself.
    pub runtime: f64,
    /// `init + runtime`.
    pub total: f64,
}

impl TrialTimes {
    fn new(init: Duration, runtime: Duration) -> TrialTimes {
        let (init, runtime) = (init.as_secs_f64(), runtime.as_secs_f64());
        TrialTimes {
            init,
            runtime,
            total: init + runtime,
        }
    }
}

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One entry per trial, in order.
    pub trials: Vec<TrialTimes>,
    /// Worker threads the mode could use (cpu mode itself uses one).
    pub threads: usize,
    /// The bach graph's configuration (bach mode only).
    pub bach_config: Option<Config>,
    /// `Some(())` when `check` was asked for and passed.
    pub checked: bool,
    /// The tolerance the check used (`None`: bit for bit, or the workload's own comparison).
    pub tolerance: Option<f64>,
    /// The workload's result line (`Result: ...`), from the last trial.
    pub result: Option<String>,
}

/// The first difference between a result and cpu mode's.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// Different numbers of result arrays.
    Count {
        /// Arrays produced.
        got: usize,
        /// Arrays expected.
        expected: usize,
    },
    /// A result array of the wrong length.
    Length {
        /// The result's name.
        output: &'static str,
        /// Its length.
        got: usize,
        /// cpu mode's length.
        expected: usize,
    },
    /// The workload's own comparison failed ([`Check::Custom`]).
    Custom(String),
    /// The first element whose bits differ.
    Value {
        /// The result's name.
        output: &'static str,
        /// The element's index.
        index: usize,
        /// This mode's value.
        got: f64,
        /// cpu mode's value.
        expected: f64,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Count { got, expected } => write!(f, "{got} result arrays, cpu mode gives {expected}"),
            Mismatch::Custom(what) => f.write_str(what),
            Mismatch::Length { output, got, expected } => {
                write!(f, "`{output}` has {got} elements, cpu mode gives {expected}")
            }
            Mismatch::Value {
                output,
                index,
                got,
                expected,
            } => write!(
                f,
                "`{output}` first differs at index {index}: {got:e} (bits {:#018x}), cpu mode gives {expected:e} (bits {:#018x})",
                got.to_bits(),
                expected.to_bits()
            ),
        }
    }
}

/// Why a benchmark did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `gpu` mode without a usable GPU.
    #[error("gpu mode: {0}")]
    NoGpu(String),
    /// The runtime failed.
    #[error("bach: {0}")]
    Bach(#[from] bach_runtime::Error),
    /// The workload's own code failed (making its inputs, a library's error),
    /// or the runtime did inside it.
    #[error("{workload}: {source}")]
    Workload {
        /// The workload's name.
        workload: &'static str,
        /// What failed.
        source: WorkloadError,
    },
    /// The workload has no implementation in this mode.
    #[error("{workload} has no {mode} mode")]
    NoMode {
        /// The workload's name.
        workload: &'static str,
        /// The mode asked for.
        mode: &'static str,
    },
    /// `--check` found a difference.
    #[error("check failed: {0}")]
    Check(Mismatch),
    /// The number of trials was zero.
    #[error("--trials must be at least 1")]
    NoTrials,
}

/// Sizes rayon's global pool (used by fused mode and by bach without
/// `threads`). Call once, before anything uses rayon.
pub fn configure_threads(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    match threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global(),
        None => Ok(()),
    }
}

/// Progress of [`run`], for a progress bar and per-trial output.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Trial `i` (0-based) is about to start.
    Start(usize),
    /// Trial `i` finished with these times.
    Done(usize, TrialTimes),
}

/// Runs `settings.trials` timed trials on inputs generated from the seed.
///
/// Inputs are generated, and results dropped, outside the timed region. In
/// bach mode all trials share one graph (one worker pool), started by a tiny
/// evaluation before the first trial.
pub fn run(
    settings: &Settings,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, BenchError> {
    if settings.trials == 0 {
        return Err(BenchError::NoTrials);
    }
    let w = settings.workload;
    let failed = |source: WorkloadError| BenchError::Workload {
        workload: w.name,
        source,
    };
    let no_mode = || BenchError::NoMode {
        workload: w.name,
        mode: settings.mode.name(),
    };
    let inputs = (w.generate)(settings.log2_size, settings.seed).map_err(failed)?;
    let inputs: &Inputs = &*inputs;
    // Kept for the check and the result line; earlier trials' results are
    // dropped as soon as their clocks stop.
    let keep_last = settings.check || w.result_line.is_some();

    let mut trials = Vec::with_capacity(settings.trials);
    let mut last: Option<Outputs> = None;
    let mut bach_config = None;
    let mut ran_on_device = false;
    let threads;
    // Keeps the times; only the last trial's result is kept (for the check),
    // the others are dropped here, after their clocks stopped.
    let mut finish = |i: usize, timed: Timed, on_progress: &mut dyn FnMut(Progress)| {
        let t = TrialTimes::new(timed.init, timed.runtime);
        on_progress(Progress::Done(i, t));
        trials.push(t);
        if keep_last && i + 1 == settings.trials {
            last = Some(timed.outputs);
        }
    };
    match settings.mode {
        Mode::Cpu | Mode::Fused => {
            let f = match settings.mode {
                Mode::Cpu => w.cpu,
                _ => w.fused.ok_or_else(no_mode)?,
            };
            threads = rayon::current_num_threads();
            for i in 0..settings.trials {
                on_progress(Progress::Start(i));
                let t0 = Instant::now();
                let outputs = f(inputs).map_err(failed)?;
                let runtime = t0.elapsed();
                let init = Duration::ZERO;
                finish(
                    i,
                    Timed {
                        init,
                        runtime,
                        outputs,
                    },
                    on_progress,
                );
            }
        }
        Mode::Bach => {
            let mut config = Config::from_env();
            config.threads = settings.threads.or(config.threads);
            config.batch_size = settings.batch_size.or(config.batch_size);
            threads = config.threads.unwrap_or_else(rayon::current_num_threads);
            let graph = Graph::with_config(config.clone());
            let warm_up_config = config.clone();
            let simulated: Option<Arc<dyn Device>> = settings.simulated_device.then(|| {
                Arc::new(SimulatedDevice::with_capacity(usize::MAX / 2)) as Arc<dyn Device>
            });
            if let Some(d) = &simulated {
                graph.set_device(Some(d.clone()));
            }
            bach_config = Some(config);
            graph.enter(|| -> Result<(), BenchError> {
                warm_up()?;
                // Planning the real workload once, outside the clock, measures
                // its calls' CPU costs (cached afterwards) and device costs.
                let plan = (w.explain)(inputs).map_err(failed)?;
                if settings.explain {
                    println!("Plan:\n{plan}");
                }
                // Compile and load the kernels the plan uses, on a small slice.
                if plan
                    .stages
                    .iter()
                    .any(|s| s.placement == bach_runtime::Placement::Device)
                {
                    let small = (w.generate)(settings.log2_size.min(WARM_UP_LOG2), settings.seed)
                        .map_err(failed)?;
                    let forced = Graph::with_config(Config {
                        device: bach_runtime::DevicePolicy::Device,
                        ..warm_up_config.clone()
                    });
                    if let Some(d) = &simulated {
                        forced.set_device(Some(d.clone()));
                    }
                    forced.enter(|| (w.bach)(&*small)).map_err(failed)?;
                }
                let before = simulated.as_ref().map(|d| d.stats());
                for i in 0..settings.trials {
                    on_progress(Progress::Start(i));
                    let timed = (w.bach)(inputs).map_err(failed)?;
                    finish(i, timed, on_progress);
                }
                if let (Some(d), Some(before), true) = (&simulated, before, settings.explain) {
                    println!(
                        "{}",
                        device_model_line(&before, &d.stats(), settings.trials)
                    );
                }
                Ok(())
            })?;
            let last = graph.last_run();
            ran_on_device = last.as_ref().is_some_and(|e| {
                e.stages
                    .iter()
                    .any(|s| s.placement == bach_runtime::Placement::Device)
            });
            if settings.explain {
                if let Some(e) = last {
                    println!("Last run:\n{e}");
                }
            }
        }
        Mode::Gpu => {
            let gpu = w.gpu.ok_or_else(no_mode)?;
            let device: Arc<dyn Device> = match settings.simulated_device {
                true => Arc::new(SimulatedDevice::with_capacity(usize::MAX / 2)),
                false => CudaDevice::open(0).map_err(|e| BenchError::NoGpu(e.to_string()))?,
            };
            let g = crate::gpu::Gpu::new(&*device);
            threads = 1;
            // Compile and load the kernels before the clock starts.
            gpu(&g, &*(w.generate)(0, settings.seed).map_err(failed)?).map_err(failed)?;
            for i in 0..settings.trials {
                on_progress(Progress::Start(i));
                let t0 = Instant::now();
                let outputs = gpu(&g, inputs).map_err(failed)?;
                let runtime = t0.elapsed();
                finish(
                    i,
                    Timed {
                        init: Duration::ZERO,
                        runtime,
                        outputs,
                    },
                    on_progress,
                );
            }
        }
    }

    let result = match (&last, w.result_line) {
        (Some(outputs), Some(line)) => Some(line(outputs)),
        _ => None,
    };
    let mut used_tolerance = None;
    let checked = match last.filter(|_| settings.check) {
        Some(mut outputs) => {
            let expected = (w.cpu)(inputs).map_err(failed)?;
            // GPU kernels round transcendentals differently from the CPU's libm:
            // compare within a tolerance when any of the work ran on a GPU. The
            // simulated device runs the CPU functions: bit for bit there.
            let on_gpu = !settings.simulated_device
                && (settings.mode == Mode::Gpu || (settings.mode == Mode::Bach && ran_on_device));
            let gpu_tolerance = on_gpu.then_some(GPU_TOLERANCE);
            let tolerance = match w.check {
                Check::Exact => gpu_tolerance,
                Check::Within(rel) => Some(gpu_tolerance.map_or(rel, |g| g.max(rel))),
                Check::Custom(_) => None,
            };
            let exact = tolerance.is_none() && matches!(w.check, Check::Exact);
            if let Some(i) = settings.corrupt_index {
                corrupt(&mut outputs, i, !exact);
            }
            match w.check {
                Check::Custom(same) => same(&outputs, &expected).map_err(Mismatch::Custom),
                _ => compare_within(&outputs, &expected, w.outputs, tolerance),
            }
            .map_err(BenchError::Check)?;
            used_tolerance = tolerance;
            true
        }
        None => false,
    };
    Ok(Outcome {
        trials,
        threads,
        bach_config,
        checked,
        tolerance: used_tolerance,
        result,
    })
}

/// The size (log2) of the inputs bach mode compiles its device kernels on,
/// before the timed trials.
const WARM_UP_LOG2: u32 = 10;

/// One tiny evaluation in the current graph, so that its worker pool exists
/// before the clock starts.
fn warm_up() -> bach_runtime::Result<()> {
    let x = Array1::from_elem(8, 0.5);
    let y = annotated_libs::numpy::add(&x, &x);
    bach_runtime::evaluate(y).map(drop)
}

/// Corrupts element `index % len` of the first non-empty result: flips its
/// lowest bit, or, when checks use a tolerance or the workload's own
/// comparison, changes it far beyond any tolerance.
pub fn corrupt(outputs: &mut Outputs, index: usize, beyond_tolerance: bool) {
    if let Some(a) = outputs.iter_mut().find(|a| !a.is_empty()) {
        let i = index % a.len();
        a[i] = match beyond_tolerance {
            false => f64::from_bits(a[i].to_bits() ^ 1),
            // `x * 2 + 1` is x itself for x = -1 (a noise label): add instead.
            true if a[i] == -1.0 => 1e6,
            true => a[i] * 2.0 + 1.0,
        };
    }
}

/// Relative tolerance (of `max(1, |expected|)`) for results computed on a GPU.
pub const GPU_TOLERANCE: f64 = 1e-9;

/// Compares results bit for bit (so NaNs compare by payload, and `-0.0 != 0.0`).
pub fn compare(
    got: &Outputs,
    expected: &Outputs,
    names: &'static [&'static str],
) -> Result<(), Mismatch> {
    compare_within(got, expected, names, None)
}

/// Compares results bit for bit, or with `tolerance`: `|got - expected| <=
/// tolerance * max(1, |expected|)`, NaN matching NaN.
pub fn compare_within(
    got: &Outputs,
    expected: &Outputs,
    names: &'static [&'static str],
    tolerance: Option<f64>,
) -> Result<(), Mismatch> {
    let same = |a: f64, b: f64| match tolerance {
        None => a.to_bits() == b.to_bits(),
        Some(t) => (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= t * b.abs().max(1.0),
    };
    if got.len() != expected.len() {
        return Err(Mismatch::Count {
            got: got.len(),
            expected: expected.len(),
        });
    }
    for (k, (g, e)) in got.iter().zip(expected).enumerate() {
        let output = names.get(k).copied().unwrap_or("result");
        if g.len() != e.len() {
            return Err(Mismatch::Length {
                output,
                got: g.len(),
                expected: e.len(),
            });
        }
        if let Some(index) = g.iter().zip(e).position(|(a, b)| !same(*a, *b)) {
            return Err(Mismatch::Value {
                output,
                index,
                got: g[index],
                expected: e[index],
            });
        }
    }
    Ok(())
}

/// What the simulated device's model says about the timed trials (per trial):
/// overlapped time, time with nothing overlapped, and the traffic.
fn device_model_line(
    before: &bach_runtime::TransferStats,
    after: &bach_runtime::TransferStats,
    trials: usize,
) -> String {
    let t = trials.max(1) as f64;
    let per = |a: u64, b: u64| (a - b) as f64 / t;
    format!(
        "Device model per trial: {:.3} ms overlapped, {:.3} ms one after another; {:.0} uploads ({:.0} B), {:.0} downloads ({:.0} B), {:.0} launches",
        per(after.modelled_ns, before.modelled_ns) / 1e6,
        per(after.serial_ns, before.serial_ns) / 1e6,
        per(after.uploads, before.uploads),
        per(after.upload_bytes, before.upload_bytes),
        per(after.downloads, before.downloads),
        per(after.download_bytes, before.download_bytes),
        per(after.launches, before.launches),
    )
}

/// The median (mean of the two middle values for an even count; NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn compare_finds_first_difference() {
        let a = vec![array![1.0, 2.0, 3.0]];
        assert_eq!(compare(&a, &a.clone(), &["x"]), Ok(()));
        let mut far = a.clone();
        corrupt(&mut far, 4, true);
        assert!(compare_within(&far, &a, &["x"], Some(GPU_TOLERANCE)).is_err());
        let mut b = a.clone();
        corrupt(&mut b, 4, false);
        match compare(&b, &a, &["x"]) {
            Err(Mismatch::Value {
                output: "x",
                index: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            compare(&vec![array![0.0]], &vec![array![-0.0]], &["x"]),
            Err(Mismatch::Value { .. })
        ));
        assert!(matches!(
            compare(&vec![array![1.0]], &a, &["x"]),
            Err(Mismatch::Length { .. })
        ));
        assert!(matches!(
            compare(&vec![], &a, &["x"]),
            Err(Mismatch::Count { .. })
        ));
    }

    /// A workload with only cpu and bach modes, its own comparison (sums
    /// equal within 1e-9) and a result line; bach mode sums in another order.
    static SUMS: Workload = Workload {
        name: "sums",
        description: "test: sums of 2^LOG2 ones",
        default_size: 4,
        size_meaning: "2^LOG2 ones",
        generate: |log2, _| {
            if log2 > 20 {
                return Err("too large for a test".into());
            }
            Ok(Box::new(Array1::<f64>::ones(1 << log2)))
        },
        outputs: &["sum"],
        cpu: |x| {
            Ok(vec![array![
                crate::workloads::inputs_of::<Array1<f64>>(x)?.sum()
            ]])
        },
        bach: |x| {
            let a = crate::workloads::inputs_of::<Array1<f64>>(x)?;
            let t0 = Instant::now();
            let s: f64 = a.iter().rev().sum();
            Ok(Timed {
                init: Duration::ZERO,
                runtime: t0.elapsed(),
                outputs: vec![array![s]],
            })
        },
        fused: None,
        gpu: None,
        explain: |_| Err("no plan".into()),
        check: Check::Custom(
            |got, expected| match (got[0][0] - expected[0][0]).abs() <= 1e-9 {
                true => Ok(()),
                false => Err(format!("sum {} vs {}", got[0][0], expected[0][0])),
            },
        ),
        result_line: Some(|o| format!("sum={}", o[0][0])),
        anchors: &[],
    };

    fn settings(mode: Mode, log2_size: u32) -> Settings {
        Settings {
            workload: &SUMS,
            mode,
            log2_size,
            trials: 2,
            threads: None,
            batch_size: None,
            seed: 1,
            check: true,
            corrupt_index: None,
            simulated_device: false,
            explain: false,
        }
    }

    #[test]
    fn custom_checks_result_lines_and_missing_modes() {
        let out = run(&settings(Mode::Cpu, 4), &mut |_| {}).unwrap();
        assert!(out.checked && out.tolerance.is_none());
        assert_eq!(out.result.as_deref(), Some("sum=16"));
        assert_eq!(out.trials.len(), 2);

        // The custom comparison catches a corrupted result.
        let mut s = settings(Mode::Cpu, 4);
        s.corrupt_index = Some(0);
        match run(&s, &mut |_| {}) {
            Err(BenchError::Check(Mismatch::Custom(m))) => assert!(m.contains("vs 16"), "{m}"),
            other => panic!("{other:?}"),
        }
        // No fused or gpu mode: a clear error, not a panic.
        for mode in [Mode::Fused, Mode::Gpu] {
            let e = run(&settings(mode, 4), &mut |_| {}).unwrap_err();
            assert_eq!(e.to_string(), format!("sums has no {} mode", mode.name()));
        }
        // The workload's own errors name it.
        let e = run(&settings(Mode::Cpu, 30), &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "sums: too large for a test");
    }
}
