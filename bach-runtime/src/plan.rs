//! Planning: from the nodes an evaluation needs to a sequence of [`Stage`]s.
//!
//! The planner knows no device. It collects the pending calls reachable from
//! the targets, orders them topologically, and groups them greedily into stages:
//! a call joins the current stage when every value it reads from that stage
//! arrives piece by piece (the producer's split type is a partition split type
//! and equals the consumer's) and its element count matches. Anything else, a
//! reduction read as a whole value, an unsplittable call, a call whose
//! arguments are all broadcast, a different element count, starts a new stage.
//!
//! Invariants: a stage reads only values materialised before it (sources,
//! results of earlier stages) and values produced inside it; the outputs that
//! escape a stage (targets, values read by later stages) are exactly the ones
//! materialised whole.

use crate::fasthash::{FastMap, FastSet};
use smallvec::SmallVec;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Node, State};
use crate::op::{CpuFn, OpInfo};
use crate::split::{SplitKind, SplitVTable};
use crate::value::Held;

/// Where a call's argument comes from.
#[derive(Clone)]
pub(crate) enum Input {
    /// Output `.1` of plan node `.0`.
    Local(usize, u32),
    /// A value materialised before this evaluation.
    External(Held),
}

#[derive(Clone)]
pub(crate) struct PlanArg {
    pub(crate) input: Input,
    pub(crate) split: &'static SplitVTable,
    pub(crate) mutated: bool,
}

/// One pending call, snapshot from the graph.
pub(crate) struct PlanNode {
    pub(crate) info: OpInfo,
    pub(crate) cpu: CpuFn,
    pub(crate) args: SmallVec<[PlanArg; 2]>,
    pub(crate) outputs: SmallVec<[&'static SplitVTable; 1]>,
    /// Elements the call splits, when known before running.
    pub(crate) count: Option<usize>,
}

/// How a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Split into batches of elements; every call runs once per batch.
    Partitioned,
    /// Every call runs once on whole values.
    Whole,
}

/// Which device runs a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// The host CPU, with rayon workers.
    Cpu,
    /// A GPU.
    Gpu,
}

/// A group of calls executed together.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub(crate) kind: StageKind,
    pub(crate) placement: Placement,
    /// Why the stage runs where it runs.
    pub(crate) reason: String,
    /// The cost model's prediction.
    pub(crate) cost: crate::cost::StageCost,
    /// Plan node indices in execution order.
    pub(crate) nodes: Vec<usize>,
    /// Elements split, when known before running.
    pub(crate) count: Option<usize>,
    /// Elements per batch on the device (stages placed there).
    pub(crate) device_batch: Option<usize>,
}

/// The plan of one evaluation.
pub(crate) struct Plan {
    pub(crate) nodes: Vec<PlanNode>,
    pub(crate) stages: Vec<Stage>,
    /// For each target: where its value comes from.
    pub(crate) targets: Vec<Input>,
    /// Outputs read outside the stage that produces them (or targets).
    pub(crate) escaping: FastSet<(usize, u32)>,
    /// Escaping outputs that stay on the device for later device stages
    /// (chosen by `exec::place`; empty without a device).
    pub(crate) resident: FastSet<(usize, u32)>,
}

impl Plan {
    /// The stage index of every plan node.
    pub(crate) fn stage_of(&self) -> Vec<usize> {
        let mut stage_of = vec![0usize; self.nodes.len()];
        for (s, st) in self.stages.iter().enumerate() {
            for &n in &st.nodes {
                stage_of[n] = s;
            }
        }
        stage_of
    }
}

