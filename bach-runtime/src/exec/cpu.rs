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

use super::layout::{external, Source, StageLayout};
use super::{call_cpu, share, Materialized};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::op::Args;
use crate::plan::{Input, Plan, Stage};
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

pub(crate) fn run_partitioned(
    plan: &Plan,
    stage: &Stage,
    done: &Materialized,
    config: &Config,
) -> Result<Vec<((usize, u32), Held)>> {
    let StageLayout {
        steps,
        slot_of,
        slot_split,
        splits,
        wholes,
        total,
        ..
    } = StageLayout::build(plan, stage, done)?;
    let mut sinks: Vec<Sink> = (0..slot_split.len()).map(|_| Sink::None).collect();
    for (&(n, o), &s) in &slot_of {
        if plan.escaping.contains(&(n, o)) {
            sinks[s] = match slot_split[s].kind {
                SplitKind::Partition => Sink::Assemble(OnceLock::new()),
                _ => Sink::Collect,
            };
        }
    }

    let batch = batch_size(plan, stage, config);
    let batches = total.div_ceil(batch).max(1);
    // A single batch reads its inputs whole and returns its pieces as the
    // results: no split copies, no assembly (small inputs are dominated by such
    // fixed costs). The split-type contract makes the piece for `0..total` the
    // value itself.
    let single = batches == 1;

    let run_batch = |b: usize| -> Result<Vec<(usize, Piece)>> {
        let range = (b * batch).min(total)..((b + 1) * batch).min(total);
        let split_pieces: Vec<Piece> = match single {
            true => Vec::new(),
            false => splits
                .iter()
                .map(|(h, vt)| (vt.split)(h.get(), range.clone()))
                .collect::<Result<_>>()?,
        };
        let mut slots: Vec<Option<Piece>> = (0..slot_split.len()).map(|_| None).collect();
        let mut collected = Vec::new();
        for st in &steps {
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
                        Source::Local(s) => slots[s].as_deref().ok_or(Error::TypeMismatch {
                            expected: "a piece computed earlier in the batch",
                        })?,
                        Source::Split(k) if single => splits[k].0.get(),
                        Source::Split(k) => &*split_pieces[k],
                        Source::Whole(k) => wholes[k].get(),
                        Source::Resident(_) => {
                            return Err(Error::TypeMismatch {
                                expected:
                                    "a host value (device values are downloaded before a CPU stage)",
                            })
                        }
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
                match call_cpu(&pn.info, pn.cpu, &mut args) {
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
                let Some(piece) = slots[s].take() else {
                    continue;
                };
                match &sinks[s] {
                    Sink::None => {}
                    Sink::Collect => collected.push((s, piece)),
                    Sink::Assemble(_) if single => collected.push((s, piece)),
                    Sink::Assemble(cell) => {
                        let asm = cell.get_or_init(|| (slot_split[s].assembler)(total, &*piece));
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
                // One piece covering every element is the merged value.
                _ if pieces[s].len() == 1 => pieces[s].pop().expect("one piece"),
                _ => (slot_split[s].merge)(std::mem::take(&mut pieces[s]))?,
            },
            Sink::Collect => {
                (slot_split[s].merge)(std::mem::take(&mut pieces[s])).map_err(|e| match e {
                    Error::EmptyReduction { .. } => Error::EmptyReduction {
                        op: plan.nodes[n].info.name,
                    },
                    e => e,
                })?
            }
        };
        results.push(((n, o), share(merged)));
    }
    Ok(results)
}

/// Elements per batch for a partitioned stage on the CPU.
pub(crate) fn batch_size(_plan: &Plan, _stage: &Stage, config: &Config) -> usize {
    // 256 bytes an element: a few split inputs and live intermediates of 8
    // bytes, with room to spare. 4096 elements for a 1 MiB L2, the best of
    // 1024..65536 on Black-Scholes and Haversine (BENCHMARKS.md).
    config.cpu_batch(256)
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
    done: &Materialized,
) -> Result<Vec<((usize, u32), Held)>> {
    let mut local: Materialized = Materialized::default();
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
                h.or_else(|| external(done, &a.input))
                    .ok_or(Error::TypeMismatch {
                        expected: "an input materialised by an earlier stage",
                    })
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
        let outputs = call_cpu(&pn.info, pn.cpu, &mut args)?;
        for (o, piece) in outputs.into_iter().enumerate() {
            local.insert((n, o as u32), share(piece));
        }
    }
    Ok(local
        .into_iter()
        .filter(|(k, _)| plan.escaping.contains(k))
        .collect())
}
