//! Execution of a [`Plan`]: stage by stage, each on its placement's backend.
//!
//! Values that escape a stage are kept in a [`Materialized`] map for the
//! stages that read them; everything else lives only as per-batch pieces.

pub(crate) mod cpu;
pub(crate) mod device;
pub(crate) mod layout;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::op::{Args, OpInfo};
use crate::device::Device;
use crate::plan::{Input, Placement, Plan, Stage, StageKind};
use crate::value::{Held, Piece};

/// Whole values produced by the stages run so far, by (plan node, output).
pub(crate) type Materialized = HashMap<(usize, u32), Held>;

/// Chooses each stage's placement: the device when there is one and every
/// call of the stage has a kernel there (the paper's default policy), else the CPU.
pub(crate) fn place(plan: &mut Plan, device: Option<&dyn Device>) {
    for i in 0..plan.stages.len() {
        let (placement, reason) = match device {
            None => (Placement::Cpu, "no GPU".to_string()),
            Some(d) => match device::ineligible(plan, &plan.stages[i]) {
                None => (Placement::Gpu, format!("every call has a kernel on {}", d.name())),
                Some(why) => (Placement::Cpu, why),
            },
        };
        plan.stages[i].placement = placement;
        plan.stages[i].reason = reason;
    }
}

/// Runs every stage of `plan`; returns the targets' values in order.
pub(crate) fn run(plan: &mut Plan, graph: &Graph) -> Result<Vec<Held>> {
    let config: Config = graph.config();
    let dev = graph.device(&config)?;
    place(plan, dev.as_deref());
    let plan: &Plan = plan;
    let mut done: Materialized = HashMap::new();
    let pool = graph.pool(config.threads)?;
    let on_cpu = |stage: &Stage, done: &Materialized| match (stage.kind, &pool) {
        (StageKind::Partitioned, Some(p)) => p.install(|| cpu::run_partitioned(plan, stage, done, &config)),
        (StageKind::Partitioned, None) => cpu::run_partitioned(plan, stage, done, &config),
        (StageKind::Whole, _) => cpu::run_whole(plan, stage, done),
    };
    for stage in &plan.stages {
        let outputs = match (stage.placement, &dev) {
            (Placement::Gpu, Some(d)) => {
                let budget = config.gpu_memory.unwrap_or(usize::MAX);
                match device::run_partitioned(plan, stage, &done, &**d, budget) {
                    Ok(o) => o,
                    Err(Error::DeviceOutOfMemory { requested, free }) => {
                        // Not even one element fits: the CPU computes the same result.
                        tracing::warn!(requested, free, "device out of memory at batch size 1; running the stage on the CPU");
                        on_cpu(stage, &done)?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => on_cpu(stage, &done)?,
        };
        done.extend(outputs);
    }
    plan.targets
        .iter()
        .map(|t| match t {
            Input::External(h) => Ok(h.clone()),
            Input::Local(i, o) => done.get(&(*i, *o)).cloned().ok_or(Error::TypeMismatch {
                expected: "a materialised target",
            }),
        })
        .collect()
}

/// Calls an annotated function's CPU implementation, turning a panic into
/// [`Error::Panic`] named after the function.
pub(crate) fn call_cpu(info: &OpInfo, cpu: crate::op::CpuFn, args: &mut Args<'_>) -> Result<Vec<Piece>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu(args))) {
        Ok(r) => r,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "non-string panic payload".to_string()
            };
            Err(Error::Panic { op: info.name, message })
        }
    }
}

/// A whole materialised value as a shared [`Held`].
pub(crate) fn share(piece: Piece) -> Held {
    Held::Shared(Arc::from(piece))
}
