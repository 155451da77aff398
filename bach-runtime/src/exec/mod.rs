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
///
/// Stages are placed in order, so a stage knows where its inputs live: an
/// array an earlier device stage produced counts as already on the device.
/// That is a guess (the value may turn out to have a CPU reader later, or not
/// to fit), so afterwards the outputs of device stages that only later device
/// stages read are marked to stay on the device (`Plan::resident`), as long as
/// they take at most a quarter of the device memory together; then the device
/// stages are predicted again with that choice (batch count included). A stage
/// placed by prediction that no longer wins goes back to the CPU, which can
/// keep more values off the device, so this repeats until nothing moves.
pub(crate) fn place(plan: &mut Plan, device: Option<&dyn Device>, config: &Config) {
    let threads = config.threads.unwrap_or_else(rayon::current_num_threads);
    let stage_of = match device {
        Some(_) => plan.stage_of(),
        None => Vec::new(),
    };
    // Asked of the device once, and only when a stage needs it (a CUDA query).
    let free = std::cell::OnceCell::new();
    let memory = || {
        device.map(|d| {
            *free.get_or_init(|| config.gpu_memory.unwrap_or(usize::MAX).min(d.free_memory()))
        })
    };
    for i in 0..plan.stages.len() {
        let stage = &plan.stages[i];
        let n = stage.count.unwrap_or(0);
        let eligible = device.map(|d| (d, device::ineligible(plan, stage)));
        // The device's launches alone are a lower bound of its time: when the
        // CPU beats even that, the stage is settled without the full
        // prediction, which would cost more than a small evaluation itself.
        if let (Some((d, None)), crate::config::DevicePolicy::Auto, Some(n)) =
            (&eligible, config.device, stage.count)
        {
            let cost = crate::cost::predict(plan, stage, n, threads, None, &|_| false);
            let launches_s = stage.nodes.len() as f64 * d.costs().launch_s;
            if launches_s >= cost.cpu_s {
                let stage = &mut plan.stages[i];
                stage.placement = Placement::Cpu;
                stage.device_batch = None;
                stage.reason = format!(
                    "CPU predicted {:.3} ms; the device's {} launch(es) alone take {:.3} ms",
                    cost.cpu_s * 1e3,
                    stage.nodes.len(),
                    launches_s * 1e3
                );
                stage.cost = cost;
                continue;
            }
        }
        let device_costs = match &eligible {
            Some((d, None)) => memory().map(|memory| {
                let batch = device::Footprint::of(plan, stage).batch(memory, n);
                (d.costs(), n.div_ceil(batch).max(1))
            }),
            _ => None,
        };
        let on_device = |(p, o): (usize, u32)| {
            stage_of[p] < i
                && plan.stages[stage_of[p]].placement == Placement::Gpu
                && may_stay_on_device(plan, p, o)
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
                &on_device,
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
            (Some((d, None)), Some(dev_s)) if dev_s < cost.cpu_s => {
                (Placement::Gpu, device_wins(d, dev_s, cost.cpu_s))
            }
            (Some(_), dev_s) => (Placement::Cpu, cpu_wins(cost.cpu_s, dev_s)),
        };
        let stage = &mut plan.stages[i];
        stage.device_batch = match placement {
            Placement::Gpu => device_batch(stage.count, &cost),
            Placement::Cpu => None,
        };
        stage.placement = placement;
        stage.reason = reason;
        stage.cost = cost;
    }
    if !plan.stages.iter().any(|s| s.placement == Placement::Gpu) {
        return;
    }
    let (Some(d), Some(memory)) = (device, memory()) else {
        return;
    };
    let forced = config.device == crate::config::DevicePolicy::Gpu;
    let costs = d.costs();
    loop {
        plan.resident = resident_outputs(plan, &stage_of, memory / 4);
        let last_reader = last_readers(plan);
        let mut moved = false;
        for i in 0..plan.stages.len() {
            let stage = &plan.stages[i];
            if stage.placement != Placement::Gpu {
                continue;
            }
            let n = stage.count.unwrap_or(0);
            // The memory left beside the values on the device while the
            // stage runs: those read later and its own kept outputs.
            let kept: usize = plan
                .resident
                .iter()
                .filter(|&&(p, o)| {
                    stage_of[p] == i
                        || (stage_of[p] < i && last_reader.get(&(p, o)).is_some_and(|&l| l >= i))
                })
                .map(|&(p, o)| resident_bytes(plan, &stage_of, p, o))
                .sum();
            let batch = device::Footprint::of(plan, stage).batch(memory.saturating_sub(kept), n);
            let batches = n.div_ceil(batch).max(1);
            let cost =
                crate::cost::predict(plan, stage, n, threads, Some((&costs, batches)), &|k| {
                    plan.resident.contains(&k)
                });
            let dev_s = cost.device_s().unwrap_or(f64::INFINITY);
            let stage = &mut plan.stages[i];
            if !forced && dev_s >= cost.cpu_s {
                stage.placement = Placement::Cpu;
                stage.reason = cpu_wins(cost.cpu_s, Some(dev_s));
                stage.device_batch = None;
                moved = true;
            } else {
                if !forced {
                    stage.reason = device_wins(d, dev_s, cost.cpu_s);
                }
                stage.device_batch = device_batch(stage.count, &cost);
            }
            stage.cost = cost;
        }
        if !moved {
            break;
        }
    }
}

