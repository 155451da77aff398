//! ndarray, annotated: lazy arrays with ndarray's operators and methods.
//!
//! Write ndarray code as usual; let inputs enter once as [`LazyArray`]s (from
//! `&Array` without copying, or from owned arrays), and the same operators and
//! methods record a task graph instead of computing. [`bach_runtime::evaluate`]
//! plans it (fusing the calls into stages, cutting the data into cache-sized
//! batches, placing stages on the CPU or a GPU) and returns plain ndarray arrays:
//!
//! ```
//! use annotated_libs::ndarray::{Array1, LazyArray};
//! use ndarray::array;
//!
//! fn rsig<'a>(vol: &Array1<'a, f64>, rate: &Array1<'a, f64>) -> Array1<'a, f64> {
//!     vol * vol * 3.0 + rate
//! }
//!
//! let vol = array![0.1, 0.2, 0.3];
//! let rate = array![0.01, 0.02, 0.03];
//! let lazy = rsig(&LazyArray::from(&vol), &LazyArray::from(&rate));
//! let result: ndarray::Array1<f64> = bach_runtime::evaluate(lazy).unwrap();
//! assert_eq!(result, &vol * &vol * 3.0 + &rate); // ndarray's own result, bit for bit
//! ```
//!
//! # One source, two libraries
//!
//! A function written against the type names of this module compiles against
//! ndarray itself through [`eager`]: there, `Array1<'a, T>` is `ndarray::Array1<T>`
//! (the lifetime is unused) and [`eager::ArrayExt`] adds the few methods ndarray
//! lacks (`erf`, `asin`, comparisons, `select`). Swapping
//! `use annotated_libs::ndarray::eager::*` for `use annotated_libs::ndarray::*` makes
//! the function lazy; see `examples/ndarray_workloads.rs` and
//! [`workloads`](crate::workloads).
//!
//! # What the lazy array offers
//!
//! - Operators `+ - * / %` and unary `-` on owned values and references, array with
//!   array (one shape), array with scalar and scalar with array (`f32`, `f64`), and a
//!   2-D array with a 1-D row broadcast over its rows (`&m - &row`); compound
//!   assignment (`+=`, `-=`, ..., also with a row) records an update of the array.
//!   See [`LazyArray`]'s operator implementations.
//! - ndarray's float methods with their names and signatures: `floor ceil round
//!   trunc fract abs signum recip sqrt exp exp2 ln log2 log10 cbrt sin cos tan pow2
//!   powi powf log clamp`, and `asin acos atan sinh cosh tanh exp_m1 ln_1p erf`.
//! - Comparisons giving masks (`greater`, `less_equal`, ... with an array or a
//!   scalar), `&`, `|`, `^`, `!` on masks, and [`select`] (NumPy `where`).
//! - Reductions as ndarray names them: `sum`, `mean`, `var`, `std`, and for 2-D
//!   arrays `sum_axis`, `mean_axis`, `var_axis`, `std_axis`. `mean` and `mean_axis`
//!   return a [`LazyOption`] (ndarray returns `Option`): `.unwrap()` it lazily.
//!
//! Every operation is one row of an op table (`table.rs`) from which its CPU
//! function, annotation, CUDA kernel and lazy method are generated. 1-D arrays run
//! on a GPU when one is available and the cost model prefers it; 2-D arrays run on
//! the CPU, split by rows.

mod cpu;
pub mod eager;
#[doc(hidden)]
pub mod host_checks;
mod kernels;
mod methods;
mod operators;
pub mod ops;
mod reduce;
mod table;

use bach_runtime::{Evaluate, Lazy, Reducible};
use ndarray::{Ix1, Ix2, RemoveAxis};

pub use kernels::BACH_KERNELS;
pub use methods::select;
pub use ndarray::Axis;
pub use operators::{EvaluateFirst, Operand};
pub use reduce::{ReductionError, SumCount, Welford, WelfordAxis0};

/// The element types of lazy float arrays: `f32` and `f64`.
pub trait Float:
    crate::cpu::numpy::Float
    + ndarray::ScalarOperand
    + ndarray::LinalgScalar
    + num_traits::FromPrimitive
    + Reducible
    + std::ops::Rem<Output = Self>
{
}
impl Float for f32 {}
impl Float for f64 {}

