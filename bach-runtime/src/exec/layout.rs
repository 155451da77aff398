//! The layout of a partitioned stage, shared by the CPU and device executors:
//! where each argument of each call comes from per batch, which slots hold
//! per-batch pieces, when each slot is last read, and the stage's element count.

use crate::fasthash::FastMap;
use smallvec::SmallVec;

use super::Materialized;
use crate::error::{Error, Result};
use crate::plan::{Input, Plan, Stage};
use crate::split::SplitVTable;
use crate::value::Held;

/// Where one argument of one call in a partitioned stage comes from, per batch.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    /// A piece computed earlier in this batch (slot index).
    Local(usize),
    /// A piece of an external value, split once per batch (index into `splits`).
    Split(usize),
    /// A whole external value (broadcast).
    Whole(usize),
    /// A value an earlier device stage left on the device (index into
    /// `residents`); only device stages read these.
    Resident(usize),
}

pub(crate) struct Step {
    pub(crate) node: usize,
    pub(crate) args: SmallVec<[(Source, bool); 4]>,
    /// Output slots of this call.
    pub(crate) out_slots: SmallVec<[usize; 2]>,
    /// Slots whose last reader is this call: freed after it runs.
    pub(crate) frees: SmallVec<[usize; 4]>,
}

/// Everything an executor needs to run a partitioned stage batch by batch.
pub(crate) struct StageLayout {
    pub(crate) steps: Vec<Step>,
    /// The slot of each (plan node, output) produced in the stage.
    pub(crate) slot_of: FastMap<(usize, u32), usize>,
    /// The split type of each slot.
    pub(crate) slot_split: Vec<&'static SplitVTable>,
    /// External values split once per batch.
    pub(crate) splits: Vec<(Held, &'static SplitVTable)>,
    /// External values passed whole.
    pub(crate) wholes: Vec<Held>,
    /// Values on the device, split once per batch: (plan node, output) and split type.
    pub(crate) residents: Vec<((usize, u32), &'static SplitVTable)>,
    /// Elements the stage splits.
    pub(crate) total: usize,
}

pub(crate) fn external(done: &Materialized, input: &Input) -> Option<Held> {
    match input {
        Input::External(h) => Some(h.clone()),
        Input::Local(p, o) => done.get(&(*p, *o)).cloned(),
    }
}

impl StageLayout {
    /// The layout of `stage` reading host values from `done`.
    pub(crate) fn build(plan: &Plan, stage: &Stage, done: &Materialized) -> Result<StageLayout> {
        Self::build_with(plan, stage, done, &|_| None)
    }

    /// The layout of `stage` reading host values from `done` and device values
    /// through `resident`: the element count of an output kept on the device.
    pub(crate) fn build_with(
        plan: &Plan,
        stage: &Stage,
        done: &Materialized,
        resident: &dyn Fn((usize, u32)) -> Option<usize>,
    ) -> Result<StageLayout> {
        let in_stage: FastMap<usize, usize> = stage
            .nodes
            .iter()
            .enumerate()
            .map(|(k, &n)| (n, k))
            .collect();
        let mut slot_of: FastMap<(usize, u32), usize> =
            FastMap::with_capacity_and_hasher(stage.nodes.len() + 1, Default::default());
        let mut slot_split: Vec<&'static SplitVTable> = Vec::new();
        let mut splits: Vec<(Held, &'static SplitVTable)> = Vec::new();
        let mut wholes: Vec<Held> = Vec::new();
        let mut residents: Vec<((usize, u32), &'static SplitVTable)> = Vec::new();
        let mut count: Option<(usize, &'static str, usize)> = None;
        let mut steps: Vec<Step> = Vec::new();

        for &n in &stage.nodes {
            let pn = &plan.nodes[n];
            let mut args = SmallVec::new();
            for (pos, a) in pn.args.iter().enumerate() {
                let local = match a.input {
                    Input::Local(p, o) if in_stage.contains_key(&p) => Some(slot_of[&(p, o)]),
                    _ => None,
                };
                let on_device = match a.input {
                    Input::Local(p, o) if local.is_none() => resident((p, o)).map(|c| (p, o, c)),
                    _ => None,
                };
                let mut check_count = |c: usize| match count {
                    Some((expected, _, _)) if expected != c => Err(Error::LengthMismatch {
                        op: pn.info.name,
                        arg: pos,
                        expected,
                        found: c,
                    }),
                    None => {
                        count = Some((c, pn.info.name, pos));
                        Ok(())
                    }
                    _ => Ok(()),
                };
                let src = match (local, on_device) {
                    (Some(slot), _) => Source::Local(slot),
                    (None, Some((p, o, c))) => {
                        check_count(c)?;
                        let k = residents
                            .iter()
                            .position(|(key, _)| *key == (p, o))
                            .unwrap_or_else(|| {
                                residents.push(((p, o), a.split));
                                residents.len() - 1
                            });
                        Source::Resident(k)
                    }
                    (None, None) => {
                        let held = external(done, &a.input).ok_or(Error::TypeMismatch {
                            expected: "an input materialised by an earlier stage",
                        })?;
                        match a.split.elements_of(held.get()) {
                            Some(c) => {
                                check_count(c)?;
                                // One split per batch for each distinct (value, split type).
                                let same = |(h, s): &(Held, &'static SplitVTable)| {
                                    std::ptr::addr_eq(h.get(), held.get())
                                        && s.split_id == a.split.split_id
                                        && s.value_id == a.split.value_id
                                };
                                let k = splits.iter().position(same).unwrap_or_else(|| {
                                    splits.push((held.clone(), a.split));
                                    splits.len() - 1
                                });
                                Source::Split(k)
                            }
                            None => {
                                wholes.push(held);
                                Source::Whole(wholes.len() - 1)
                            }
                        }
                    }
                };
                args.push((src, a.mutated));
            }
            let mut out_slots = SmallVec::new();
            for (o, vt) in pn.outputs.iter().enumerate() {
                slot_of.insert((n, o as u32), slot_split.len());
                out_slots.push(slot_split.len());
                slot_split.push(*vt);
            }
            steps.push(Step {
                node: n,
                args,
                out_slots,
                frees: SmallVec::new(),
            });
        }

        // Free each slot after its last reader in the stage (or right after it is
        // produced, when nothing in the stage reads it).
        let mut last_use: Vec<usize> = (0..slot_split.len()).map(|_| 0).collect();
        for (k, st) in steps.iter().enumerate() {
            for &s in &st.out_slots {
                last_use[s] = k;
            }
            for (src, _) in &st.args {
                if let Source::Local(s) = src {
                    last_use[*s] = k;
                }
            }
        }
        for (s, &k) in last_use.iter().enumerate() {
            steps[k].frees.push(s);
        }
        Ok(StageLayout {
            steps,
            slot_of,
            slot_split,
            splits,
            wholes,
            residents,
            total: count.map_or(0, |c| c.0),
        })
    }
}
