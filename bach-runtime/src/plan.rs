//! Planning: from the nodes an evaluation needs to a device-free [`Plan`].
//!
//! Two steps. [`snapshot`] walks the recorded graph from the targets and
//! copies the pending calls into [`PlanNode`]s in topological order, with the
//! values computed before this evaluation (sources, cached results) collected
//! once each as [`Externals`]. [`Plan::group`] then groups the nodes greedily
//! into stages: a call joins the current stage when every value it reads from
//! that stage arrives piece by piece (the producer's split type is a partition
//! split type and equals the consumer's) and its element count matches.
//! Anything else (a reduction read as a whole value, an unsplittable call, a
//! call whose arguments are all broadcast, a different element count) starts a
//! new stage.
//!
//! The plan knows no device and holds no data: it depends only on the graph's
//! shape (ops, split types, element counts), so it can be cached and reused
//! for every evaluation of the same shape (see `cache.rs`). Where stages run is
//! the schedule's business (`schedule.rs`).
//!
//! Invariants: a stage reads only values materialised before it (externals,
//! results of earlier stages) and values produced inside it; the outputs that
//! escape a stage (targets, values read by later stages) are exactly the ones
//! materialised whole.

use crate::fasthash::{FastMap, FastSet};
use smallvec::SmallVec;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::op::{CpuFn, OpInfo};
use crate::record::{ArgInput, Node, State};
use crate::split::{SplitKind, SplitVTable};
use crate::value::Held;

/// One output of one plan node: the key of every value an evaluation makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ValueId {
    /// The plan node (index into `Plan::nodes`).
    pub(crate) node: usize,
    /// Its output: 0 the return value, `1 + k` the `k`-th mutated argument.
    pub(crate) output: u32,
}

impl ValueId {
    pub(crate) fn new(node: usize, output: u32) -> ValueId {
        ValueId { node, output }
    }
}

/// Where a call's argument comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Input {
    /// An output of a plan node.
    Local(ValueId),
    /// A value materialised before this evaluation: index into [`Externals`].
    External(usize),
}

#[derive(Clone, Debug)]
pub(crate) struct PlanArg {
    pub(crate) input: Input,
    pub(crate) split: &'static SplitVTable,
    pub(crate) mutated: bool,
    /// Numbers per element of the value on a device (a matrix's columns; 1
    /// for 1-D arrays and values without a device codec): exact for values
    /// read before running, the producing call's [`PlanNode::width`] for
    /// values computed in the graph. Sizes device batches and transfers.
    pub(crate) width: usize,
}

/// One pending call, copied from the graph.
#[derive(Clone, Debug)]
pub(crate) struct PlanNode {
    pub(crate) info: &'static OpInfo,
    pub(crate) cpu: CpuFn,
    pub(crate) args: SmallVec<[PlanArg; 2]>,
    pub(crate) outputs: SmallVec<[&'static SplitVTable; 1]>,
    /// Elements the call splits, when known before running.
    pub(crate) count: Option<usize>,
    /// Bytes of the widest element the call splits (a matrix's row), when
    /// known before running; 0 when unknown. Sizes CPU batches.
    pub(crate) element_bytes: usize,
    /// The widest [`PlanArg::width`] of the arrays the call splits (at least
    /// 1): what its result's width is estimated as before it runs.
    pub(crate) width: usize,
}

impl PlanNode {
    /// True when `self` and `other` are the same call over the same shape of
    /// inputs: the same function and annotation, the same argument sources,
    /// split types and element counts. The plans of two snapshots whose nodes
    /// are pairwise the same are the same.
    pub(crate) fn same_shape(&self, other: &PlanNode) -> bool {
        // Split tables compare by address: one table may sit at two addresses
        // (a miss, never a wrong plan), never two tables at one.
        let same_arg = |a: &PlanArg, b: &PlanArg| {
            a.input == b.input
                && std::ptr::eq(a.split, b.split)
                && a.mutated == b.mutated
                && a.width == b.width
        };
        std::ptr::fn_addr_eq(self.cpu, other.cpu)
            && self.info.same_as(other.info)
            && self.count == other.count
            && self.element_bytes == other.element_bytes
            && self.width == other.width
            && self.args.len() == other.args.len()
            && self
                .args
                .iter()
                .zip(&other.args)
                .all(|(a, b)| same_arg(a, b))
            && self.outputs.len() == other.outputs.len()
            && (self.outputs.iter())
                .zip(&other.outputs)
                .all(|(a, b)| std::ptr::eq(*a, *b))
    }
}

/// How a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Split into batches of elements; every call runs once per batch.
    Partitioned,
    /// Every call runs once on whole values.
    Whole,
}

