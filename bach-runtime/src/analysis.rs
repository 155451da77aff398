//! Stage analysis: what one partitioned stage reads, produces and keeps live,
//! worked out once from the plan and read by everyone who needs it (the cost
//! model, the device footprint, both executors).
//!
//! - Inputs: the values the stage reads from before it (externals, results of
//!   earlier stages), once per (value, split type): the executors split each
//!   once per batch, and a device uploads each once.
//! - Slots: the outputs of the stage's calls, with whether they escape the
//!   stage and the call that reads them last (their live range).
//! - Steps: per call, where each argument comes from (a slot or an input),
//!   its output slots, and the slots freed after it.
//!
//! Like the plan, the analysis depends only on the graph's shape, so it is
//! cached with it.

use smallvec::SmallVec;

use crate::device::codec::array_dtype;
use crate::plan::{Input, Plan, Stage, StageKind, ValueId};
use crate::split::{SplitKind, SplitVTable};

/// Where one argument of one call in a partitioned stage comes from, per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A piece computed earlier in this batch (slot index).
    Local(usize),
    /// A value from before the stage (index into [`StageAnalysis::inputs`]).
    Input(usize),
}

/// One call of the stage.
#[derive(Debug)]
pub(crate) struct Step {
    /// The plan node.
    pub(crate) node: usize,
    /// Each argument's source and whether the call mutates it.
    pub(crate) args: SmallVec<[(Source, bool); 4]>,
    /// Output slots of this call.
    pub(crate) out_slots: SmallVec<[usize; 2]>,
    /// Slots whose last reader is this call: freed after it runs.
    pub(crate) frees: SmallVec<[usize; 4]>,
}

/// A value the stage reads from before it, under one split type.
#[derive(Debug)]
pub(crate) struct StageInput {
    pub(crate) input: Input,
    pub(crate) split: &'static SplitVTable,
    /// The first call reading it and the argument position (for errors).
    pub(crate) first_reader: (usize, usize),
    /// Numbers per element on a device, as planned ([`PlanArg::width`](crate::plan::PlanArg)).
    pub(crate) width: usize,
}

impl StageInput {
    /// Bytes per element on a device, as planned (0: not an array, e.g. an
    /// allocation's size).
    pub(crate) fn device_bytes(&self) -> usize {
        self.number_bytes() * self.width
    }

    /// Bytes per number on a device (0: not an array).
    pub(crate) fn number_bytes(&self) -> usize {
        array_dtype(self.split.value_id).map_or(0, |d| d.size())
    }

    /// True for a value read piece by piece (a partition split type).
    pub(crate) fn partitioned(&self) -> bool {
        self.split.kind == SplitKind::Partition
    }
}

/// An output of one of the stage's calls.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) value: ValueId,
    pub(crate) split: &'static SplitVTable,
    /// Read after the stage (or a target): materialised whole.
    pub(crate) escaping: bool,
    /// The step that reads it last (its producer when nothing in the stage reads it).
    pub(crate) last_step: usize,
    /// Numbers per element on a device, as estimated before running (the
    /// producing call's widest split argument).
    pub(crate) width: usize,
}

impl Slot {
    /// Bytes per element on a device, as estimated (0: not an array).
    pub(crate) fn device_bytes(&self) -> usize {
        self.number_bytes() * self.width
    }

    /// Bytes per number on a device (0: not an array).
    pub(crate) fn number_bytes(&self) -> usize {
        array_dtype(self.split.value_id).map_or(0, |d| d.size())
    }
}

/// Numbers per element of a stage's inputs and slots on a device: as planned
/// ([`StageAnalysis::planned_widths`]), or as this evaluation's values have
/// them (the device executor's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageWidths {
    /// Per [`StageAnalysis::inputs`] entry.
    pub(crate) inputs: Vec<usize>,
    /// Per [`StageAnalysis::slots`] entry.
    pub(crate) slots: Vec<usize>,
}

/// The analysis of one stage (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct StageAnalysis {
    pub(crate) steps: Vec<Step>,
    pub(crate) inputs: Vec<StageInput>,
    pub(crate) slots: Vec<Slot>,
}

impl StageAnalysis {
    /// The widths the plan knows: exact for values read before running,
    /// estimated for the rest.
    pub(crate) fn planned_widths(&self) -> StageWidths {
        StageWidths {
            inputs: self.inputs.iter().map(|i| i.width).collect(),
            slots: self.slots.iter().map(|s| s.width).collect(),
        }
    }

    /// The analysis of every stage of `plan` (empty for whole-value stages,
    /// which run call by call on whole values).
    pub(crate) fn of_plan(plan: &Plan) -> Vec<StageAnalysis> {
        plan.stages
            .iter()
            .map(|s| match s.kind {
                StageKind::Partitioned => StageAnalysis::of(plan, s),
                StageKind::Whole => StageAnalysis::default(),
            })
            .collect()
    }

    /// The analysis of `stage`.
    pub(crate) fn of(plan: &Plan, stage: &Stage) -> StageAnalysis {
        let mut slots: Vec<Slot> = Vec::new();
        let mut inputs: Vec<StageInput> = Vec::new();
        let mut steps: Vec<Step> = Vec::with_capacity(stage.nodes.len());
        let slot_of = |slots: &[Slot], v: ValueId| slots.iter().position(|s| s.value == v);
        for (k, &n) in stage.nodes.iter().enumerate() {
            let node = &plan.nodes[n];
            let mut args = SmallVec::new();
            for (pos, a) in node.args.iter().enumerate() {
                let local = match a.input {
                    Input::Local(v) => slot_of(&slots, v),
                    Input::External(_) => None,
                };
                let src = match local {
                    Some(s) => {
                        slots[s].last_step = k;
                        Source::Local(s)
                    }
                    None => {
                        // Once per (value, split type), as the executors split them.
                        let same = |i: &StageInput| {
                            i.input == a.input
                                && i.split.split_id == a.split.split_id
                                && i.split.value_id == a.split.value_id
                        };
                        let i = inputs.iter().position(same).unwrap_or_else(|| {
                            inputs.push(StageInput {
                                input: a.input,
                                split: a.split,
                                first_reader: (n, pos),
                                width: a.width,
                            });
                            inputs.len() - 1
                        });
                        Source::Input(i)
                    }
                };
                args.push((src, a.mutated));
            }
            let mut out_slots = SmallVec::new();
            for (o, vt) in node.outputs.iter().enumerate() {
                let value = ValueId::new(n, o as u32);
                out_slots.push(slots.len());
                slots.push(Slot {
                    value,
                    split: vt,
                    escaping: plan.escaping.contains(&value),
                    last_step: k,
                    width: node.width,
                });
            }
            steps.push(Step {
                node: n,
                args,
                out_slots,
                frees: SmallVec::new(),
            });
        }
        for (s, slot) in slots.iter().enumerate() {
            steps[slot.last_step].frees.push(s);
        }
        StageAnalysis {
            steps,
            inputs,
            slots,
        }
    }
}
