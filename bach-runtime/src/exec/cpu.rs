//! The CPU executor.
//!
//! A partitioned stage's element range is cut into cache-sized batches that
//! rayon workers take in parallel; within a worker, one batch flows through all
//! of the stage's calls before the next batch starts, so each batch stays in
//! cache from the first call to the last (the split-annotations idea).
//! Intermediates that do not escape the stage exist only as per-batch pieces and
//! are freed after their last reader. Escaping partition outputs are written in
//! place into their preallocated merged value; reduce outputs are merged from
//! per-batch partials in element order, so results do not depend on scheduling.

use std::any::Any;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::{call_cpu, share, Materialized};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::op::Args;
use crate::plan::{Input, Plan, Stage};
use crate::split::{ErasedAssembler, SplitKind, SplitVTable};
use crate::value::{Held, Piece};

/// Where one argument of one call in a partitioned stage comes from, per batch.
#[derive(Clone, Copy)]
enum Source {
    /// A piece computed earlier in this batch (slot index).
    Local(usize),
    /// A piece of an external value, split once per batch (index into `splits`).
    Split(usize),
    /// A whole external value (broadcast).
    Whole(usize),
}

struct Step {
    node: usize,
    args: Vec<(Source, bool)>,
    /// Output slots of this call.
    out_slots: Vec<usize>,
    /// Slots whose last reader is this call: freed after it runs.
    frees: Vec<usize>,
}

/// How an escaping output is merged.
enum Sink {
    /// Not escaping: the piece is dropped after its last reader.
    None,
    /// Written in place (partition split types with an assembler).
    Assemble(OnceLock<Option<Box<dyn ErasedAssembler>>>),
    /// Collected per batch and merged in order.
    Collect,
}

fn external(done: &Materialized, input: &Input) -> Option<Held> {
    match input {
        Input::External(h) => Some(h.clone()),
        Input::Local(p, o) => done.get(&(*p, *o)).cloned(),
    }
}