/// The array dimensions the lazy array supports: [`Ix1`](type@Ix1) and [`Ix2`](type@Ix2) (split along
/// the first axis).
pub trait Dim: RemoveAxis + Send + Sync + 'static {}
impl<D: RemoveAxis + Send + Sync + 'static> Dim for D {}

/// A lazy n-dimensional array of `T` reading data that lives for `'a`: ndarray's
/// `Array<T, D>`, not computed yet. Build one from an array with
/// [`LazyArray::from`] (a reference is read in place, never copied) and get the
/// array back with [`bach_runtime::evaluate`].
///
/// A lazy array is a handle: cloning it is cheap and shares the recorded value.
/// It cannot be indexed, iterated or printed before evaluation, because its
/// elements do not exist yet.
///
/// # Operators
///
/// ```
/// use annotated_libs::ndarray::LazyArray;
/// use ndarray::array;
///
/// let (a, b) = (array![1.0, 2.0, 4.0], array![0.5, 0.25, 2.0]);
/// let (la, lb) = (LazyArray::from(&a), LazyArray::from(&b));
/// let mut x = &la * &lb + 1.0;      // array with array, then with a scalar
/// x -= &la;                         // compound assignment records an update
/// let y = 2.0 / -x;                 // scalar first, unary minus
/// let y = bach_runtime::evaluate(y).unwrap();
/// assert_eq!(y, 2.0 / -(&a * &b + 1.0 - &a));
/// ```
///
/// # Float methods
///
/// ```
/// use annotated_libs::ndarray::LazyArray;
/// use ndarray::array;
///
/// let a = array![0.25, 1.0, 4.0];
/// let l = LazyArray::from(&a);
/// let (r, p, e) = bach_runtime::evaluate((l.sqrt().ln(), l.powi(2).clamp(0.0, 9.0), l.erf())).unwrap();
/// assert_eq!(r, a.sqrt().ln());
/// assert_eq!(p, a.powi(2).clamp(0.0, 9.0));
/// assert_eq!(e, a.mapv(libm::erf));
/// ```
///
/// # Comparisons, masks and `select`
///
/// ```
/// use annotated_libs::ndarray::{select, LazyArray};
/// use ndarray::array;
///
/// let a = array![1.0, f64::NAN, 3.0];
/// let l = LazyArray::from(&a);
/// let big = l.greater(2.0) | l.less(&l);                 // NaN compares false
/// let clipped = select(&big, 2.0, &l);                   // NumPy `where`
/// let (big, clipped) = bach_runtime::evaluate((big, clipped)).unwrap();
/// assert_eq!(big, array![false, false, true]);
/// assert_eq!(clipped[2], 2.0);
/// ```
///
/// # Reductions
///
/// ```
/// use annotated_libs::ndarray::{Axis, LazyArray};
/// use ndarray::array;
///
/// let m = array![[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]];
/// let l = LazyArray::from(&m);
/// // Standardize the columns, as in ndarray: the row broadcasts over the rows.
/// let centered = &l - &l.mean_axis(Axis(0)).unwrap();
/// let z = &centered / &l.std_axis(Axis(0), 0.0);
/// let (total, mean, z) = bach_runtime::evaluate((l.sum(), l.mean(), z)).unwrap();
/// assert_eq!((total, mean), (27.0, Some(4.5)));
/// assert_eq!(z.column(0), (&m.column(0) - 3.0) / m.column(0).std(0.0));
/// ```
#[must_use = "a lazy array computes nothing until it is evaluated"]
pub struct LazyArray<'a, T, D> {
    inner: Lazy<'a, ndarray::Array<T, D>>,
}

/// A lazy 1-D array (ndarray's `Array1<T>`, not computed yet).
pub type Array1<'a, T> = LazyArray<'a, T, Ix1>;

/// A lazy 2-D array (ndarray's `Array2<T>`, not computed yet).
pub type Array2<'a, T> = LazyArray<'a, T, Ix2>;

impl<'a, T, D> Clone for LazyArray<'a, T, D> {
    fn clone(&self) -> Self {
        LazyArray {
            inner: self.inner.clone(),
        }
    }
}

impl<'a, T, D> std::fmt::Debug for LazyArray<'a, T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LazyArray({:?})", self.inner)
    }
}

