//! The annotations: one `#[offload]` declaration per function of
//! [`cpu::numpy`](crate::cpu::numpy), each wrapping it unchanged (`wraps`).
//! Written out by hand in the same form an annotator would; the GPU kernel
//! named by `gpu` lives in `annotated-libs/kernels/numpy.cu` as `{gpu}_{dtype}`.

use bach_runtime::{offload, Broadcast, CountSplit, MaxSplit, MinSplit, NdArraySplit, SumSplit};
use ndarray::{Array1, Array2};

use super::{Float, MomentsSplit, BACH_KERNELS};
use crate::cpu::numpy as cpu;
use crate::cpu::numpy::{Moments, MomentsAxis0};

/// Elementwise `a + b` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "add", wraps = cpu::add)]
pub fn add<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `a - b` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "subtract", wraps = cpu::subtract)]
pub fn subtract<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `a * b` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "multiply", wraps = cpu::multiply)]
pub fn multiply<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `a / b` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "divide", wraps = cpu::divide)]
pub fn divide<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `a ** b` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "power", wraps = cpu::power)]
pub fn power<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `NaN-propagating elementwise minimum` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "minimum", wraps = cpu::minimum)]
pub fn minimum<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `NaN-propagating elementwise maximum` of two arrays of equal length.
#[offload(split = NdArraySplit, gpu = "maximum", wraps = cpu::maximum)]
pub fn maximum<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;

/// Elementwise `add` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "add_scalar", wraps = cpu::add_scalar)]
pub fn add_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `subtract` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "subtract_scalar", wraps = cpu::subtract_scalar)]
pub fn subtract_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `multiply` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "multiply_scalar", wraps = cpu::multiply_scalar)]
pub fn multiply_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `divide` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "divide_scalar", wraps = cpu::divide_scalar)]
pub fn divide_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `power` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "power_scalar", wraps = cpu::power_scalar)]
pub fn power_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `minimum` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "minimum_scalar", wraps = cpu::minimum_scalar)]
pub fn minimum_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `maximum` of an array and a scalar (`a` op `s`).
#[offload(split = NdArraySplit, gpu = "maximum_scalar", wraps = cpu::maximum_scalar)]
pub fn maximum_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T>;

/// Elementwise `add` of a scalar and an array (`s` op `a`).
#[offload(split = NdArraySplit, gpu = "scalar_add", wraps = cpu::scalar_add)]
pub fn scalar_add<T: Float>(s: T, a: &Array1<T>) -> Array1<T>;

/// Elementwise `subtract` of a scalar and an array (`s` op `a`).
#[offload(split = NdArraySplit, gpu = "scalar_subtract", wraps = cpu::scalar_subtract)]
pub fn scalar_subtract<T: Float>(s: T, a: &Array1<T>) -> Array1<T>;

/// Elementwise `multiply` of a scalar and an array (`s` op `a`).
#[offload(split = NdArraySplit, gpu = "scalar_multiply", wraps = cpu::scalar_multiply)]
pub fn scalar_multiply<T: Float>(s: T, a: &Array1<T>) -> Array1<T>;

/// Elementwise `divide` of a scalar and an array (`s` op `a`).
#[offload(split = NdArraySplit, gpu = "scalar_divide", wraps = cpu::scalar_divide)]
pub fn scalar_divide<T: Float>(s: T, a: &Array1<T>) -> Array1<T>;

/// Elementwise `negative`.
#[offload(split = NdArraySplit, gpu = "negative", wraps = cpu::negative)]
pub fn negative<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `abs`.
#[offload(split = NdArraySplit, gpu = "abs", wraps = cpu::abs)]
pub fn abs<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `sqrt`.
#[offload(split = NdArraySplit, gpu = "sqrt", wraps = cpu::sqrt)]
pub fn sqrt<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `exp`.
#[offload(split = NdArraySplit, gpu = "exp", wraps = cpu::exp)]
pub fn exp<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `log`.
#[offload(split = NdArraySplit, gpu = "log", wraps = cpu::log)]
pub fn log<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `log2`.
#[offload(split = NdArraySplit, gpu = "log2", wraps = cpu::log2)]
pub fn log2<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `log10`.
#[offload(split = NdArraySplit, gpu = "log10", wraps = cpu::log10)]
pub fn log10<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `sin`.
#[offload(split = NdArraySplit, gpu = "sin", wraps = cpu::sin)]
pub fn sin<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `cos`.
#[offload(split = NdArraySplit, gpu = "cos", wraps = cpu::cos)]
pub fn cos<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `tan`.
#[offload(split = NdArraySplit, gpu = "tan", wraps = cpu::tan)]
pub fn tan<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `arcsin`.
#[offload(split = NdArraySplit, gpu = "arcsin", wraps = cpu::arcsin)]
pub fn arcsin<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `arccos`.
#[offload(split = NdArraySplit, gpu = "arccos", wraps = cpu::arccos)]
pub fn arccos<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `arctan`.
#[offload(split = NdArraySplit, gpu = "arctan", wraps = cpu::arctan)]
pub fn arctan<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `erf`.
#[offload(split = NdArraySplit, gpu = "erf", wraps = cpu::erf)]
pub fn erf<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `square`.
#[offload(split = NdArraySplit, gpu = "square", wraps = cpu::square)]
pub fn square<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Elementwise `greater` comparison of two arrays, as a mask (NaN compares false, except `not_equal`).
#[offload(split = NdArraySplit, gpu = "greater", wraps = cpu::greater)]
pub fn greater<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool>;

