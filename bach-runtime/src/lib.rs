//! Bach: offload annotations for Rust.
//!
//! Annotate ordinary CPU functions over ndarray with [`offload`]; each call of
//! an annotated function then records a node in a lazy task graph instead of
//! running. [`evaluate`] plans the graph into stages, splits data into
//! cache-sized batches with [split types](SplitType), runs the stages in
//! parallel, and merges the results.
//!
//! ```
//! use bach_runtime::{evaluate, offload, NdArraySplit};
//! use ndarray::{array, Array1};
//!
//! /// Adds two arrays.
//! #[offload(split = NdArraySplit)]
//! pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
//!     a + b
//! }
//!
//! fn main() {
//!     let (x, y) = (array![1.0, 2.0], array![3.0, 4.0]);
//!     let sum = add(&x, &y); // recorded, not run
//!     let twice = add(&sum, &sum); // reads the lazy result
//!     assert_eq!(evaluate(twice).unwrap(), array![8.0, 12.0]);
//!     assert_eq!(add::cpu(&x, &y), array![4.0, 6.0]); // the eager CPU function
//! }
//! ```
//!
//! An annotated function may return `Result<T, E>`: its `Err` fails the
//! evaluation with [`Error::Call`], whose source is the function's own error.
//! Methods of types one does not own are annotated as free functions that take
//! the receiver first (`wraps = Model::transform`). The [`offload`]
//! documentation shows both.
//!
//! Settings (environment, or [`Config`] in code): `BACH_BATCH_SIZE`,
//! `BACH_THREADS`, `BACH_CACHE_BYTES`.
#![deny(missing_docs)]

extern crate self as bach_runtime;

mod analysis;
mod cache;
mod calibrate;
mod config;
mod cost;
mod device;
mod disk_cache;
mod error;
mod eval;
mod exec;
mod explain;
mod fasthash;
mod footprint;
mod graph;
mod op;
mod plan;
mod record;
mod report;
mod schedule;
mod split;
mod value;

pub use bach_macros::offload;
pub use calibrate::recalibrate;
pub use config::{parse_bytes, Config, DevicePolicy};
pub use cost::StageCost;
pub use device::codec::{
    register_device_codec, register_device_value, register_upload_codec, DType, DeviceCodec,
    DeviceValue, UploadCodec,
};
pub use device::cuda::compile_to_ptx;
pub use device::cuda::discovery::{
    gpu_status, ComputeCapability, DeviceInfo, GpuStatus, GpuUnavailable, NvrtcVersion,
};
pub use device::{
    CudaDevice, Device, DeviceBuffer, DeviceCall, DeviceCosts, DeviceFn, DeviceInput, DeviceOutput,
    Event, KernelArg, KernelSource, Launch, LaunchShape, PendingDownload, Queue, SimulatedDevice,
    SimulatedDeviceConfig, TransferStats,
};
pub use device::{Gemm, MatrixRef, SymmetricEigen};
pub use error::{CallSource, Error, Result};
pub use eval::Evaluate;
pub use explain::{Explain, StageInfo};
pub use graph::{evaluate, explain, Graph};
pub use plan::StageKind;
pub use record::{Arg, IntoArg, Lazy};
pub use schedule::Placement;
pub use split::{
    Assembler, Broadcast, CountSplit, Inherit, MaxSplit, MinSplit, NdArraySplit, Reducible,
    SizeSplit, SplitKind, SplitType, SplitVTable, SumSplit,
};
pub use value::Value;

/// Used by the code `#[offload]` generates. Not part of the public API: it may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::call_result;
    pub use crate::eval::{Target, Values};
    pub use crate::op::{piece, piece_box, pieces, Args, CpuFn, OpInfo, Pieces};
    pub use crate::record::{CallBuilder, Recorded};
    pub use crate::value::Piece;
}