impl<'a, T, D> LazyArray<'a, T, D> {
    /// The lazy array of a recorded value.
    pub fn from_lazy(inner: Lazy<'a, ndarray::Array<T, D>>) -> Self {
        LazyArray { inner }
    }

    /// The recorded value, for calling annotated functions directly.
    pub fn as_lazy(&self) -> &Lazy<'a, ndarray::Array<T, D>> {
        &self.inner
    }

    /// The recorded value.
    pub fn into_lazy(self) -> Lazy<'a, ndarray::Array<T, D>> {
        self.inner
    }
}

impl<'a, T, D> From<&'a ndarray::Array<T, D>> for LazyArray<'a, T, D>
where
    ndarray::Array<T, D>: bach_runtime::Value,
{
    /// Reads `array` in place when the graph runs; nothing is copied.
    fn from(array: &'a ndarray::Array<T, D>) -> Self {
        LazyArray::from_lazy(Lazy::borrowed(array))
    }
}

impl<'a, T, D> From<ndarray::Array<T, D>> for LazyArray<'a, T, D>
where
    ndarray::Array<T, D>: bach_runtime::Value,
{
    /// Takes `array` into the graph (moved, not copied).
    fn from(array: ndarray::Array<T, D>) -> Self {
        LazyArray::from_lazy(Lazy::new(array))
    }
}

impl<'a, T, D> From<Lazy<'a, ndarray::Array<T, D>>> for LazyArray<'a, T, D> {
    fn from(inner: Lazy<'a, ndarray::Array<T, D>>) -> Self {
        LazyArray::from_lazy(inner)
    }
}

impl<'a, T, D> Evaluate for LazyArray<'a, T, D>
where
    ndarray::Array<T, D>: bach_runtime::Value,
{
    type Output = ndarray::Array<T, D>;
    fn targets(&self, out: &mut Vec<bach_runtime::__private::Target>) {
        self.inner.targets(out)
    }
    fn finish(
        self,
        values: &mut bach_runtime::__private::Values,
    ) -> bach_runtime::Result<Self::Output> {
        self.inner.finish(values)
    }
}

impl<'r, 'a, T, D> Evaluate for &'r LazyArray<'a, T, D>
where
    ndarray::Array<T, D>: bach_runtime::Value,
{
    type Output = ndarray::Array<T, D>;
    fn targets(&self, out: &mut Vec<bach_runtime::__private::Target>) {
        self.inner.targets(out)
    }
    fn finish(
        self,
        values: &mut bach_runtime::__private::Values,
    ) -> bach_runtime::Result<Self::Output> {
        (&self.inner).finish(values)
    }
}

/// A lazy `Option<V>`: what the lazy `mean` and `mean_axis` return, as ndarray's
/// return `Option` (`None` for an empty array). `unwrap` keeps it lazy;
/// evaluating gives the `Option`.
#[must_use = "a lazy value computes nothing until it is evaluated"]
pub struct LazyOption<'a, V> {
    inner: Lazy<'a, Option<V>>,
}

impl<'a, V> Clone for LazyOption<'a, V> {
    fn clone(&self) -> Self {
        LazyOption {
            inner: self.inner.clone(),
        }
    }
}

impl<'a, T: Float> LazyOption<'a, T> {
    /// The value; evaluation fails with `Error::Call` naming `unwrap_scalar` (its
    /// source a [`ReductionError::Empty`]) when it is `None`.
    pub fn unwrap(self) -> Lazy<'a, T> {
        ops::unwrap_scalar(self.inner)
    }
}

impl<'a, T: Float, D: Dim> LazyOption<'a, ndarray::Array<T, D>> {
    /// The array; evaluation fails with `Error::Call` naming `unwrap_array` (its
    /// source a [`ReductionError::Empty`]) when it is `None`.
    pub fn unwrap(self) -> LazyArray<'a, T, D> {
        LazyArray::from_lazy(ops::unwrap_array(self.inner))
    }
}

impl<'a, V: bach_runtime::Value> Evaluate for LazyOption<'a, V> {
    type Output = Option<V>;
    fn targets(&self, out: &mut Vec<bach_runtime::__private::Target>) {
        self.inner.targets(out)
    }
    fn finish(
        self,
        values: &mut bach_runtime::__private::Values,
    ) -> bach_runtime::Result<Self::Output> {
        self.inner.finish(values)
    }
}
