//! The NumPy-style module, annotated for Bach: the same functions and
//! signatures as [`cpu::numpy`](crate::cpu::numpy), but every call records a
//! node in Bach's task graph and returns a [`Lazy`] handle. Swap
//! `use annotated_libs::cpu::numpy as np;` for `use annotated_libs::numpy as np;`
//! and materialise results with [`bach_runtime::evaluate`].
//!
//! Arguments accept what the CPU function takes (`&Array1<T>`, `T`) and also
//! lazy handles (`&Lazy<Array1<T>>`, `Lazy<T>`), so results of earlier calls
//! flow into later ones without being computed.
//!
//! ```
//! use annotated_libs::numpy as np;
//! use ndarray::array;
//!
//! let x = array![1.0, 4.0, 9.0];
//! let y = np::add_scalar(&np::sqrt(&x), 1.0);
//! let total = np::sum(&y);
//! let (y, total) = bach_runtime::evaluate((y, total)).unwrap();
//! assert_eq!(y, array![2.0, 3.0, 4.0]);
//! assert_eq!(total, 9.0);
//! ```

mod ops;

/// The CUDA source of this module's `gpu` kernels (`kernels/numpy.cu`), found by
/// `#[offload(gpu = "...")]` under this name and compiled for the device at first use.
pub const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
    name: "numpy.cu",
    code: concat!(
        include_str!("../../kernels/common.cuh"),
        include_str!("../../kernels/numpy.cu")
    ),
};

use bach_runtime::{IntoArg, Lazy, Reducible, SplitKind, SplitType};
use ndarray::{Array1, Array2};

pub use crate::cpu::numpy::{Moments, MomentsAxis0};
pub use ops::*;

/// The element types of the annotated module: the CPU library's
/// [`Float`](crate::cpu::numpy::Float) types that Bach's reduction split types
/// can merge (`f32`, `f64`).
pub trait Float: crate::cpu::numpy::Float + Reducible {}
impl<T: crate::cpu::numpy::Float + Reducible> Float for T {}

/// A lazy 1-D array of `T` reading data that lives for `'a`. The CPU module
/// names the eager array the same way, so one workload source compiles
/// against both.
pub type Array<'a, T> = Lazy<'a, Array1<T>>;

/// A lazy 1-D boolean mask (see [`Array`]).
pub type Mask<'a> = Lazy<'a, Array1<bool>>;

/// The return split type of [`moments`](fn@moments) and [`moments_axis0`](fn@moments_axis0): per-batch
/// states merged with the parallel (Chan et al.) formula.
#[derive(Debug, Clone, Copy, Default)]
pub struct MomentsSplit;

impl<T: Float> SplitType<Moments<T>> for MomentsSplit {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &Moments<T>) -> Option<usize> {
        None
    }
    fn split(value: &Moments<T>, _: std::ops::Range<usize>) -> Moments<T> {
        *value
    }
    fn merge(pieces: Vec<Moments<T>>) -> bach_runtime::Result<Moments<T>> {
        Ok(pieces.into_iter().fold(Moments::empty(), Moments::merge))
    }
}

impl<T: Float> SplitType<MomentsAxis0<T>> for MomentsSplit {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &MomentsAxis0<T>) -> Option<usize> {
        None
    }
    fn split(value: &MomentsAxis0<T>, _: std::ops::Range<usize>) -> MomentsAxis0<T> {
        value.clone()
    }
    fn merge(pieces: Vec<MomentsAxis0<T>>) -> bach_runtime::Result<MomentsAxis0<T>> {
        let mut it = pieces.into_iter();
        let first = it.next().ok_or(bach_runtime::Error::EmptyReduction {
            op: "moments_axis0",
        })?;
        Ok(it.fold(first, MomentsAxis0::merge))
    }
}

/// Mean of the elements (NaN for an empty array). Merged across batches
/// through [`Moments`], so it needs one pass over the data.
pub fn mean<'a, T: Float>(a: impl IntoArg<'a, Array1<T>>) -> Lazy<'a, T> {
    moments_mean(moments(a))
}

/// Population standard deviation (NaN for an empty array), through [`Moments`].
pub fn std<'a, T: Float>(a: impl IntoArg<'a, Array1<T>>) -> Lazy<'a, T> {
    moments_std(moments(a))
}

/// Column means of a 2-D array (`a.mean(axis=0)`).
pub fn mean_axis0<'a, T: Float>(a: impl IntoArg<'a, Array2<T>>) -> Lazy<'a, Array1<T>> {
    moments_axis0_mean(moments_axis0(a))
}

/// Column population standard deviations of a 2-D array (`a.std(axis=0)`).
pub fn std_axis0<'a, T: Float>(a: impl IntoArg<'a, Array2<T>>) -> Lazy<'a, Array1<T>> {
    moments_axis0_std(moments_axis0(a))
}
