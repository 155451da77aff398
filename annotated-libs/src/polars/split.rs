//! [`SeriesSplit`]: polars columns cut into row ranges without copying and
//! merged by appending.

use std::ops::Range;

use polars_core::prelude::{BooleanChunked, DataType, Float64Chunked, NewChunkedArray, Series};

use bach_runtime::{Error, Result, SplitKind, SplitType};

/// Splits a polars column (`Float64Chunked`, `BooleanChunked`, `Series`) by
/// rows. A piece is a zero-copy slice (it shares the column's buffers); the
/// pieces of a result are appended (their buffers become the result's
/// chunks, nothing is copied).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesSplit;

/// The empty column of a merge with no pieces (a zero-row result).
trait EmptyColumn {
    fn empty() -> Self;
}

impl EmptyColumn for Float64Chunked {
    fn empty() -> Self {
        Float64Chunked::from_vec("".into(), Vec::new())
    }
}

impl EmptyColumn for BooleanChunked {
    fn empty() -> Self {
        BooleanChunked::from_slice("".into(), &[])
    }
}

macro_rules! chunked_split {
    ($($t:ty),*) => {$(
        impl SplitType<$t> for SeriesSplit {
            const KIND: SplitKind = SplitKind::Partition;
            fn elements(value: &$t) -> Option<usize> {
                Some(value.len())
            }
            fn split(value: &$t, range: Range<usize>) -> $t {
                value.slice(range.start as i64, range.len())
            }
            fn merge(pieces: Vec<$t>) -> Result<$t> {
                let mut pieces = pieces.into_iter();
                let Some(mut merged) = pieces.next() else {
                    return Ok(<$t>::empty());
                };
                for piece in pieces {
                    merged
                        .append_owned(piece)
                        .map_err(|e| Error::Internal(format!("pieces of one column type: {e}")))?;
                }
                Ok(merged)
            }
        }
    )*};
}
chunked_split!(Float64Chunked, BooleanChunked);

impl SplitType<Series> for SeriesSplit {
    const KIND: SplitKind = SplitKind::Partition;
    fn elements(value: &Series) -> Option<usize> {
        Some(value.len())
    }
    fn split(value: &Series, range: Range<usize>) -> Series {
        value.slice(range.start as i64, range.len())
    }
    fn merge(pieces: Vec<Series>) -> Result<Series> {
        let mut pieces = pieces.into_iter();
        let Some(mut merged) = pieces.next() else {
            return Ok(Series::new_empty("".into(), &DataType::Null));
        };
        for piece in pieces {
            merged
                .append_owned(piece)
                .map_err(|e| Error::Internal(format!("pieces of one series type: {e}")))?;
        }
        Ok(merged)
    }
}
