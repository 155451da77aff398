//! The lazy array's methods, with ndarray's names and signatures: float math
//! (generated from the op table), comparisons giving masks, `select`, and the
//! reductions.

use bach_runtime::Lazy;
use ndarray::{Axis, Ix2};

use super::operators::{Operand, OperandKind};
use super::{ops, Array1, Dim, Float, LazyArray, LazyOption};

macro_rules! unary_methods {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name(&self) -> Self {
            LazyArray::from_lazy(ops::$name(&self.inner))
        }
    )*};
}

macro_rules! param_methods {
    ($($name:ident ($p:ident : $pt:ty) $kernel:literal [$c32:ident, $c64:ident] $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name(&self, $p: $pt) -> Self {
            LazyArray::from_lazy(ops::$name(&self.inner, $p))
        }
    )*};
}

macro_rules! comparison_methods {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {$(
        #[doc = concat!("The mask of `self ", stringify!($op), " rhs`, element by element; `rhs` is an array of the same shape or a scalar. Comparisons with NaN are false, except `not_equal`.")]
        pub fn $name(&self, rhs: impl Operand<'a, T, D>) -> LazyArray<'a, bool, D> {
            LazyArray::from_lazy(match rhs.into_operand() {
                OperandKind::Array(b) => ops::$name(&self.inner, b.inner),
                OperandKind::Scalar(s) => ops::compare_scalar::$name(&self.inner, s),
            })
        }
    )*};
}

/// # Float math
///
/// Elementwise, with ndarray's names; NaN and infinities behave as in ndarray
/// (and NumPy): `sqrt(-1)` is NaN, `ln(0)` is `-inf`.
impl<'a, T: Float, D: Dim> LazyArray<'a, T, D> {
    super::table::ndarray_unary_ops!(unary_methods);
    super::table::mapped_unary_ops!(unary_methods);
    super::table::ndarray_param_ops!(param_methods);

    /// Each element limited to `[min, max]` (ndarray's `clamp`; evaluation fails
    /// unless `min <= max`).
    pub fn clamp(&self, min: T, max: T) -> Self {
        LazyArray::from_lazy(ops::clamp(&self.inner, min, max))
    }
}

/// # Comparisons
impl<'a, T: Float, D: Dim> LazyArray<'a, T, D> {
    super::table::comparison_ops!(comparison_methods);
}

/// # Reductions
///
/// Computed per batch and merged in element order: with one batch the result is
/// ndarray's bit for bit; with several, only the order of combining partial
/// results differs.
impl<'a, T: Float, D: Dim> LazyArray<'a, T, D> {
    /// The sum of all elements (0 for an empty array).
    pub fn sum(&self) -> Lazy<'a, T> {
        ops::sum(&self.inner)
    }

    /// The mean of all elements, `None` for an empty array.
    pub fn mean(&self) -> LazyOption<'a, T> {
        LazyOption {
            inner: ops::mean_of(ops::sum_count(&self.inner)),
        }
    }

    /// The variance with `ddof` delta degrees of freedom (0: population, 1:
    /// sample). Evaluation fails unless `0 <= ddof <= len`, where ndarray panics.
    pub fn var(&self, ddof: T) -> Lazy<'a, T> {
        ops::var_of(ops::welford(&self.inner), ddof)
    }

    /// The standard deviation with `ddof` delta degrees of freedom (see [`var`](Self::var)).
    pub fn std(&self, ddof: T) -> Lazy<'a, T> {
        ops::std_of(ops::welford(&self.inner), ddof)
    }
}

/// # Reductions along an axis of a 2-D array
///
/// `Axis(0)` reduces the rows (one value per column): per-batch partial results
/// merged in row order. `Axis(1)` reduces each row (one value per row), batch by
/// batch. Both panic, as ndarray does, for any other axis.
impl<'a, T: Float> LazyArray<'a, T, Ix2> {
    /// Sums along `axis`.
    pub fn sum_axis(&self, axis: Axis) -> Array1<'a, T> {
        LazyArray::from_lazy(match axis_of(axis) {
            0 => ops::sum_axis0(&self.inner),
            _ => ops::sum_axis1(&self.inner),
        })
    }

    /// Means along `axis`; `None` when the axis has length 0.
    pub fn mean_axis(&self, axis: Axis) -> LazyOption<'a, ndarray::Array1<T>> {
        LazyOption {
            inner: match axis_of(axis) {
                0 => ops::mean_axis0_of(ops::sum_count_axis0(&self.inner)),
                _ => ops::mean_axis1(&self.inner),
            },
        }
    }

    /// Variances along `axis` with `ddof` delta degrees of freedom. Evaluation
    /// fails unless `0 <= ddof <= ` the axis length.
    pub fn var_axis(&self, axis: Axis, ddof: T) -> Array1<'a, T> {
        LazyArray::from_lazy(match axis_of(axis) {
            0 => ops::var_axis0_of(ops::welford_axis0(&self.inner), ddof),
            _ => ops::var_axis1(&self.inner, ddof),
        })
    }

    /// Standard deviations along `axis` with `ddof` delta degrees of freedom.
    pub fn std_axis(&self, axis: Axis, ddof: T) -> Array1<'a, T> {
        LazyArray::from_lazy(match axis_of(axis) {
            0 => ops::std_axis0_of(ops::welford_axis0(&self.inner), ddof),
            _ => ops::std_axis1(&self.inner, ddof),
        })
    }
}

/// The index of an axis of a 2-D array; panics like ndarray for any other.
#[track_caller]
fn axis_of(axis: Axis) -> usize {
    assert!(
        axis.index() < 2,
        "axis {} out of bounds for a 2-D array",
        axis.index()
    );
    axis.index()
}

/// `on_true` where `cond` holds, else `on_false` (NumPy `where`): each branch is
/// an array of `cond`'s shape or a scalar.
///
/// # Panics
///
/// When both branches are scalars (there would be no array to take the shape
/// from; use `cond` with arrays).
pub fn select<'a, T: Float, D: Dim>(
    cond: &LazyArray<'a, bool, D>,
    on_true: impl Operand<'a, T, D>,
    on_false: impl Operand<'a, T, D>,
) -> LazyArray<'a, T, D> {
    use OperandKind::{Array, Scalar};
    let c = &cond.inner;
    LazyArray::from_lazy(match (on_true.into_operand(), on_false.into_operand()) {
        (Array(x), Array(y)) => ops::select(c, x.inner, y.inner),
        (Array(x), Scalar(s)) => ops::select_scalar(c, x.inner, s),
        (Scalar(s), Array(y)) => ops::scalar_select(c, s, y.inner),
        (Scalar(s), Scalar(t)) => ops::select_scalars(c, s, t),
    })
}
