//! Execution: runs a [`Plan`] as its [`Schedule`] says, stage by stage, each
//! on its placement's executor (`cpu.rs`, `device.rs`), and reports what ran
//! where and how long it took ([`RunReport`]).
//!
//! Values that escape a stage are kept in a [`Materialized`] map for the
//! stages that read them; everything else lives only as per-batch pieces.

pub(crate) mod cpu;
pub(crate) mod device;
mod host_memory;
pub(crate) mod layout;
mod merge;

use crate::fasthash::FastMap;
use std::sync::Arc;

use crate::analysis::StageAnalysis;
use crate::config::{Config, DevicePolicy};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::op::{Args, OpInfo};
use crate::plan::{Externals, Input, Plan, Stage, StageKind, ValueId};
use crate::report::{RunReport, StageRun};
use crate::schedule::{Placement, Schedule};
use crate::value::{Held, Piece};

/// Whole values produced by the stages run so far.
pub(crate) type Materialized = FastMap<ValueId, Held>;

/// What an evaluation runs with.
pub(crate) struct Context<'c> {
    pub(crate) config: &'c Config,
    pub(crate) device: Option<&'c Arc<dyn Device>>,
    /// The worker pool (`None`: rayon's global pool).
    pub(crate) pool: Option<&'c rayon::ThreadPool>,
}

/// What running a plan produced: the targets' values in order, the report,
/// and every materialised value (the targets' other outputs among them).
pub(crate) struct Outcome {
    pub(crate) values: Vec<Held>,
    pub(crate) report: RunReport,
    pub(crate) done: Materialized,
}

/// Runs every stage of `plan` as `schedule` places it.
pub(crate) fn run(
    plan: &Plan,
    analyses: &[StageAnalysis],
    schedule: &Schedule,
    externals: &Externals,
    ctx: &Context<'_>,
) -> Result<Outcome> {
    let mut done: Materialized = FastMap::default();
    let on_cpu = |i: usize, stage: &Stage, done: &Materialized| match stage.kind {
        StageKind::Partitioned => {
            let batch = schedule.stages[i].batch.unwrap_or(usize::MAX);
            let run = || cpu::run_partitioned(plan, &analyses[i], externals, done, batch);
            match ctx.pool {
                Some(p) => p.install(run),
                None => run(),
            }
        }
        StageKind::Whole => cpu::run_whole(plan, stage, externals, done),
    };
    let mut report = RunReport {
        stages: Vec::with_capacity(plan.stages.len()),
    };
    // Values kept on the device, freed after the last stage that reads them.
    let mut resident = device::Resident::default();
    for (i, stage) in plan.stages.iter().enumerate() {
        let started = std::time::Instant::now();
        let mut fallback = None;
        let outputs = match (schedule.stages[i].placement, ctx.device) {
            (Placement::Device, Some(d)) => {
                let kept: usize = resident.values().map(|a| a.buf.len()).sum();
                let budget =
                    (ctx.config.device_memory).map_or(usize::MAX, |b| b.saturating_sub(kept));
                let ran = match stage.kind {
                    StageKind::Partitioned => device::run_partitioned(
                        plan,
                        &analyses[i],
                        &schedule.kept,
                        externals,
                        &done,
                        &resident,
                        &**d,
                        budget,
                        schedule.stages[i].batch,
                    ),
                    StageKind::Whole => {
                        device::run_whole(plan, stage, externals, &done, &resident, &**d)
                    }
                };
                match ran {
                    Ok(o) => {
                        resident.extend(o.device);
                        o.host
                    }
                    Err(e) => {
                        let why = device_fallback(&e, ctx.config.device).ok_or(e)?;
                        tracing::warn!(stage = i, "{why}");
                        fallback = Some(why);
                        bring_to_host(plan, stage, &resident, &mut done, &**d)?;
                        on_cpu(i, stage, &done)?
                    }
                }
            }
            _ => {
                if let Some(d) = ctx.device {
                    bring_to_host(plan, stage, &resident, &mut done, &**d)?;
                }
                on_cpu(i, stage, &done)?
            }
        };
        done.extend(outputs);
        if !resident.is_empty() {
            resident.retain(|k, _| plan.last_reader.get(k).is_some_and(|&last| last > i));
        }
        report.stages.push(StageRun {
            measured_s: started.elapsed().as_secs_f64(),
            fallback,
        });
    }
    let values = plan
        .targets
        .iter()
        .map(|t| match t {
            Input::External(k) => Ok(externals.get(*k).clone()),
            Input::Local(v) => done
                .get(v)
                .cloned()
                .ok_or_else(|| Error::internal("a materialised target")),
        })
        .collect::<Result<Vec<Held>>>()?;
    Ok(Outcome {
        values,
        report,
        done,
    })
}

/// Why a device stage that failed with `e` runs on the CPU instead, or `None`
/// when the error stands. A device that cannot hold one element hands the
/// stage to the CPU under any policy (the CPU computes the same result); any
/// other device failure (a module that will not load, a launch failure) does
/// under `auto`, while a forced device reports it. Errors of the user's code
/// or data (a panic, a length mismatch) are never retried.
fn device_fallback(e: &Error, policy: DevicePolicy) -> Option<String> {
    match e {
        Error::DeviceOutOfMemory { requested, free } => Some(format!(
            "device out of memory ({requested} bytes requested, {free} free): ran on the CPU"
        )),
        Error::Device(message) if policy == DevicePolicy::Auto => {
            Some(format!("device error ({message}): ran on the CPU"))
        }
        _ => None,
    }
}

/// Downloads the values kept on the device that `stage` reads, for a stage
/// that runs on the CPU after all.
fn bring_to_host(
    plan: &Plan,
    stage: &Stage,
    resident: &device::Resident,
    done: &mut Materialized,
    dev: &dyn Device,
) -> Result<()> {
    if resident.is_empty() {
        return Ok(());
    }
    for &n in &stage.nodes {
        for a in &plan.nodes[n].args {
            if let Input::Local(v) = a.input {
                if let (Some(array), false) = (resident.get(&v), done.contains_key(&v)) {
                    done.insert(v, device::to_host(dev, array)?);
                }
            }
        }
    }
    Ok(())
}

/// Calls an annotated function's CPU implementation, turning a panic into
/// [`Error::Panic`] named after the function.
pub(crate) fn call_cpu(
    info: &OpInfo,
    cpu: crate::op::CpuFn,
    args: &mut Args<'_>,
) -> Result<crate::op::Pieces> {
    crate::error::guard(|| info.name, || cpu(args))
}

/// A whole materialised value as a shared [`Held`].
pub(crate) fn share(piece: Piece) -> Held {
    Held::Shared(Arc::from(piece))
}
