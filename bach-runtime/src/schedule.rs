//! Scheduling: where each stage of a [`Plan`] runs, in batches of what size,
//! with what predicted cost and why, and which values stay on the device
//! between stages. The plan is not touched: the [`Schedule`] is a new value
//! beside it, and the executors read both.
//!
//! A stage can run on the device when every call has a device implementation
//! and every value a byte codec ([`ineligible`]); it does when the cost model
//! predicts it faster (`DevicePolicy::Auto`) or always (`DevicePolicy::Device`).
//!
//! Stages are placed in order, so a stage knows where its inputs live: an
//! array an earlier device stage produced counts as already on the device.
//! That is a guess (the value may turn out to have a CPU reader later, or not
//! to fit), so afterwards the outputs of device stages that only later device
//! stages read are marked to stay on the device ([`Schedule::kept`]), as long
//! as they take at most a quarter of the device memory together; then the
//! device stages are predicted again with that choice (batch count included).
//! A stage placed by prediction that no longer wins goes back to the CPU,
//! which can keep more values off the device, so this repeats until nothing
//! moves.

use std::any::TypeId;

use crate::analysis::StageAnalysis;
use crate::config::{Config, DevicePolicy};
use crate::cost::{predict, StageCost};
use crate::device::codec::{array_dtype, codec, device_can_produce, Codec};
use crate::device::{Device, DeviceCosts};
use crate::fasthash::FastSet;
use crate::footprint::Footprint;
use crate::plan::{Input, Plan, PlanNode, Stage, StageKind, ValueId};
use crate::split::{NdArraySplit, SplitKind, SplitVTable};

/// Which device runs a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// The host CPU, with rayon workers.
    Cpu,
    /// The device (a GPU; the simulated device in tests).
    Device,
}

/// Where and how one stage runs.
#[derive(Debug, Clone)]
pub(crate) struct StageSchedule {
    pub(crate) placement: Placement,
    /// Why the stage runs where it runs.
    pub(crate) reason: String,
    /// The cost model's prediction.
    pub(crate) cost: StageCost,
    /// Elements per batch of a partitioned stage: on the CPU, sized for the
    /// cache; on the device, the predicted batch (`None` when the element
    /// count is unknown before running: the executor sizes batches by memory).
    pub(crate) batch: Option<usize>,
    /// The predicted crossover: the fewest elements from which the device is
    /// predicted faster than the CPU for this stage, everything else as
    /// placed (`None`: not device-eligible, no device, or never faster up to
    /// 2^40 elements).
    pub(crate) crossover: Option<usize>,
}

impl StageSchedule {
    /// `stage` on the CPU, in batches of `cpu_batch` elements when partitioned.
    fn cpu(stage: &Stage, cpu_batch: usize, reason: String, cost: StageCost) -> StageSchedule {
        StageSchedule {
            placement: Placement::Cpu,
            reason,
            cost,
            batch: (stage.kind == StageKind::Partitioned).then_some(cpu_batch),
            crossover: None,
        }
    }
}

/// The schedule of a plan: one [`StageSchedule`] per stage, and the values
/// kept on the device between stages.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) stages: Vec<StageSchedule>,
    /// Escaping outputs that stay on the device for later device stages.
    pub(crate) kept: FastSet<ValueId>,
}

/// Bytes a CPU batch keeps live per element: a few split inputs and live
/// intermediates of 8 bytes, with room to spare. 4096 elements for a 1 MiB
/// L2, the best of 1024..65536 on Black-Scholes and Haversine (BENCHMARKS.md).
const CPU_BYTES_PER_ELEMENT: usize = 256;

/// Elements per CPU batch of a partitioned stage: [`CPU_BYTES_PER_ELEMENT`]
/// per number, so that a stage over the rows of a matrix (each row as wide as
/// its columns) takes proportionally fewer rows per batch.
fn cpu_batch(config: &Config, plan: &Plan, stage: &Stage) -> usize {
    let widest = (stage.nodes.iter())
        .map(|&n| plan.nodes[n].element_bytes)
        .max()
        .unwrap_or(0);
    let numbers = (widest / 8).max(1);
    let batch = config.cpu_batch(CPU_BYTES_PER_ELEMENT * numbers, numbers);
    // A reduction over rows of `w` numbers may keep a partial per batch as
    // large as `w x w` (a Gram matrix): batches of fewer than `w` rows would
    // spend their time writing and adding partials rather than computing.
    let reduced_width = (stage.nodes.iter())
        .map(|&n| &plan.nodes[n])
        .filter(|n| n.outputs.iter().any(|o| o.kind == SplitKind::Reduce))
        .map(|n| n.width)
        .max()
        .unwrap_or(1);
    match config.batch_size {
        Some(_) => batch,
        None => batch.max(reduced_width),
    }
}