/// The reason of a stage the device is predicted to run faster.
fn device_wins(d: &dyn Device, dev_s: f64, cpu_s: f64) -> String {
    format!(
        "{} predicted {:.3} ms vs {:.3} ms on the CPU",
        d.name(),
        dev_s * 1e3,
        cpu_s * 1e3
    )
}

/// The reason of a stage the CPU is predicted to run faster.
fn cpu_wins(cpu_s: f64, dev_s: Option<f64>) -> String {
    format!(
        "CPU predicted {:.3} ms vs {:.3} ms on the device",
        cpu_s * 1e3,
        dev_s.unwrap_or(f64::INFINITY) * 1e3
    )
}

/// Elements per device batch for the predicted batch count; `None` when the
/// element count is unknown before running (the executor then sizes batches
/// by memory alone, rather than cutting the data into one-element batches).
fn device_batch(count: Option<usize>, cost: &crate::cost::StageCost) -> Option<usize> {
    count.map(|n| n.div_ceil(cost.batches.max(1) as usize).max(1))
}

/// Device bytes of output `o` of node `p` kept whole on the device.
fn resident_bytes(plan: &Plan, stage_of: &[usize], p: usize, o: u32) -> usize {
    crate::device::codec::array_dtype(plan.nodes[p].outputs[o as usize].value_id)
        .map_or(0, |d| d.size())
        .saturating_mul(plan.stages[stage_of[p]].count.unwrap_or(usize::MAX / 16))
}

/// True when output `o` of plan node `p` could stay on the device: a plain
/// array split by `NdArraySplit`, not a target, and read only piece by piece
/// (by `NdArraySplit` arguments).
fn may_stay_on_device(plan: &Plan, p: usize, o: u32) -> bool {
    let vt = plan.nodes[p].outputs[o as usize];
    let ndarray = |vt: &crate::split::SplitVTable| {
        vt.kind == crate::split::SplitKind::Partition
            && vt.split_id == std::any::TypeId::of::<crate::split::NdArraySplit>()
            && crate::device::codec::array_dtype(vt.value_id).is_some()
    };
    if !ndarray(vt) {
        return false;
    }
    if plan
        .targets
        .iter()
        .any(|t| matches!(t, Input::Local(tp, _) if *tp == p))
    {
        return false;
    }
    plan.nodes.iter().all(|n| {
        n.args.iter().all(|a| match a.input {
            Input::Local(q, r) if (q, r) == (p, o) => ndarray(a.split) && !a.mutated,
            _ => true,
        })
    })
}

