//! polars, annotated: its eager column API (`Float64Chunked`, `BooleanChunked`)
//! made lazy, batched and offloadable, without changing polars.
//!
//! - [`ops`]: one `#[offload]` function per operation (comparisons,
//!   arithmetic with scalars and columns, masking with `set`/`zip_with`,
//!   `sum`), each wrapping polars' own method, and [`read_column`](fn@read_column), which
//!   parses a CSV column batch by batch inside the plan ([`csv`]).
//! - [`LazySeries`] / [`LazyMask`]: method and operator syntax over the
//!   stubs (`tp.mask(&tp.gt(500000.0), 0.0)`, `&(ap * 2.0) + &big`), the names
//!   polars uses; [`eager`] gives plain polars columns the names polars lacks
//!   (`mask`, a `sum` that is a number), so one source compiles both ways.
//! - [`SeriesSplit`]: columns split by rows with zero-copy slices and merged
//!   by appending chunks; scalars broadcast; sums merge partial sums.
//!
//! On a device, columns move as flat arrays through codecs registered by
//! [`register_device_codecs`] (the front end registers them). They carry
//! values only: a column with nulls must stay on the CPU, so keep
//! `BACH_DEVICE` off for such data (columns read from CSV have no nulls).

pub mod csv;
pub mod eager;
mod lazy;
pub mod ops;
mod split;

use std::borrow::Cow;

use polars_core::prelude::{BooleanChunked, Float64Chunked, NewChunkedArray};

use bach_runtime::{register_device_codec, DType, DeviceCodec, UploadCodec};

pub use csv::{CsvColumn, CsvError, CsvOptions, CsvSplit};
pub use lazy::{LazyMask, LazySeries, LazySum};
pub use ops::{read_column, sum};
pub use polars_core;
pub use split::SeriesSplit;

/// The CUDA source of the module's kernels: numpy.cu's column arithmetic,
/// masks and sums, and polars.cu's total-order comparisons and scalar
/// arithmetic (as polars computes it).
pub const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "polars.cu",
    code: concat!(
        include_str!("../../kernels/common.cuh"),
        include_str!("../../kernels/numpy.cu"),
        include_str!("../../kernels/polars.cu")
    ),
};

/// The device codecs of polars columns (a marker: the codec traits are
/// bach-runtime's and the columns polars', so neither can implement the other).
pub struct PolarsCodec;

impl UploadCodec<Float64Chunked> for PolarsCodec {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(value: &Float64Chunked) -> Cow<'_, [u8]> {
        let bytes = |s: &[f64]| -> Vec<u8> { s.iter().flat_map(|x| x.to_ne_bytes()).collect() };
        match value.cont_slice() {
            // SAFETY: f64 has no padding and every byte of it is initialised.
            Ok(s) => Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s))
            }),
            // Several chunks: their values in order (null slots carry whatever
            // value they hold; see the module docs).
            Err(_) => Cow::Owned(
                value
                    .downcast_iter()
                    .flat_map(|arr| bytes(arr.values()))
                    .collect(),
            ),
        }
    }
}

impl DeviceCodec<Float64Chunked> for PolarsCodec {
    fn from_device_bytes(bytes: &[u8]) -> Float64Chunked {
        let values = bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Float64Chunked::from_vec("".into(), values)
    }
}

impl UploadCodec<BooleanChunked> for PolarsCodec {
    const DTYPE: DType = DType::Bool;
    fn to_device_bytes(value: &BooleanChunked) -> Cow<'_, [u8]> {
        // polars packs booleans in bits; kernels read one byte per element.
        Cow::Owned(
            value
                .downcast_iter()
                .flat_map(|arr| arr.values_iter().map(u8::from))
                .collect(),
        )
    }
}

impl DeviceCodec<BooleanChunked> for PolarsCodec {
    fn from_device_bytes(bytes: &[u8]) -> BooleanChunked {
        BooleanChunked::from_iter_values("".into(), bytes.iter().map(|&b| b != 0))
    }
}

/// Lets polars columns (`Float64Chunked`, `BooleanChunked`) move to devices.
/// Idempotent; [`LazySeries`] calls it, callers of the bare stubs in [`ops`]
/// call it once before evaluating on a device.
pub fn register_device_codecs() {
    register_device_codec::<PolarsCodec, Float64Chunked>();
    register_device_codec::<PolarsCodec, BooleanChunked>();
}
