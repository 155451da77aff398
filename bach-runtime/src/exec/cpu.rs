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
use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::layout::{host_value, Binding, Bound};
use super::merge::merged;
use super::{call_cpu, share, Materialized};
use crate::analysis::{Source, StageAnalysis};
use crate::error::{Error, Result};
use crate::op::Args;
use crate::plan::{Externals, Input, Plan, Stage, ValueId};
use crate::split::{ErasedAssembler, SplitKind};
use crate::value::{Held, Piece};

/// How an escaping output is merged.
enum Sink {
    /// Not escaping: the piece is dropped after its last reader.
    None,
    /// Written in place (partition split types with an assembler).
    Assemble(OnceLock<Option<Box<dyn ErasedAssembler>>>),
    /// Collected per batch and merged in order.
    Collect,
}

/// Runs the analysed partitioned `stage` in batches of `batch` elements;
/// returns its escaping outputs.
pub(crate) fn run_partitioned(
    plan: &Plan,
    analysis: &StageAnalysis,
    externals: &Externals,
    done: &Materialized,
    batch: usize,
) -> Result<Vec<(ValueId, Held)>> {
    let Binding { inputs, total } = Binding::of(plan, analysis, externals, done, &|_| None)?;
    let slots_of_stage = &analysis.slots;
    let sinks: Vec<Sink> = (slots_of_stage.iter())
        .map(|slot| match (slot.escaping, slot.split.kind) {
            (false, _) => Sink::None,
            (true, SplitKind::Partition) => Sink::Assemble(OnceLock::new()),
            (true, _) => Sink::Collect,
        })
        .collect();

    let batch = batch.max(1);
    let batches = total.div_ceil(batch).max(1);
    // A single batch reads its inputs whole and returns its pieces as the
    // results: no split copies, no assembly (small inputs are dominated by such
    // fixed costs). The split-type contract makes the piece for `0..total` the
    // value itself.
    let single = batches == 1;
    if !single {
        super::host_memory::keep_freed_batches();
    }

    let run_batch = |b: usize| -> Result<Vec<(usize, Piece)>> {
        let range = (b * batch).min(total)..((b + 1) * batch).min(total);
        // This batch's piece of each split input (`None`: read whole).
        let split_pieces: Vec<Option<Piece>> = match single {
            true => Vec::new(),
            false => (inputs.iter().zip(&analysis.inputs))
                .map(|(b, i)| match b {
                    Bound::Split(h) => (i.split.split)(h.get(), range.clone()).map(Some),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?,
        };
        let mut slots: Vec<Option<Piece>> = (0..slots_of_stage.len()).map(|_| None).collect();
        let mut collected = Vec::new();
        for st in &analysis.steps {
            let pn = &plan.nodes[st.node];
            let outputs = {
                // `owned` holds mutated arguments only: most calls need none.
                let any_mutated = st.args.iter().any(|(_, m)| *m);
                let mut args = Args {
                    refs: smallvec::SmallVec::with_capacity(st.args.len()),
                    owned: Vec::with_capacity(if any_mutated { st.args.len() } else { 0 }),
                };
                for (pos, (src, mutated)) in st.args.iter().enumerate() {
                    let r: &(dyn Any + Send + Sync) = match *src {
                        Source::Local(s) => slots[s].as_deref().ok_or_else(|| {
                            Error::internal("a piece computed earlier in the batch")
                        })?,
                        Source::Input(k) => match (&inputs[k], split_pieces.get(k)) {
                            (_, Some(Some(piece))) => &**piece,
                            (Bound::Split(h) | Bound::Whole(h), _) => h.get(),
                            (Bound::OnDevice, _) => return Err(Error::internal(
                                "a host value (device values are downloaded before a CPU stage)",
                            )),
                        },
                    };
                    if *mutated {
                        args.owned.push(Some((pn.args[pos].split.clone)(r)));
                        args.refs.push(&());
                    } else {
                        if any_mutated {
                            args.owned.push(None);
                        }
                        args.refs.push(r);
                    }
                }
                match call_cpu(pn.info, pn.cpu, &mut args) {
                    Ok(outputs) => outputs,
                    // A reduction that fails on zero elements has no identity
                    // (NumPy's "zero-size array to reduction operation").
                    Err(Error::Panic { op, .. })
                        if range.is_empty() && pn.outputs[0].kind == SplitKind::Reduce =>
                    {
                        return Err(Error::EmptyReduction { op })
                    }
                    Err(e) => return Err(e),
                }
            };
            if outputs.len() != st.out_slots.len() {
                return Err(Error::internal("one piece per output of the call"));
            }
            for (piece, &s) in outputs.into_iter().zip(&st.out_slots) {
                let vt = slots_of_stage[s].split;
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
                let Some(piece) = slots[s].take() else {
                    continue;
                };
                match &sinks[s] {
                    Sink::None => {}
                    Sink::Collect => collected.push((s, piece)),
                    Sink::Assemble(_) if single => collected.push((s, piece)),
                    Sink::Assemble(cell) => {
                        let asm = cell
                            .get_or_init(|| (slots_of_stage[s].split.assembler)(total, &*piece));
                        match asm {
                            // SAFETY: batches cover disjoint ranges within 0..total.
                            Some(a) => unsafe {
                                write_piece(&**a, range.clone(), &*piece, pn.info.name)?
                            },
                            None => collected.push((s, piece)),
                        }
                    }
                }
            }
        }
        Ok(collected)
    };

    // One batch runs on the calling thread: handing it to the pool would cost
    // more than small inputs take to compute.
    let per_batch: Vec<Vec<(usize, Piece)>> = if batches == 1 {
        vec![run_batch(0)?]
    } else {
        (0..batches)
            .into_par_iter()
            .map(run_batch)
            .collect::<Result<_>>()?
    };

    // Merge collected pieces per slot in batch (= element) order.
    let mut pieces: Vec<Vec<Piece>> = (0..slots_of_stage.len()).map(|_| Vec::new()).collect();
    for batch_out in per_batch {
        for (s, p) in batch_out {
            pieces[s].push(p);
        }
    }
    let mut results = Vec::with_capacity(slots_of_stage.len());
    for (s, (slot, sink)) in slots_of_stage.iter().zip(sinks).enumerate() {
        let assembler = match sink {
            Sink::None => continue,
            Sink::Assemble(cell) => cell.into_inner().flatten(),
            Sink::Collect => None,
        };
        let op = plan.nodes[slot.value.node].info.name;
        let pieces = std::mem::take(&mut pieces[s]);
        // SAFETY: every batch wrote its range into the assembler; together they tile 0..total.
        let value = unsafe { merged(slot.split, op, assembler, pieces) }?;
        results.push((slot.value, share(value)));
    }
    Ok(results)
}

/// # Safety
/// As [`ErasedAssembler::write`].
unsafe fn write_piece(
    a: &dyn ErasedAssembler,
    range: Range<usize>,
    piece: &dyn Any,
    op: &'static str,
) -> Result<()> {
    let expected = range.len();
    a.write(range, piece).map_err(|found| Error::PieceLength {
        op,
        expected,
        found,
    })
}

/// Runs each call of the stage once on whole values.
pub(crate) fn run_whole(
    plan: &Plan,
    stage: &Stage,
    externals: &Externals,
    done: &Materialized,
) -> Result<Vec<(ValueId, Held)>> {
    let mut local: Materialized = Materialized::default();
    for &n in &stage.nodes {
        let pn = &plan.nodes[n];
        let held: Vec<Held> = pn
            .args
            .iter()
            .map(|a| match a.input {
                Input::Local(v) if local.contains_key(&v) => Ok(local[&v].clone()),
                _ => host_value(externals, done, &a.input),
            })
            .collect::<Result<_>>()?;
        let mut args = Args {
            refs: smallvec::SmallVec::with_capacity(held.len()),
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
        let outputs = call_cpu(pn.info, pn.cpu, &mut args)?;
        for (o, piece) in outputs.into_iter().enumerate() {
            local.insert(ValueId::new(n, o as u32), share(piece));
        }
    }
    Ok(local
        .into_iter()
        .filter(|(k, _)| plan.escaping.contains(k))
        .collect())
}
