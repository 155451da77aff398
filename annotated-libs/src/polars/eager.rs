//! The lazy front end's names over plain polars, so one source compiles both
//! ways (`annotated_libs::workloads::polars_cpu` / `polars_bach`).
//!
//! [`LazySeries<'a>`] is `Float64Chunked` here (the lifetime is unused), and
//! [`SeriesExt`] adds what polars names differently: `mask` (the values of
//! polars' `set(mask, Some(value))`) and `total` (polars' `sum`, which is an
//! `Option`). Comparisons and operators are polars' own.

use polars_core::prelude::{BooleanChunked, Float64Chunked};

pub use polars_core::prelude::ChunkCompareIneq;

/// polars' `Float64Chunked`, named like the lazy module's column.
pub type LazySeries<'a> = Float64Chunked;

/// polars' `BooleanChunked`, named like the lazy module's mask.
pub type LazyMask<'a> = BooleanChunked;

/// A sum: a number here, a lazy number in the lazy module.
pub type LazySum<'a> = f64;

/// The lazy column's methods that plain polars names differently.
pub trait SeriesExt {
    /// `value` where `cond` holds, `self` elsewhere: the CPU body of
    /// [`super::ops::mask`](fn@super::ops::mask) (polars' `when(cond).then(value).otherwise(self)`).
    fn mask(&self, cond: &BooleanChunked, value: f64) -> Float64Chunked;
    /// The sum of the elements, 0 for none: the CPU body of [`super::ops::sum`](fn@super::ops::sum).
    fn total(&self) -> f64;
}

impl SeriesExt for Float64Chunked {
    fn mask(&self, cond: &BooleanChunked, value: f64) -> Float64Chunked {
        super::ops::mask::cpu(self, cond, value)
    }
    fn total(&self) -> f64 {
        super::ops::sum::cpu(self)
    }
}
