//! Execution of a [`Plan`]: stage by stage, each on its placement's backend.
//!
//! Values that escape a stage are kept in a [`Materialized`] map for the
//! stages that read them; everything else lives only as per-batch pieces.

pub(crate) mod cpu;
pub(crate) mod device;
pub(crate) mod layout;

use crate::fasthash::FastMap;
use std::sync::Arc;

use crate::config::Config;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::op::{Args, OpInfo};
use crate::plan::{Input, Placement, Plan, Stage, StageKind};
use crate::value::{Held, Piece};

/// Whole values produced by the stages run so far, by (plan node, output).
pub(crate) type Materialized = FastMap<(usize, u32), Held>;

/// Chooses each stage's placement. A stage can run on the device when every
/// call has a kernel there; it does when the cost model predicts it faster
/// (`DevicePolicy::Auto`) or always (`DevicePolicy::Gpu`).
pub(crate) fn place(plan: &mut Plan, device: Option<&dyn Device>, config: &Config) {
    let threads = config.threads.unwrap_or_else(rayon::current_num_threads);
    for i in 0..plan.stages.len() {
        let stage = &plan.stages[i];
        let n = stage.count.unwrap_or(0);
        let eligible = device.map(|d| (d, device::ineligible(plan, stage)));
        let device_costs = match &eligible {
            Some((d, None)) => {
                let per_element = match layout::StageLayout::build(plan, stage, &FastMap::default())
                {
                    Ok(l) => device::bytes_per_element(&l),
                    Err(_) => 64,
                };
                let memory = config.gpu_memory.unwrap_or(usize::MAX).min(d.free_memory());
                let batch = device::batch_size(per_element, memory, n);
                let batches = n.div_ceil(batch).max(1);
                Some((d.costs(), batches))
            }
            _ => None,
        };
        // Without a device there is nothing to choose: skip the prediction,
        // which would only slow down small evaluations.
        let cost = match device {
            Some(_) => crate::cost::predict(
                plan,
                stage,
                n,
                threads,
                device_costs.as_ref().map(|(c, b)| (c, *b)),
            ),
            None => crate::cost::StageCost::default(),
        };
        let (placement, reason) = match (eligible, cost.device_s()) {
            (None, _) => (Placement::Cpu, "no GPU".to_string()),
            (Some((_, Some(why))), _) => (Placement::Cpu, why),
            (Some((d, None)), _) if config.device == crate::config::DevicePolicy::Gpu => (
                Placement::Gpu,
                format!("GPU forced; every call has a kernel on {}", d.name()),
            ),
            (Some(_), _) if stage.count.is_none() => {
                (Placement::Cpu, "size unknown before running".to_string())
            }
            (Some((d, None)), Some(dev_s)) if dev_s < cost.cpu_s => (
                Placement::Gpu,
                format!(
                    "{} predicted {:.3} ms vs {:.3} ms on the CPU",
                    d.name(),
                    dev_s * 1e3,
                    cost.cpu_s * 1e3
                ),
            ),
            (Some(_), dev_s) => (
                Placement::Cpu,
                format!(
                    "CPU predicted {:.3} ms vs {:.3} ms on the device",
                    cost.cpu_s * 1e3,
                    dev_s.unwrap_or(f64::INFINITY) * 1e3
                ),
            ),
        };
        let device_batch = match placement {
            Placement::Gpu => device_costs.as_ref().map(|(_, b)| n.div_ceil((*b).max(1))),
            Placement::Cpu => None,
        };
        let stage = &mut plan.stages[i];
        stage.device_batch = device_batch;
        stage.placement = placement;
        stage.reason = reason;
        stage.cost = cost;
    }
}

/// Runs every stage of `plan`; returns the targets' values in order.
pub(crate) fn run(
    plan_mut: &mut Plan,
    graph: &Graph,
    config: &Config,
    dev: Option<std::sync::Arc<dyn Device>>,
) -> Result<(Vec<Held>, Vec<f64>, Materialized)> {
    place(plan_mut, dev.as_deref(), config);
    let mut fallbacks = Vec::new();
    let plan: &Plan = plan_mut;
    let mut done: Materialized = FastMap::default();
    let pool = graph.pool(config.threads)?;
    let on_cpu = |stage: &Stage, done: &Materialized| match (stage.kind, &pool) {
        (StageKind::Partitioned, Some(p)) => {
            p.install(|| cpu::run_partitioned(plan, stage, done, config))
        }
        (StageKind::Partitioned, None) => cpu::run_partitioned(plan, stage, done, config),
        (StageKind::Whole, _) => cpu::run_whole(plan, stage, done),
    };
    let mut seconds = Vec::with_capacity(plan.stages.len());
    for (i, stage) in plan.stages.iter().enumerate() {
        let started = std::time::Instant::now();
        let outputs = match (stage.placement, &dev) {
            (Placement::Gpu, Some(d)) => {
                let budget = config.gpu_memory.unwrap_or(usize::MAX);
                match device::run_partitioned(plan, stage, &done, &**d, budget) {
                    Ok(o) => o,
                    Err(Error::DeviceOutOfMemory { requested, free }) => {
                        // Not even one element fits: the CPU computes the same result.
                        tracing::warn!(
                            requested,
                            free,
                            "device out of memory at batch size 1; running the stage on the CPU"
                        );
                        fallbacks.push((i, format!("device out of memory ({requested} bytes requested, {free} free): ran on the CPU")));
                        on_cpu(stage, &done)?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => on_cpu(stage, &done)?,
        };
        done.extend(outputs);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let values = plan
        .targets
        .iter()
        .map(|t| match t {
            Input::External(h) => Ok(h.clone()),
            Input::Local(i, o) => done.get(&(*i, *o)).cloned().ok_or(Error::TypeMismatch {
                expected: "a materialised target",
            }),
        })
        .collect::<Result<Vec<Held>>>()?;
    // What actually ran where, for `Graph::last_run`.
    for (i, reason) in fallbacks {
        plan_mut.stages[i].placement = Placement::Cpu;
        plan_mut.stages[i].reason = reason;
    }
    Ok((values, seconds, done))
}

/// Calls an annotated function's CPU implementation, turning a panic into
/// [`Error::Panic`] named after the function.
pub(crate) fn call_cpu(
    info: &OpInfo,
    cpu: crate::op::CpuFn,
    args: &mut Args<'_>,
) -> Result<Vec<Piece>> {
    crate::error::guard(|| info.name, || cpu(args))
}

/// A whole materialised value as a shared [`Held`].
pub(crate) fn share(piece: Piece) -> Held {
    Held::Shared(Arc::from(piece))
}
