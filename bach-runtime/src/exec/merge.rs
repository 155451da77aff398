//! The tail both executors share: an escaping output of a partitioned stage,
//! whole again after its batches.

use crate::error::{Error, Result};
use crate::split::{ErasedAssembler, SplitKind, SplitVTable};
use crate::value::Piece;

/// The whole value of an escaping output split by `split` and produced by
/// `op`: the assembler its batches wrote into in place, or else the pieces
/// (per-batch pieces or reduction partials, in element order) merged by the
/// split type.
///
/// # Safety
/// When `assembler` is given, the batches wrote disjoint ranges that tile its
/// whole length (as [`ErasedAssembler::finish`] requires).
pub(crate) unsafe fn merged(
    split: &SplitVTable,
    op: &'static str,
    assembler: Option<Box<dyn ErasedAssembler>>,
    mut pieces: Vec<Piece>,
) -> Result<Piece> {
    if let Some(a) = assembler {
        // SAFETY: by the caller's guarantee.
        return Ok(unsafe { a.finish() });
    }
    // One piece covering every element is the merged value.
    if split.kind == SplitKind::Partition && pieces.len() == 1 {
        return Ok(pieces.pop().expect("one piece"));
    }
    // A reduction without identity names the call that reduced nothing.
    (split.merge)(pieces).map_err(|e| match e {
        Error::EmptyReduction { .. } => Error::EmptyReduction { op },
        e => e,
    })
}