/// True when the device can run the call (a kernel, or a `gpu_fn`): the
/// capability the planner keeps apart when a device may run stages.
pub(crate) fn has_device_impl(n: &PlanNode) -> bool {
    (n.info.gpu_kernel.is_some() && n.info.gpu_source.is_some()) || n.info.gpu_fn.is_some()
}

/// The schedule of `plan` (with `analyses`, one per stage) on `device` under
/// `config`.
pub(crate) fn schedule(
    plan: &Plan,
    analyses: &[StageAnalysis],
    device: Option<&dyn Device>,
    config: &Config,
) -> Schedule {
    let Some(device) = device else {
        // Nothing to choose: no prediction, which would only slow down small
        // evaluations.
        return Schedule {
            stages: (plan.stages.iter())
                .map(|s| {
                    let batch = cpu_batch(config, plan, s);
                    StageSchedule::cpu(s, batch, "no GPU".into(), StageCost::default())
                })
                .collect(),
            kept: FastSet::default(),
        };
    };
    let placer = Placer {
        plan,
        analyses,
        device,
        config,
        costs: device.costs(),
        threads: config.threads.unwrap_or_else(rayon::current_num_threads),
        free: std::cell::OnceCell::new(),
    };
    let mut schedule = Schedule {
        stages: Vec::with_capacity(plan.stages.len()),
        kept: FastSet::default(),
    };
    for i in 0..plan.stages.len() {
        let s = placer.first_pass(i, &schedule.stages);
        schedule.stages.push(s);
    }
    if schedule
        .stages
        .iter()
        .any(|s| s.placement == Placement::Device)
    {
        placer.settle(&mut schedule);
    }
    for i in 0..plan.stages.len() {
        let stage = &plan.stages[i];
        if stage.kind == StageKind::Partitioned && ineligible(plan, stage).is_none() {
            let kept = &schedule.kept;
            schedule.stages[i].crossover = placer.crossover(i, &|v| kept.contains(&v));
        }
    }
    schedule
}

/// What placement needs at hand.
struct Placer<'p> {
    plan: &'p Plan,
    analyses: &'p [StageAnalysis],
    device: &'p dyn Device,
    config: &'p Config,
    costs: DeviceCosts,
    threads: usize,
    /// The device's free memory (within the configured budget), asked once
    /// and only when a stage needs it (a CUDA query).
    free: std::cell::OnceCell<usize>,
}