pub(crate) fn run_partitioned(
    plan: &Plan,
    stage: &Stage,
    done: &Materialized,
    config: &Config,
) -> Result<Vec<((usize, u32), Held)>> {
    let in_stage: HashMap<usize, usize> = stage.nodes.iter().enumerate().map(|(k, &n)| (n, k)).collect();
    let mut slot_of: HashMap<(usize, u32), usize> = HashMap::new();
    let mut slot_split: Vec<SplitVTable> = Vec::new();
    let mut splits: Vec<(Held, SplitVTable)> = Vec::new();
    let mut wholes: Vec<Held> = Vec::new();
    let mut count: Option<(usize, &'static str, usize)> = None;
    let mut steps: Vec<Step> = Vec::new();

    for &n in &stage.nodes {
        let pn = &plan.nodes[n];
        let mut args = Vec::with_capacity(pn.args.len());
        for (pos, a) in pn.args.iter().enumerate() {
            let local = match a.input {
                Input::Local(p, o) if in_stage.contains_key(&p) => Some(slot_of[&(p, o)]),
                _ => None,
            };
            let src = match local {
                Some(slot) => Source::Local(slot),
                None => {
                    let held = external(done, &a.input).ok_or(Error::TypeMismatch {
                        expected: "an input materialised by an earlier stage",
                    })?;
                    match a.split.elements_of(held.get()) {
                        Some(c) => {
                            match count {
                                Some((expected, _, _)) if expected != c => {
                                    return Err(Error::LengthMismatch {
                                        op: pn.info.name,
                                        arg: pos,
                                        expected,
                                        found: c,
                                    })
                                }
                                None => count = Some((c, pn.info.name, pos)),
                                _ => {}
                            }
                            // One split per batch for each distinct (value, split type).
                            let same = |(h, s): &(Held, SplitVTable)| {
                                std::ptr::addr_eq(h.get(), held.get()) && s.split_id == a.split.split_id
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
        let mut out_slots = Vec::with_capacity(pn.outputs.len());
        for (o, vt) in pn.outputs.iter().enumerate() {
            slot_of.insert((n, o as u32), slot_split.len());
            out_slots.push(slot_split.len());
            slot_split.push(*vt);
        }
        steps.push(Step {
            node: n,
            args,
            out_slots,
            frees: Vec::new(),
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
    let mut sinks: Vec<Sink> = (0..slot_split.len()).map(|_| Sink::None).collect();
    for (&(n, o), &s) in &slot_of {
        if plan.escaping.contains_key(&(n, o)) {
            sinks[s] = match slot_split[s].kind {
                SplitKind::Partition => Sink::Assemble(OnceLock::new()),
                _ => Sink::Collect,
            };
        }
    }
    for (s, &k) in last_use.iter().enumerate() {
        steps[k].frees.push(s);
    }

    let total = count.map_or(0, |c| c.0);
    let batch = batch_size(plan, stage, config);
    let batches = total.div_ceil(batch).max(1);

    let run_batch = |b: usize| -> Result<Vec<(usize, Piece)>> {
        let range = (b * batch).min(total)..((b + 1) * batch).min(total);
        let split_pieces: Vec<Piece> = splits
            .iter()
            .map(|(h, vt)| (vt.split)(h.get(), range.clone()))
            .collect();
        let mut slots: Vec<Option<Piece>> = (0..slot_split.len()).map(|_| None).collect();
        let mut collected = Vec::new();
        for st in &steps {
            let pn = &plan.nodes[st.node];
            let outputs = {
                let mut args = Args {
                    refs: Vec::with_capacity(st.args.len()),
                    owned: Vec::with_capacity(st.args.len()),
                };
                for (pos, (src, mutated)) in st.args.iter().enumerate() {
                    let r: &(dyn Any + Send + Sync) = match *src {
                        Source::Local(s) => slots[s].as_deref().ok_or(Error::TypeMismatch {
                            expected: "a piece computed earlier in the batch",
                        })?,
                        Source::Split(k) => &*split_pieces[k],
                        Source::Whole(k) => wholes[k].get(),
                    };
                    if *mutated {
                        args.owned.push(Some((pn.args[pos].split.clone)(r)));
                        args.refs.push(&());
                    } else {
                        args.owned.push(None);
                        args.refs.push(r);
                    }
                }
                match call_cpu(&pn.info, pn.cpu, &mut args) {
                    Ok(outputs) => outputs,
                    // A reduction that fails on zero elements has no identity
                    // (NumPy's "zero-size array to reduction operation").
                    Err(Error::Panic { op, .. }) if range.is_empty() && pn.outputs[0].kind == SplitKind::Reduce => {
                        return Err(Error::EmptyReduction { op })
                    }
                    Err(e) => return Err(e),
                }
            };
            if outputs.len() != st.out_slots.len() {
                return Err(Error::TypeMismatch {
                    expected: "one piece per output of the call",
                });
            }
            for (piece, &s) in outputs.into_iter().zip(&st.out_slots) {
                let vt = &slot_split[s];
                if vt.kind == SplitKind::Partition {
                    if let Some(found) = (vt.elements)(&*piece) {
                        if found != range.len() {
                            return Err(Error::PieceLength {
                                op: pn.info.name,
                                expected: range.len(),
                                found,
                            });
                        }
                    }
                }
                slots[s] = Some(piece);
            }
            for &s in &st.frees {
                let Some(piece) = slots[s].take() else { continue };
                match &sinks[s] {
                    Sink::None => {}
                    Sink::Collect => collected.push((s, piece)),
                    Sink::Assemble(cell) => {
                        let asm = cell.get_or_init(|| (slot_split[s].assembler)(total, &*piece));
                        match asm {
                            // SAFETY: batches cover disjoint ranges within 0..total.
                            Some(a) => unsafe { write_piece(&**a, range.clone(), &*piece, pn.info.name)? },
                            None => collected.push((s, piece)),
                        }
                    }
                }
            }
        }
        Ok(collected)
    };

    let per_batch: Vec<Vec<(usize, Piece)>> = (0..batches).into_par_iter().map(run_batch).collect::<Result<_>>()?;

    // Merge collected pieces per slot in batch (= element) order.
    let mut pieces: Vec<Vec<Piece>> = (0..slot_split.len()).map(|_| Vec::new()).collect();
    for batch_out in per_batch {
        for (s, p) in batch_out {
            pieces[s].push(p);
        }
    }
    let mut results = Vec::new();
    for (&(n, o), &s) in &slot_of {
        let merged = match std::mem::replace(&mut sinks[s], Sink::None) {
            Sink::None => continue,
            Sink::Assemble(cell) => match cell.into_inner() {
                // SAFETY: every batch wrote its range; together they tile 0..total.
                Some(Some(a)) => unsafe { a.finish() },
                _ => (slot_split[s].merge)(std::mem::take(&mut pieces[s]))?,
            },
            Sink::Collect => (slot_split[s].merge)(std::mem::take(&mut pieces[s])).map_err(|e| match e {
                Error::EmptyReduction { .. } => Error::EmptyReduction {
                    op: plan.nodes[n].info.name,
                },
                e => e,
            })?,
        };
        results.push(((n, o), share(merged)));
    }
    Ok(results)
}

/// Elements per batch for a partitioned stage: what fits the cache budget
/// with every split input and a few live intermediates, at 8 bytes an element.
pub(crate) fn batch_size(plan: &Plan, stage: &Stage, config: &Config) -> usize {
    let inputs: usize = stage
        .nodes
        .iter()
        .map(|&n| plan.nodes[n].args.iter().filter(|a| a.split.kind == SplitKind::Partition).count())
        .sum::<usize>()
        .min(16);
    config.cpu_batch(8 * (inputs + 4))
}

/// # Safety
/// As [`ErasedAssembler::write`].
unsafe fn write_piece(a: &dyn ErasedAssembler, range: Range<usize>, piece: &dyn Any, op: &'static str) -> Result<()> {
    let expected = range.len();
    a.write(range, piece)
        .map_err(|found| Error::PieceLength { op, expected, found })
}

/// Runs each call of the stage once on whole values.
pub(crate) fn run_whole(plan: &Plan, stage: &Stage, done: &Materialized) -> Result<Vec<((usize, u32), Held)>> {
    let mut local: Materialized = HashMap::new();
    for &n in &stage.nodes {
        let pn = &plan.nodes[n];
        let held: Vec<Held> = pn
            .args
            .iter()
            .map(|a| {
                let h = match a.input {
                    Input::Local(p, o) => local.get(&(p, o)).cloned(),
                    _ => None,
                };
                h.or_else(|| external(done, &a.input)).ok_or(Error::TypeMismatch {
                    expected: "an input materialised by an earlier stage",
                })
            })
            .collect::<Result<_>>()?;
        let mut args = Args {
            refs: Vec::with_capacity(held.len()),
            owned: Vec::with_capacity(held.len()),
        };
        for (a, h) in pn.args.iter().zip(&held) {
            if a.mutated {
                args.owned.push(Some((a.split.clone)(h.get())));
                args.refs.push(&());
            } else {
                args.owned.push(None);
                args.refs.push(h.get());
            }
        }
        let outputs = call_cpu(&pn.info, pn.cpu, &mut args)?;
        for (o, piece) in outputs.into_iter().enumerate() {
            local.insert((n, o as u32), share(piece));
        }
    }
    Ok(local.into_iter().filter(|(k, _)| plan.escaping.contains_key(k)).collect())
}