/// Elementwise `less` comparison of two arrays, as a mask (NaN compares false, except `not_equal`).
#[offload(split = NdArraySplit, gpu = "less", wraps = cpu::less)]
pub fn less<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool>;

/// Elementwise `greater_equal` comparison of two arrays, as a mask (NaN compares false, except `not_equal`).
#[offload(split = NdArraySplit, gpu = "greater_equal", wraps = cpu::greater_equal)]
pub fn greater_equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool>;

/// Elementwise `less_equal` comparison of two arrays, as a mask (NaN compares false, except `not_equal`).
#[offload(split = NdArraySplit, gpu = "less_equal", wraps = cpu::less_equal)]
pub fn less_equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool>;

/// Elementwise `equal` comparison of two arrays, as a mask (NaN compares false, except `not_equal`).
#[offload(split = NdArraySplit, gpu = "equal", wraps = cpu::equal)]
pub fn equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool>;

/// Elementwise `not_equal` comparison of two arrays, as a mask (NaN compares false, except `not_equal`).
#[offload(split = NdArraySplit, gpu = "not_equal", wraps = cpu::not_equal)]
pub fn not_equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool>;

/// Elementwise `greater` comparison of an array with a scalar, as a mask.
#[offload(split = NdArraySplit, gpu = "greater_scalar", wraps = cpu::greater_scalar)]
pub fn greater_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool>;

/// Elementwise `less` comparison of an array with a scalar, as a mask.
#[offload(split = NdArraySplit, gpu = "less_scalar", wraps = cpu::less_scalar)]
pub fn less_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool>;

/// Elementwise `greater_equal` comparison of an array with a scalar, as a mask.
#[offload(split = NdArraySplit, gpu = "greater_equal_scalar", wraps = cpu::greater_equal_scalar)]
pub fn greater_equal_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool>;

/// Elementwise `less_equal` comparison of an array with a scalar, as a mask.
#[offload(split = NdArraySplit, gpu = "less_equal_scalar", wraps = cpu::less_equal_scalar)]
pub fn less_equal_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool>;

/// Elementwise `equal` comparison of an array with a scalar, as a mask.
#[offload(split = NdArraySplit, gpu = "equal_scalar", wraps = cpu::equal_scalar)]
pub fn equal_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool>;

/// Elementwise logical and of two masks.
#[offload(split = NdArraySplit, gpu = "logical_and", wraps = cpu::logical_and)]
pub fn logical_and(a: &Array1<bool>, b: &Array1<bool>) -> Array1<bool>;

/// Elementwise logical or of two masks.
#[offload(split = NdArraySplit, gpu = "logical_or", wraps = cpu::logical_or)]
pub fn logical_or(a: &Array1<bool>, b: &Array1<bool>) -> Array1<bool>;

/// Elementwise logical not of a mask.
#[offload(split = NdArraySplit, gpu = "logical_not", wraps = cpu::logical_not)]
pub fn logical_not(a: &Array1<bool>) -> Array1<bool>;

/// `x` where `cond` holds, else `y` (NumPy `where`).
#[offload(split = NdArraySplit, gpu = "where", wraps = cpu::where_)]
pub fn where_<T: Float>(cond: &Array1<bool>, x: &Array1<T>, y: &Array1<T>) -> Array1<T>;

/// `x` where `cond` holds, else the scalar `s`.
#[offload(split = NdArraySplit, gpu = "where_scalar", wraps = cpu::where_scalar)]
pub fn where_scalar<T: Float>(cond: &Array1<bool>, x: &Array1<T>, s: T) -> Array1<T>;

/// `value` where `cond` holds, else `a` (pandas `Series.mask`).
#[offload(split = NdArraySplit, gpu = "mask", wraps = cpu::mask)]
pub fn mask<T: Float>(a: &Array1<T>, cond: &Array1<bool>, value: T) -> Array1<T>;

/// Number of `true` elements of a mask.
#[offload(split = NdArraySplit, ret = CountSplit, wraps = cpu::count_nonzero)]
pub fn count_nonzero(a: &Array1<bool>) -> usize;

/// Sum of the elements (0 for an empty array).
#[offload(split = NdArraySplit, ret = SumSplit, gpu = "sum", wraps = cpu::sum)]
pub fn sum<T: Float>(a: &Array1<T>) -> T;