/// A group of calls executed together.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub(crate) kind: StageKind,
    /// Plan node indices in execution order.
    pub(crate) nodes: Vec<usize>,
    /// Elements split, when known before running.
    pub(crate) count: Option<usize>,
}

/// The values an evaluation reads that were materialised before it, each once
/// (a borrowed array passed to several calls is one external).
#[derive(Default)]
pub(crate) struct Externals(pub(crate) Vec<Held>);

impl Externals {
    pub(crate) fn get(&self, k: usize) -> &Held {
        &self.0[k]
    }
}

/// The pending calls an evaluation needs, copied from the graph.
pub(crate) struct Snapshot {
    pub(crate) nodes: Vec<PlanNode>,
    pub(crate) externals: Externals,
    /// For each target: where its value comes from.
    pub(crate) targets: Vec<Input>,
}

/// The plan of one shape of evaluation.
pub(crate) struct Plan {
    pub(crate) nodes: Vec<PlanNode>,
    pub(crate) stages: Vec<Stage>,
    /// For each target: where its value comes from.
    pub(crate) targets: Vec<Input>,
    /// Outputs read outside the stage that produces them (or targets).
    pub(crate) escaping: FastSet<ValueId>,
    /// The stage of every plan node.
    pub(crate) stage_of: Vec<usize>,
    /// The last stage that reads each value read by some call (for freeing
    /// values kept on the device after their last reader).
    pub(crate) last_reader: FastMap<ValueId, usize>,
}

/// Copies the pending calls reachable from `targets` ((node, output) pairs)
/// into plan nodes, inputs before their readers.
pub(crate) fn snapshot(targets: &[(Arc<Node>, u32)]) -> Result<Snapshot> {
    // Every node entered, with its plan index once emitted (`None`: being
    // visited, or materialised before this evaluation).
    let mut index: FastMap<u64, Option<usize>> =
        FastMap::with_capacity_and_hasher(64, Default::default());
    let mut nodes: Vec<PlanNode> = Vec::with_capacity(64);
    let mut externals = ExternalSet {
        values: Externals(Vec::with_capacity(16)),
        seen: Vec::with_capacity(16),
        index: FastMap::default(),
    };

    // Iterative post-order DFS: a node is emitted after all its inputs.
    enum Visit {
        Enter(Arc<Node>),
        Exit(Arc<Node>),
    }
    let mut stack: Vec<Visit> = Vec::with_capacity(64);
    stack.extend(targets.iter().rev().map(|(n, _)| Visit::Enter(n.clone())));
    while let Some(v) = stack.pop() {
        match v {
            Visit::Enter(n) => {
                if index.contains_key(&n.id) {
                    continue;
                }
                index.insert(n.id, None);
                let state = n.lock();
                let State::Pending(call) = &*state else {
                    continue;
                };
                stack.push(Visit::Exit(n.clone()));
                for a in call.args.iter().rev() {
                    if let ArgInput::Node(m, _) = &a.input {
                        if !index.contains_key(&m.id) {
                            stack.push(Visit::Enter(m.clone()));
                        }
                    }
                }
            }
            Visit::Exit(n) => {
                let state = n.lock();
                // Computed meanwhile by another evaluation: read it as a value.
                let State::Pending(call) = &*state else {
                    continue;
                };
                if let Some(e) = &call.error {
                    return Err((**e).clone());
                }
                let mut args = SmallVec::with_capacity(call.args.len());
                for a in &call.args {
                    let input = match &a.input {
                        ArgInput::Node(m, o) => match index.get(&m.id) {
                            Some(Some(i)) => Input::Local(ValueId::new(*i, *o)),
                            _ => externals.of_node(m, *o)?,
                        },
                        ArgInput::Value(held) => externals.of_value(held),
                    };
                    args.push(PlanArg {
                        input,
                        split: a.split,
                        mutated: a.mutated,
                        width: 1,
                    });
                }
                let (info, cpu) = (call.info, call.cpu);
                drop(state);
                index.insert(n.id, Some(nodes.len()));
                nodes.push(PlanNode {
                    outputs: n.outputs.clone(),
                    info,
                    cpu,
                    args,
                    count: None,
                    element_bytes: 0,
                    width: 1,
                });
            }
        }
    }

    let targets = targets
        .iter()
        .map(|(n, o)| match index.get(&n.id) {
            Some(Some(i)) => Ok(Input::Local(ValueId::new(*i, *o))),
            _ => externals.of_node(n, *o),
        })
        .collect::<Result<Vec<_>>>()?;
    let externals = externals.values;
    for i in 0..nodes.len() {
        nodes[i].count = static_count(&nodes, &externals, i)?;
        nodes[i].element_bytes = widest_element(&nodes, &externals, i);
        set_widths(&mut nodes, &externals, i);
    }
    Ok(Snapshot {
        nodes,
        externals,
        targets,
    })
}

