//! The annotations: one `#[offload]` function per polars operation the
//! workloads use. Each CPU body is polars' own method (`&a * s`, `a.gt(s)`,
//! `when/then` as `zip_with`, `a.sum()`), so results are polars' bit for bit
//! (sums: up to the order of adding the batches' partial sums).
//!
//! Columns split by rows with [`SeriesSplit`]; scalars are broadcast; sums
//! merge their partials with [`SumSplit`]. The kernels are `numpy.cu`'s where
//! the arithmetic is the same, and `polars.cu`'s where polars differs: its
//! total-order comparisons (NaN above every number) and its arithmetic with
//! a scalar (a division by `s` is a multiplication by `1 / s`).

use polars_core::prelude::Float64Chunked;
use polars_core::prelude::{BooleanChunked, ChunkAgg, ChunkCompareIneq, ChunkZip};

use bach_runtime::{offload, SumSplit};

use super::csv::{CsvColumn, CsvError, CsvSplit};
use super::{SeriesSplit, BACH_KERNELS};

/// The rows of a single-column CSV file, parsed as `f64` (see
/// [`CsvColumn`]); under Bach, each batch parses only its own lines.
#[offload(split(csv = CsvSplit), ret = SeriesSplit)]
pub fn read_column(csv: &CsvColumn) -> Result<Float64Chunked, CsvError> {
    csv.parse()
}

/// `a > s` in polars' total order (NaN is greater than every number and
/// equal to itself): `a.gt(s)`.
#[offload(split = SeriesSplit, gpu = "tot_gt_scalar")]
pub fn gt(a: &Float64Chunked, s: f64) -> BooleanChunked {
    a.gt(s)
}

/// `a < s` in polars' total order: `a.lt(s)`.
#[offload(split = SeriesSplit, gpu = "tot_lt_scalar")]
pub fn lt(a: &Float64Chunked, s: f64) -> BooleanChunked {
    a.lt(s)
}

macro_rules! arithmetic {
    ($($name:ident $scalar:ident $op:tt $kernel:literal $kernel_scalar:literal;)*) => {$(
        #[doc = concat!("`a ", stringify!($op), " b`, element by element (polars' operator).")]
        #[offload(split = SeriesSplit, gpu = $kernel)]
        pub fn $name(a: &Float64Chunked, b: &Float64Chunked) -> Float64Chunked {
            a $op b
        }

        #[doc = concat!("`a ", stringify!($op), " s` for a scalar `s` (polars' operator).")]
        #[offload(split = SeriesSplit, gpu = $kernel_scalar)]
        pub fn $scalar(a: &Float64Chunked, s: f64) -> Float64Chunked {
            a $op s
        }
    )*};
}

arithmetic! {
    add add_scalar + "add" "pl_add_scalar";
    sub sub_scalar - "subtract" "pl_sub_scalar";
    mul mul_scalar * "multiply" "pl_mul_scalar";
    div div_scalar / "divide" "pl_div_scalar";
}

/// `value` where `mask` holds, `a` elsewhere (a null in the mask keeps `a`):
/// pandas' `Series.mask`, polars' `when(mask).then(value).otherwise(a)`. The
/// body is what polars runs for that expression, `zip_with` with the value
/// broadcast (one SIMD select); `a.set(mask, Some(value))` gives the same
/// values through a slower run-by-run copy.
///
/// # Panics
/// When `a` and `mask` differ in length, as polars refuses it (a lazy call
/// reports `Error::LengthMismatch` before anything runs instead).
#[offload(split = SeriesSplit, gpu = "mask")]
pub fn mask(a: &Float64Chunked, mask: &BooleanChunked, value: f64) -> Float64Chunked {
    let value = Float64Chunked::from_vec(a.name().clone(), vec![value]);
    value
        .zip_with(mask, a)
        .unwrap_or_else(|e| panic!("mask: a column and a mask of one length: {e}"))
}

/// `if_true` where `mask` holds, `if_false` elsewhere:
/// `if_true.zip_with(mask, if_false)`.
///
/// # Panics
/// When the lengths differ (as [`mask`](fn@mask)).
#[offload(split = SeriesSplit, gpu = "where")]
pub fn zip_with(
    mask: &BooleanChunked,
    if_true: &Float64Chunked,
    if_false: &Float64Chunked,
) -> Float64Chunked {
    if_true
        .zip_with(mask, if_false)
        .unwrap_or_else(|e| panic!("zip_with: columns and a mask of one length: {e}"))
}

/// The sum of the non-null elements (0 for none): `a.sum()`. Batches'
/// partial sums are added in row order.
#[offload(split = SeriesSplit, ret = SumSplit, gpu = "sum")]
pub fn sum(a: &Float64Chunked) -> f64 {
    a.sum().unwrap_or(0.0)
}