/// Minimum element; NaN if any element is NaN; an error for an empty array.
#[offload(split = NdArraySplit, ret = MinSplit, gpu = "min", wraps = cpu::min)]
pub fn min<T: Float>(a: &Array1<T>) -> T;

/// Maximum element; NaN if any element is NaN; an error for an empty array.
#[offload(split = NdArraySplit, ret = MaxSplit, gpu = "max", wraps = cpu::max)]
pub fn max<T: Float>(a: &Array1<T>) -> T;

/// Mergeable mean/variance state of an array (see [`mean`], [`std`](fn@std)).
#[offload(split = NdArraySplit, ret = MomentsSplit, wraps = cpu::moments)]
pub fn moments<T: Float>(a: &Array1<T>) -> Moments<T>;

/// The mean of a [`Moments`] state.
#[offload(wraps = cpu::moments_mean)]
pub fn moments_mean<T: Float>(m: Moments<T>) -> T;

/// The population standard deviation of a [`Moments`] state.
#[offload(wraps = cpu::moments_std)]
pub fn moments_std<T: Float>(m: Moments<T>) -> T;

/// Column sums of a 2-D array (`a.sum(axis=0)`).
#[offload(split = NdArraySplit, ret = SumSplit, wraps = cpu::sum_axis0)]
pub fn sum_axis0<T: Float>(a: &Array2<T>) -> Array1<T>;

/// Column minima of a 2-D array (`a.min(axis=0)`); an error with zero rows.
#[offload(split = NdArraySplit, ret = MinSplit, wraps = cpu::min_axis0)]
pub fn min_axis0<T: Float>(a: &Array2<T>) -> Array1<T>;

/// Column maxima of a 2-D array (`a.max(axis=0)`); an error with zero rows.
#[offload(split = NdArraySplit, ret = MaxSplit, wraps = cpu::max_axis0)]
pub fn max_axis0<T: Float>(a: &Array2<T>) -> Array1<T>;

/// Mergeable per-column mean/variance state of a 2-D array.
#[offload(split = NdArraySplit, ret = MomentsSplit, wraps = cpu::moments_axis0)]
pub fn moments_axis0<T: Float>(a: &Array2<T>) -> MomentsAxis0<T>;

/// The per-column mean of a [`MomentsAxis0`] state.
#[offload(split(m = Broadcast), wraps = MomentsAxis0::mean)]
pub fn moments_axis0_mean<T: Float>(m: &MomentsAxis0<T>) -> Array1<T>;

/// The per-column population standard deviation of a [`MomentsAxis0`] state.
#[offload(split(m = Broadcast), wraps = MomentsAxis0::std)]
pub fn moments_axis0_std<T: Float>(m: &MomentsAxis0<T>) -> Array1<T>;

/// An array of `n` zeros, allocated lazily where it is first used.
#[offload(alloc, split = NdArraySplit, gpu = "zeros", wraps = cpu::zeros)]
pub fn zeros<T: Float>(n: usize) -> Array1<T>;

/// An array of `n` ones, allocated lazily.
#[offload(alloc, split = NdArraySplit, gpu = "ones", wraps = cpu::ones)]
pub fn ones<T: Float>(n: usize) -> Array1<T>;

/// An array of `n` copies of `value`, allocated lazily.
#[offload(alloc, split = NdArraySplit, gpu = "full", wraps = cpu::full)]
pub fn full<T: Float>(n: usize, value: T) -> Array1<T>;

/// An array of `n` elements for the caller to overwrite (zeros: Rust has no uninitialised arrays), allocated lazily.
#[offload(alloc, split = NdArraySplit, gpu = "zeros", wraps = cpu::empty)]
pub fn empty<T: Float>(n: usize) -> Array1<T>;

/// A `rows x cols` array of zeros, allocated lazily.
#[offload(alloc, split = NdArraySplit, wraps = cpu::zeros_2d)]
pub fn zeros_2d<T: Float>(rows: usize, cols: usize) -> Array2<T>;

/// A copy of an array.
#[offload(split = NdArraySplit, gpu = "copy", wraps = cpu::copy)]
pub fn copy<T: Float>(a: &Array1<T>) -> Array1<T>;

/// Writes `a + b` into `out` (NumPy `np.add(a, b, out=out)`).
#[offload(split = NdArraySplit, ret = Broadcast, wraps = cpu::add_into)]
pub fn add_into<T: Float>(a: &Array1<T>, b: &Array1<T>, out: &mut Array1<T>);

/// Writes `a * b` into `out` (NumPy `np.multiply(a, b, out=out)`).
#[offload(split = NdArraySplit, ret = Broadcast, wraps = cpu::multiply_into)]
pub fn multiply_into<T: Float>(a: &Array1<T>, b: &Array1<T>, out: &mut Array1<T>);

/// Sets every element of `out` to `value` (NumPy `out.fill(value)`).
#[offload(split = NdArraySplit, ret = Broadcast, wraps = cpu::fill)]
pub fn fill<T: Float>(out: &mut Array1<T>, value: T);