impl Placer<'_> {
    fn memory(&self) -> usize {
        *self.free.get_or_init(|| {
            (self.config.device_memory)
                .unwrap_or(usize::MAX)
                .min(self.device.free_memory())
        })
    }

    /// Elements per CPU batch of stage `i`.
    fn cpu_batch(&self, i: usize) -> usize {
        cpu_batch(self.config, self.plan, &self.plan.stages[i])
    }

    fn forced(&self) -> bool {
        self.config.device == DevicePolicy::Device
    }

    fn predict(
        &self,
        i: usize,
        device: Option<usize>,
        on_device: &dyn Fn(ValueId) -> bool,
    ) -> StageCost {
        let stage = &self.plan.stages[i];
        predict(
            self.plan,
            stage,
            &self.analyses[i],
            stage.count.unwrap_or(0),
            self.threads,
            self.cpu_batch(i),
            device.map(|b| (&self.costs, b)),
            on_device,
        )
    }

    /// Places stage `i`, the stages before it placed as in `placed`.
    fn first_pass(&self, i: usize, placed: &[StageSchedule]) -> StageSchedule {
        let plan = self.plan;
        let stage = &plan.stages[i];
        let cpu = |reason, cost| StageSchedule::cpu(stage, self.cpu_batch(i), reason, cost);
        if let Some(why) = ineligible(plan, stage) {
            return cpu(why, self.predict(i, None, &|_| false));
        }
        if stage.kind == StageKind::Whole {
            // The cost model predicts batched stages; a whole call's transfers
            // and device time are not modelled, so it runs on the device
            // only when the device is forced.
            return match self.forced() {
                true => StageSchedule {
                    placement: Placement::Device,
                    reason: format!(
                        "GPU forced; every call has a device function on {}",
                        self.device.name()
                    ),
                    cost: StageCost::default(),
                    batch: None,
                    crossover: None,
                },
                false => cpu(
                    "whole-value stage: on the device only when forced (its cost is not predicted)"
                        .into(),
                    self.predict(i, None, &|_| false),
                ),
            };
        }
        let n = stage.count.unwrap_or(0);
        // The device's launches alone are a lower bound of its time: when the
        // CPU beats even that, the stage is settled without the full
        // prediction, which would cost more than a small evaluation itself.
        if let (DevicePolicy::Auto, Some(_)) = (self.config.device, stage.count) {
            let cost = self.predict(i, None, &|_| false);
            let launches_s = stage.nodes.len() as f64 * self.costs.launch_s;
            if launches_s >= cost.cpu_s {
                let reason = format!(
                    "CPU predicted {:.3} ms; the device's {} launch(es) alone take {:.3} ms",
                    cost.cpu_s * 1e3,
                    stage.nodes.len(),
                    launches_s * 1e3
                );
                return cpu(reason, cost);
            }
        }
        let batch = Footprint::of(
            &self.analyses[i],
            &self.analyses[i].planned_widths(),
            &|_| false,
        )
        .batch(self.memory(), n);
        let on_device = |v: ValueId| {
            let producer = plan.stage_of[v.node];
            producer < i
                && placed[producer].placement == Placement::Device
                && may_stay_on_device(plan, v)
        };
        let cost = self.predict(i, Some(n.div_ceil(batch).max(1)), &on_device);
        let device_s = cost.device_s();
        if self.forced() {
            return StageSchedule {
                placement: Placement::Device,
                reason: format!(
                    "GPU forced; every call has a kernel on {}",
                    self.device.name()
                ),
                batch: device_batch(stage.count, &cost),
                cost,
                crossover: None,
            };
        }
        if stage.count.is_none() {
            return cpu("size unknown before running".to_string(), cost);
        }
        match device_s {
            Some(dev_s) if dev_s < cost.cpu_s => StageSchedule {
                placement: Placement::Device,
                reason: device_wins(self.device, dev_s, cost.cpu_s),
                batch: device_batch(stage.count, &cost),
                cost,
                crossover: None,
            },
            dev_s => cpu(cpu_wins(cost.cpu_s, dev_s), cost),
        }
    }

    /// The predicted crossover of stage `i` (see [`StageSchedule::crossover`]):
    /// the stage predicted at 1, 2, 4, ... elements until the device wins,
    /// then bisected. Only the element count changes; the calls' costs per
    /// element and the values on the device stay as placed. (Cached with
    /// the schedule, so computed once per shape.)
    fn crossover(&self, i: usize, on_device: &dyn Fn(ValueId) -> bool) -> Option<usize> {
        let analysis = &self.analyses[i];
        let footprint = Footprint::of(analysis, &analysis.planned_widths(), on_device);
        let memory = self.memory();
        let stage = &self.plan.stages[i];
        let device_wins = |n: usize| {
            let batches = n.div_ceil(footprint.batch(memory, n)).max(1);
            let cost = predict(
                self.plan,
                stage,
                analysis,
                n,
                self.threads,
                self.cpu_batch(i),
                Some((&self.costs, batches)),
                on_device,
            );
            cost.device_s().is_some_and(|d| d < cost.cpu_s)
        };
        let mut below = 0;
        for k in 0..=40 {
            let n = 1usize << k;
            if !device_wins(n) {
                below = n;
                continue;
            }
            // The device wins at n and not at `below`: bisect.
            let mut hi = n;
            while hi - below > 1 {
                let mid = below + (hi - below) / 2;
                if device_wins(mid) {
                    hi = mid;
                } else {
                    below = mid;
                }
            }
            return Some(hi);
        }
        None
    }

    /// The second pass: settles which values stay on the device and
    /// predicts the device stages again, until nothing moves.
    fn settle(&self, schedule: &mut Schedule) {
        let plan = self.plan;
        let memory = self.memory();
        loop {
            schedule.kept = kept_outputs(plan, &schedule.stages, memory / 4);
            let mut moved = false;
            for i in 0..plan.stages.len() {
                if schedule.stages[i].placement != Placement::Device
                    || plan.stages[i].kind == StageKind::Whole
                {
                    continue;
                }
                let stage = &plan.stages[i];
                let n = stage.count.unwrap_or(0);
                // The memory left beside the values on the device while the
                // stage runs: those read later and its own kept outputs.
                let kept_bytes: usize = (schedule.kept.iter())
                    .filter(|&&v| {
                        let producer = plan.stage_of[v.node];
                        producer == i
                            || (producer < i && plan.last_reader.get(&v).is_some_and(|&l| l >= i))
                    })
                    .map(|&v| kept_bytes(plan, v))
                    .sum();
                let kept = &schedule.kept;
                let batch = Footprint::of(
                    &self.analyses[i],
                    &self.analyses[i].planned_widths(),
                    &|v| kept.contains(&v),
                )
                .batch(memory.saturating_sub(kept_bytes), n);
                let cost = self.predict(i, Some(n.div_ceil(batch).max(1)), &|v| kept.contains(&v));
                let dev_s = cost.device_s().unwrap_or(f64::INFINITY);
                let s = &mut schedule.stages[i];
                if !self.forced() && dev_s >= cost.cpu_s {
                    s.placement = Placement::Cpu;
                    s.reason = cpu_wins(cost.cpu_s, Some(dev_s));
                    s.batch = Some(self.cpu_batch(i));
                    moved = true;
                } else {
                    if !self.forced() {
                        s.reason = device_wins(self.device, dev_s, cost.cpu_s);
                    }
                    s.batch = device_batch(stage.count, &cost);
                }
                s.cost = cost;
            }
            if !moved {
                break;
            }
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
fn device_batch(count: Option<usize>, cost: &StageCost) -> Option<usize> {
    count.map(|n| n.div_ceil(cost.batches.max(1) as usize).max(1))
}

/// Device bytes of value `v` kept whole on the device (its rows estimated as
/// wide as its producer's widest split argument).
fn kept_bytes(plan: &Plan, v: ValueId) -> usize {
    array_dtype(plan.nodes[v.node].outputs[v.output as usize].value_id)
        .map_or(0, |d| d.size())
        .saturating_mul(plan.nodes[v.node].width)
        .saturating_mul(
            plan.stages[plan.stage_of[v.node]]
                .count
                .unwrap_or(usize::MAX / 16),
        )
}

/// True when `value` could stay on the device: a plain array split by
/// `NdArraySplit`, not a target, and read only piece by piece (by
/// `NdArraySplit` arguments).
fn may_stay_on_device(plan: &Plan, value: ValueId) -> bool {
    let ndarray = |vt: &SplitVTable| {
        vt.kind == SplitKind::Partition
            && vt.split_id == TypeId::of::<NdArraySplit>()
            && array_dtype(vt.value_id).is_some()
    };
    let producer = &plan.nodes[value.node];
    if !ndarray(producer.outputs[value.output as usize]) || plan.is_target(value.node) {
        return false;
    }
    plan.nodes.iter().all(|n| {
        n.args.iter().all(|a| match a.input {
            Input::Local(v) if v == value => ndarray(a.split) && !a.mutated,
            _ => true,
        })
    })
}

/// The escaping outputs of device stages that stay on the device: every
/// reader is in a later device stage, and together they take at most `room` bytes.
fn kept_outputs(plan: &Plan, placed: &[StageSchedule], room: usize) -> FastSet<ValueId> {
    let on_device = |s: usize| placed[s].placement == Placement::Device;
    let mut keep = FastSet::default();
    let mut used = 0usize;
    let mut values: Vec<ValueId> = plan.escaping.iter().copied().collect();
    values.sort_unstable();
    for value in values {
        let producer = plan.stage_of[value.node];
        if !on_device(producer) || !may_stay_on_device(plan, value) {
            continue;
        }
        let readers_on_device = plan.nodes.iter().enumerate().all(|(n, node)| {
            let reads = node
                .args
                .iter()
                .any(|a| matches!(a.input, Input::Local(v) if v == value));
            !reads || plan.stage_of[n] == producer || on_device(plan.stage_of[n])
        });
        let bytes = kept_bytes(plan, value);
        if readers_on_device && used.saturating_add(bytes) <= room {
            used += bytes;
            keep.insert(value);
        }
    }
    keep
}

/// Why a stage cannot run on a device (`None`: it can).
pub(crate) fn ineligible(plan: &Plan, stage: &Stage) -> Option<String> {
    if stage.kind == StageKind::Whole {
        return whole_ineligible(plan, stage);
    }
    for &n in &stage.nodes {
        let pn = &plan.nodes[n];
        let name = pn.info.name;
        if !has_device_impl(pn) {
            return Some(format!("`{name}` has no GPU kernel"));
        }
        let device_fn = pn.info.gpu_fn.is_some();
        if pn.args.iter().any(|a| a.mutated) || pn.outputs.len() != 1 {
            return Some(format!("`{name}` mutates an argument"));
        }
        let out = &pn.outputs[0];
        let supported = match (out.kind, codec(out.value_id)) {
            _ if !device_can_produce(out.value_id) => false,
            (SplitKind::Partition, Some(Codec::Array { .. })) => true,
            // Reductions: a kernel writes per-block partials of one number, a
            // device function one partial value per batch; merged on the host.
            (SplitKind::Reduce, Some(Codec::Scalar { .. })) => !device_fn,
            (SplitKind::Reduce, Some(Codec::Array { .. })) => device_fn,
            _ => false,
        };
        if !supported {
            return Some(format!(
                "`{name}` returns a value the device executor cannot produce"
            ));
        }
        for a in &pn.args {
            let ok = match (a.split.kind, codec(a.split.value_id)) {
                (SplitKind::Partition, Some(Codec::Array { .. })) => true,
                (SplitKind::Partition, None) => is_size(pn, a.split.value_id),
                (_, Some(Codec::Scalar { .. })) => true,
                // A value passed whole (a fitted model, a broadcast matrix):
                // uploaded once per stage for a device function; a kernel
                // takes only arrays split with it and scalars.
                (SplitKind::Broadcast, Some(Codec::Array { .. })) => device_fn,
                _ => false,
            };
            if !ok {
                return Some(format!(
                    "`{name}` takes a `{}` the device cannot hold",
                    a.split.value_type()
                ));
            }
        }
        // A kernel runs over the numbers of its arrays: elementwise over rows
        // of any equal width; a reduction kernel over 1-D arrays only.
        if !device_fn {
            let widths = (pn.args.iter())
                .filter(|a| {
                    a.split.kind == SplitKind::Partition && array_dtype(a.split.value_id).is_some()
                })
                .map(|a| a.width);
            let (lo, hi) = widths.fold((usize::MAX, 0), |(lo, hi), w| (lo.min(w), hi.max(w)));
            let reduce = out.kind == SplitKind::Reduce;
            if hi > 1 && (lo != hi || reduce) {
                return Some(format!(
                    "`{name}`: its kernel takes rows of {lo} to {hi} numbers (a kernel runs elementwise over equal rows)"
                ));
            }
        }
    }
    None
}

/// Why a whole-value stage cannot run on a device (`None`: it can): every
/// call needs a device function (`gpu_fn`: a kernel is elementwise), a
/// result the device can hold, and arguments that are arrays (uploaded
/// whole) or scalars.
fn whole_ineligible(plan: &Plan, stage: &Stage) -> Option<String> {
    for &n in &stage.nodes {
        let pn = &plan.nodes[n];
        let name = pn.info.name;
        if pn.info.gpu_fn.is_none() {
            return Some(format!(
                "whole-value stage: `{name}` has no device function"
            ));
        }
        if pn.args.iter().any(|a| a.mutated) || pn.outputs.len() != 1 {
            return Some(format!("`{name}` mutates an argument"));
        }
        if !matches!(codec(pn.outputs[0].value_id), Some(Codec::Array { .. }))
            || !device_can_produce(pn.outputs[0].value_id)
        {
            return Some(format!(
                "`{name}` returns a value the device executor cannot produce"
            ));
        }
        if let Some(a) = pn.args.iter().find(|a| codec(a.split.value_id).is_none()) {
            return Some(format!(
                "`{name}` takes a `{}` the device cannot hold",
                a.split.value_type()
            ));
        }
    }
    None
}

/// The size parameter of an allocation function: the kernel's `n`.
pub(crate) fn is_size(pn: &PlanNode, id: TypeId) -> bool {
    pn.info.alloc && id == TypeId::of::<usize>()
}