/// The escaping outputs of device stages that stay on the device: every
/// reader is in a later device stage, and together they take at most `room` bytes.
fn resident_outputs(
    plan: &Plan,
    stage_of: &[usize],
    room: usize,
) -> crate::fasthash::FastSet<(usize, u32)> {
    let mut keep = crate::fasthash::FastSet::default();
    let mut used = 0usize;
    let mut keys: Vec<(usize, u32)> = plan.escaping.iter().copied().collect();
    keys.sort_unstable();
    for (p, o) in keys {
        let producer = &plan.stages[stage_of[p]];
        if producer.placement != Placement::Gpu || !may_stay_on_device(plan, p, o) {
            continue;
        }
        let readers_on_device = plan.nodes.iter().enumerate().all(|(n, node)| {
            let reads = node
                .args
                .iter()
                .any(|a| matches!(a.input, Input::Local(q, r) if (q, r) == (p, o)));
            !reads
                || stage_of[n] == stage_of[p]
                || plan.stages[stage_of[n]].placement == Placement::Gpu
        });
        let bytes = resident_bytes(plan, stage_of, p, o);
        if readers_on_device && used.saturating_add(bytes) <= room {
            used += bytes;
            keep.insert((p, o));
        }
    }
    keep
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
    // Values kept on the device, freed after the last stage that reads them.
    let mut resident = device::Resident::default();
    let last_reader = last_readers(plan);
    for (i, stage) in plan.stages.iter().enumerate() {
        let started = std::time::Instant::now();
        let outputs = match (stage.placement, &dev) {
            (Placement::Gpu, Some(d)) => {
                let kept: usize = resident.values().map(|a| a.buf.len()).sum();
                let budget = config
                    .gpu_memory
                    .map_or(usize::MAX, |b| b.saturating_sub(kept));
                match device::run_partitioned(
                    plan,
                    stage,
                    &done,
                    &resident,
                    &**d,
                    budget,
                    stage.device_batch,
                ) {
                    Ok(o) => {
                        resident.extend(o.device);
                        o.host
                    }
                    Err(Error::DeviceOutOfMemory { requested, free }) => {
                        // Not even one element fits: the CPU computes the same result.
                        tracing::warn!(
                            requested,
                            free,
                            "device out of memory at batch size 1; running the stage on the CPU"
                        );
                        fallbacks.push((i, format!("device out of memory ({requested} bytes requested, {free} free): ran on the CPU")));
                        bring_to_host(plan, stage, &resident, &mut done, &**d)?;
                        on_cpu(stage, &done)?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => {
                if let Some(d) = &dev {
                    bring_to_host(plan, stage, &resident, &mut done, &**d)?;
                }
                on_cpu(stage, &done)?
            }
        };
        done.extend(outputs);
        resident.retain(|k, _| last_reader.get(k).is_some_and(|&last| last > i));
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

/// The last stage reading each output that some stage other than its
/// producer's reads.
fn last_readers(plan: &Plan) -> FastMap<(usize, u32), usize> {
    let mut last = FastMap::default();
    if plan.resident.is_empty() {
        return last;
    }
    for (s, stage) in plan.stages.iter().enumerate() {
        for &n in &stage.nodes {
            for a in &plan.nodes[n].args {
                if let Input::Local(p, o) = a.input {
                    last.insert((p, o), s);
                }
            }
        }
    }
    last
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
            if let Input::Local(p, o) = a.input {
                if let (Some(array), false) = (resident.get(&(p, o)), done.contains_key(&(p, o))) {
                    done.insert((p, o), device::to_host(dev, array)?);
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
) -> Result<Vec<Piece>> {
    crate::error::guard(|| info.name, || cpu(args))
}

/// A whole materialised value as a shared [`Held`].
pub(crate) fn share(piece: Piece) -> Held {
    Held::Shared(Arc::from(piece))
}