/// Externals collected during the walk, each value once.
struct ExternalSet {
    values: Externals,
    /// Each value's address and type (a struct and its first field share an
    /// address) with its index: searched in order, as graphs read few
    /// distinct values; a map past `LINEAR_MAX` of them.
    seen: Vec<(usize, std::any::TypeId, usize)>,
    index: FastMap<(usize, std::any::TypeId), usize>,
}

/// Distinct values found by a linear search before a map takes over.
const LINEAR_MAX: usize = 32;

impl ExternalSet {
    /// The external for output `o` of `node`, a node materialised before this
    /// evaluation.
    fn of_node(&mut self, node: &Node, o: u32) -> Result<Input> {
        match &*node.lock() {
            State::Done(vals) => Ok(self.of_value(&vals[o as usize])),
            State::Pending(_) => Err(Error::internal(
                "every pending input planned before its reader",
            )),
        }
    }

    /// The external for `held`.
    fn of_value(&mut self, held: &Held) -> Input {
        let values = &mut self.values.0;
        if matches!(held, Held::F64(_) | Held::F32(_) | Held::Usize(_)) {
            // A scalar held inline belongs to one argument: nothing shares it.
            values.push(held.clone());
            return Input::External(values.len() - 1);
        }
        let value = held.get();
        let (address, type_id) = (
            value as *const dyn std::any::Any as *const () as usize,
            value.type_id(),
        );
        if self.seen.len() < LINEAR_MAX {
            if let Some(&(_, _, k)) =
                (self.seen.iter()).find(|(a, t, _)| *a == address && *t == type_id)
            {
                return Input::External(k);
            }
            values.push(held.clone());
            self.seen.push((address, type_id, values.len() - 1));
            if self.seen.len() == LINEAR_MAX {
                self.index = self.seen.iter().map(|&(a, t, k)| ((a, t), k)).collect();
            }
            return Input::External(values.len() - 1);
        }
        let k = *self.index.entry((address, type_id)).or_insert_with(|| {
            values.push(held.clone());
            values.len() - 1
        });
        Input::External(k)
    }
}