impl Plan {
    /// Builds the plan for evaluating `targets` (node, output) pairs.
    ///
    /// With `by_kernel` (a device may run stages), calls with and without a
    /// device implementation never share a stage, so that a call the device
    /// cannot run does not keep its neighbours off the device.
    pub(crate) fn build(targets: &[(Arc<Node>, u32)], by_kernel: bool) -> Result<Plan> {
        let mut index: FastMap<u64, usize> =
            FastMap::with_capacity_and_hasher(64, Default::default());
        let mut nodes: Vec<PlanNode> = Vec::with_capacity(64);

        // Iterative post-order DFS: a node is emitted after all its inputs.
        enum Visit {
            Enter(Arc<Node>),
            Exit(Arc<Node>),
        }
        let mut stack: Vec<Visit> = targets
            .iter()
            .map(|(n, _)| Visit::Enter(n.clone()))
            .rev()
            .collect();
        let mut entered: FastSet<u64> = FastSet::with_capacity_and_hasher(64, Default::default());
        while let Some(v) = stack.pop() {
            match v {
                Visit::Enter(n) => {
                    if !entered.insert(n.id) {
                        continue;
                    }
                    let state = n.lock();
                    let State::Pending(call) = &*state else {
                        continue;
                    };
                    // Sources (nodes without outputs of a call) need no visit;
                    // calls computed earlier are skipped when entered.
                    let pending: SmallVec<[Arc<Node>; 4]> = call
                        .args
                        .iter()
                        .rev()
                        .filter(|a| !a.input.outputs.is_empty() && !entered.contains(&a.input.id))
                        .map(|a| a.input.clone())
                        .collect();
                    drop(state);
                    stack.push(Visit::Exit(n));
                    stack.extend(pending.into_iter().map(Visit::Enter));
                }
                Visit::Exit(n) => {
                    let state = n.lock();
                    // Computed meanwhile by another evaluation: read it as a value.
                    let State::Pending(call) = &*state else {
                        continue;
                    };
                    if let Some(e) = &call.error {
                        return Err(e.clone());
                    }
                    let args = call
                        .args
                        .iter()
                        .map(|a| {
                            let input = match index.get(&a.input.id) {
                                Some(&i) => Input::Local(i, a.output),
                                None => match &*a.input.lock() {
                                    State::Done(vals) => {
                                        Input::External(vals[a.output as usize].clone())
                                    }
                                    State::Pending(_) => {
                                        unreachable!("inputs are planned before their readers")
                                    }
                                },
                            };
                            PlanArg {
                                input,
                                split: a.split,
                                mutated: a.mutated,
                            }
                        })
                        .collect();
                    let (info, cpu) = (call.info, call.cpu);
                    drop(state);
                    index.insert(n.id, nodes.len());
                    nodes.push(PlanNode {
                        outputs: n.outputs.clone(),
                        info,
                        cpu,
                        args,
                        count: None,
                    });
                }
            }
        }

        for i in 0..nodes.len() {
            nodes[i].count = static_count(&nodes, i)?;
        }

        let target_inputs: Vec<Input> = targets
            .iter()
            .map(|(n, o)| match index.get(&n.id) {
                Some(&i) => Input::Local(i, *o),
                None => match &*n.lock() {
                    State::Done(vals) => Input::External(vals[*o as usize].clone()),
                    State::Pending(_) => unreachable!("pending targets are planned"),
                },
            })
            .collect();

        let stages = group(&nodes, by_kernel);
        let mut stage_of = vec![0usize; nodes.len()];
        for (s, st) in stages.iter().enumerate() {
            for &n in &st.nodes {
                stage_of[n] = s;
            }
        }
        let mut escaping = FastSet::with_capacity_and_hasher(16, Default::default());
        // Every output of a target call is materialised (not only the one
        // asked for), so that the call can be cached whole: a `&mut` call's
        // return value and new argument version come from one run.
        for t in &target_inputs {
            if let Input::Local(i, _) = t {
                for o in 0..nodes[*i].outputs.len() {
                    escaping.insert((*i, o as u32));
                }
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            for a in &n.args {
                if let Input::Local(p, o) = a.input {
                    if stage_of[p] != stage_of[i] {
                        escaping.insert((p, o));
                    }
                }
            }
        }
        Ok(Plan {
            nodes,
            stages,
            targets: target_inputs,
            escaping,
            resident: FastSet::default(),
        })
    }
}

/// The element count of node `i`'s split arguments, when known before running;
/// an error when two known counts differ.
fn static_count(nodes: &[PlanNode], i: usize) -> Result<Option<usize>> {
    let n = &nodes[i];
    let mut count: Option<usize> = None;
    for (pos, a) in n.args.iter().enumerate() {
        if a.split.kind != SplitKind::Partition {
            continue;
        }
        let c = match &a.input {
            Input::External(h) => a.split.elements_of(h.get()),
            Input::Local(p, o) => match nodes[*p].outputs[*o as usize].kind {
                SplitKind::Partition => nodes[*p].count,
                _ => None,
            },
        };
        match (count, c) {
            (Some(expected), Some(found)) if expected != found => {
                return Err(Error::LengthMismatch {
                    op: n.info.name,
                    arg: pos,
                    expected,
                    found,
                })
            }
            (None, Some(c)) => count = Some(c),
            _ => {}
        }
    }
    Ok(count)
}

fn has_partition_arg(n: &PlanNode) -> bool {
    n.args.iter().any(|a| a.split.kind == SplitKind::Partition)
}

/// True when every output of the call can be merged from per-batch pieces: a
/// broadcast output (other than `()`) would keep one batch's value and lose
/// the others, so such a call runs whole.
fn outputs_merge(n: &PlanNode) -> bool {
    n.outputs
        .iter()
        .all(|o| o.kind != SplitKind::Broadcast || o.value_id == std::any::TypeId::of::<()>())
}

/// True when the device can run the call (a kernel, or a `gpu_fn`).
fn has_device_impl(n: &PlanNode) -> bool {
    (n.info.gpu_kernel.is_some() && n.info.gpu_source.is_some()) || n.info.gpu_fn.is_some()
}

/// Greedy grouping of topologically ordered nodes into stages.
fn group(nodes: &[PlanNode], by_kernel: bool) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut in_current = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let partitioned = n.info.splittable && has_partition_arg(n) && outputs_merge(n);
        let joins = partitioned
            && stages.last().is_some_and(|s| {
                if s.kind != StageKind::Partitioned {
                    return false;
                }
                if by_kernel && has_device_impl(&nodes[s.nodes[0]]) != has_device_impl(n) {
                    return false;
                }
                let mut fused = false;
                for a in &n.args {
                    if let Input::Local(p, o) = a.input {
                        if in_current[p] {
                            if !nodes[p].outputs[o as usize].fuses_with(a.split) {
                                return false;
                            }
                            fused = true;
                        }
                    }
                }
                fused || (s.count.is_some() && s.count == n.count)
            });
        if !joins {
            for &m in stages.last().map(|s| s.nodes.as_slice()).unwrap_or(&[]) {
                in_current[m] = false;
            }
            stages.push(Stage {
                kind: if partitioned {
                    StageKind::Partitioned
                } else {
                    StageKind::Whole
                },
                placement: Placement::Cpu,
                reason: "no device".into(),
                cost: Default::default(),
                nodes: Vec::new(),
                count: if partitioned { n.count } else { None },
                device_batch: None,
            });
        }
        let s = stages.last_mut().expect("a stage was just pushed");
        s.nodes.push(i);
        if s.count.is_none() {
            s.count = n.count;
        }
        in_current[i] = true;
    }
    stages
}