/// The element count of node `i`'s split arguments, when known before running;
/// an error when two known counts differ.
fn static_count(nodes: &[PlanNode], externals: &Externals, i: usize) -> Result<Option<usize>> {
    let n = &nodes[i];
    let mut count: Option<usize> = None;
    for (pos, a) in n.args.iter().enumerate() {
        if a.split.kind != SplitKind::Partition {
            continue;
        }
        let c = match a.input {
            Input::External(k) => a.split.elements_of(externals.get(k).get()),
            Input::Local(v) => match nodes[v.node].outputs[v.output as usize].kind {
                SplitKind::Partition => nodes[v.node].count,
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

/// Bytes of the widest element node `i` splits: its split inputs' own
/// (read before running), or, for values computed in the graph, the width of
/// the call that produced them. 0 when none is known.
fn widest_element(nodes: &[PlanNode], externals: &Externals, i: usize) -> usize {
    let n = &nodes[i];
    (n.args.iter())
        .filter(|a| a.split.kind == SplitKind::Partition)
        .filter_map(|a| match a.input {
            Input::External(k) => a.split.element_bytes_of(externals.get(k).get()),
            Input::Local(v) => Some(nodes[v.node].element_bytes),
        })
        .max()
        .unwrap_or(0)
}

/// Sets the device widths of node `i`'s arguments (exact for externals, the
/// producer's estimate for values computed in the graph) and its own
/// estimate: its widest split argument. Nodes come in dependency order.
fn set_widths(nodes: &mut [PlanNode], externals: &Externals, i: usize) {
    let mut widest = 1;
    for k in 0..nodes[i].args.len() {
        let a = &nodes[i].args[k];
        let width = match a.input {
            Input::External(e) => {
                crate::device::codec::value_width(a.split.value_id, externals.get(e).get())
            }
            Input::Local(v) => nodes[v.node].width,
        };
        if a.split.kind == SplitKind::Partition {
            widest = widest.max(width);
        }
        nodes[i].args[k].width = width;
    }
    nodes[i].width = widest;
}

impl Plan {
    /// Groups the snapshot's nodes into stages. With `capability`, calls for
    /// which it differs never share a stage (the schedule passes "can run on
    /// the device", so that a call without a device implementation does not
    /// keep its neighbours off the device); the planner does not know what it
    /// means.
    pub(crate) fn group(
        nodes: Vec<PlanNode>,
        targets: Vec<Input>,
        capability: Option<fn(&PlanNode) -> bool>,
    ) -> Plan {
        let stages = group(&nodes, capability);
        let mut stage_of = vec![0usize; nodes.len()];
        for (s, st) in stages.iter().enumerate() {
            for &n in &st.nodes {
                stage_of[n] = s;
            }
        }
        let mut last_reader = FastMap::default();
        for (i, n) in nodes.iter().enumerate() {
            for a in &n.args {
                if let Input::Local(v) = a.input {
                    last_reader.insert(v, stage_of[i]);
                }
            }
        }
        let mut escaping = FastSet::with_capacity_and_hasher(16, Default::default());
        // Every output of a target call is materialised (not only the one
        // asked for), so that the call can be cached whole: a `&mut` call's
        // return value and new argument version come from one run.
        for t in &targets {
            if let Input::Local(v) = t {
                for o in 0..nodes[v.node].outputs.len() {
                    escaping.insert(ValueId::new(v.node, o as u32));
                }
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            for a in &n.args {
                if let Input::Local(v) = a.input {
                    if stage_of[v.node] != stage_of[i] {
                        escaping.insert(v);
                    }
                }
            }
        }
        Plan {
            nodes,
            stages,
            targets,
            escaping,
            stage_of,
            last_reader,
        }
    }

    /// True when some target reads an output of node `p`.
    pub(crate) fn is_target(&self, p: usize) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, Input::Local(v) if v.node == p))
    }
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

/// Greedy grouping of topologically ordered nodes into stages.
fn group(nodes: &[PlanNode], capability: Option<fn(&PlanNode) -> bool>) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut in_current = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let partitioned = n.info.splittable && has_partition_arg(n) && outputs_merge(n);
        let joins = partitioned
            && stages.last().is_some_and(|s| {
                if s.kind != StageKind::Partitioned {
                    return false;
                }
                if let Some(can) = capability {
                    if can(&nodes[s.nodes[0]]) != can(n) {
                        return false;
                    }
                }
                let mut fused = false;
                for a in &n.args {
                    if let Input::Local(v) = a.input {
                        if in_current[v.node] {
                            if !nodes[v.node].outputs[v.output as usize].fuses_with(a.split) {
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
                nodes: Vec::new(),
                count: if partitioned { n.count } else { None },
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
