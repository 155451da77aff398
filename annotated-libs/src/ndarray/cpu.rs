//! The CPU functions the annotations wrap: plain, eager functions over ndarray
//! arrays, generated from the op table. Each calls ndarray's own implementation
//! where ndarray has one (`a.sqrt()`, `a + b`, `a.sum_axis(Axis(0))`), so a lazy
//! program's CPU result is the result of the same program on ndarray.

use ndarray::{Array, Array1, Array2, Axis, Zip};

use super::reduce::{check_ddof, float_count, ReductionError, SumCount, Welford, WelfordAxis0};
use super::{Dim, Float};

macro_rules! unary_methods {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name<T: Float, D: Dim>(a: &Array<T, D>) -> Array<T, D> {
            a.$name()
        }
    )*};
}
super::table::ndarray_unary_ops!(unary_methods);

macro_rules! unary_mapped {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name<T: Float, D: Dim>(a: &Array<T, D>) -> Array<T, D> {
            a.mapv(|x| x.$name())
        }
    )*};
}
super::table::mapped_unary_ops!(unary_mapped);

macro_rules! param_methods {
    ($($name:ident ($p:ident : $pt:ty) $kernel:literal [$c32:ident, $c64:ident] $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, $p: $pt) -> Array<T, D> {
            a.$name($p)
        }
    )*};
}
super::table::ndarray_param_ops!(param_methods);

/// Each element limited to `[min, max]` (ndarray's `clamp`; panics unless `min <= max`).
pub fn clamp<T: Float, D: Dim>(a: &Array<T, D>, min: T, max: T) -> Array<T, D> {
    a.clamp(min, max)
}

/// The negation `-a` of each element (as ndarray's `Neg`: `a.map(Neg::neg)`).
pub fn neg<T: Float, D: Dim>(a: &Array<T, D>) -> Array<T, D> {
    a.map(|&x| -x)
}

/// Arithmetic in four forms: two arrays of one shape, array and scalar, scalar and
/// array, and a 2-D array with a 1-D row broadcast over its rows; each is ndarray's
/// operator except scalar-first, which ndarray defines only for concrete types.
macro_rules! arithmetic {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident [$k:literal, $ks:literal, $sk:literal] $dev:literal;)*) => {
        $(
            #[doc = concat!("`a ", stringify!($op), " b` for arrays of one shape (ndarray's operator).")]
            pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, b: &Array<T, D>) -> Array<T, D> {
                a $op b
            }
        )*
        /// Array-scalar forms: `a op s`.
        pub mod array_scalar {
            use super::*;
            $(
                #[doc = concat!("`a ", stringify!($op), " s` for each element (ndarray's operator).")]
                pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, s: T) -> Array<T, D> {
                    a $op s
                }
            )*
        }
        /// Scalar-array forms: `s op a`.
        pub mod scalar_array {
            use super::*;
            $(
                #[doc = concat!("`s ", stringify!($op), " a` for each element.")]
                pub fn $name<T: Float, D: Dim>(s: T, a: &Array<T, D>) -> Array<T, D> {
                    a.mapv(|x| s $op x)
                }
            )*
        }
        /// Row broadcasting: a 2-D array and a 1-D row of its width.
        pub mod rows {
            use super::*;
            $(
                #[doc = concat!("`m ", stringify!($op), " row` with `row` broadcast over the rows of `m` (ndarray's operator).")]
                pub fn $name<T: Float>(m: &Array2<T>, row: &Array1<T>) -> Array2<T> {
                    m $op row
                }
            )*
        }
    };
}
super::table::arithmetic_ops!(arithmetic);

macro_rules! comparisons {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {
        $(
            #[doc = concat!("The mask of `a ", stringify!($op), " b`, element by element.")]
            pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, b: &Array<T, D>) -> Array<bool, D> {
                Zip::from(a).and(b).map_collect(|&x, &y| x $op y)
            }
        )*
        /// Comparisons of an array with a scalar.
        pub mod compare_scalar {
            use super::*;
            $(
                #[doc = concat!("The mask of `a ", stringify!($op), " s`, element by element.")]
                pub fn $name<T: Float, D: Dim>(a: &Array<T, D>, s: T) -> Array<bool, D> {
                    a.mapv(|x| x $op s)
                }
            )*
        }
    };
}
super::table::comparison_ops!(comparisons);

macro_rules! logical {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident $kernel:literal $dev:literal;)*) => {$(
        #[doc = concat!("`a ", stringify!($op), " b` of two masks (ndarray's operator).")]
        pub fn $name<D: Dim>(a: &Array<bool, D>, b: &Array<bool, D>) -> Array<bool, D> {
            a $op b
        }
    )*};
}
super::table::logical_ops!(logical);

/// `!a` of a mask (ndarray's operator).
pub fn not<D: Dim>(a: &Array<bool, D>) -> Array<bool, D> {
    !a
}

/// `on_true` where `cond` holds, else `on_false` (NumPy `where`).
pub fn select<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: &Array<T, D>,
    on_false: &Array<T, D>,
) -> Array<T, D> {
    Zip::from(cond)
        .and(on_true)
        .and(on_false)
        .map_collect(|&c, &x, &y| if c { x } else { y })
}

/// `on_true` where `cond` holds, else the scalar `on_false`.
pub fn select_scalar<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: &Array<T, D>,
    on_false: T,
) -> Array<T, D> {
    Zip::from(cond)
        .and(on_true)
        .map_collect(|&c, &x| if c { x } else { on_false })
}

/// The scalar `on_true` where `cond` holds, else `on_false`.
pub fn scalar_select<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: T,
    on_false: &Array<T, D>,
) -> Array<T, D> {
    Zip::from(cond)
        .and(on_false)
        .map_collect(|&c, &y| if c { on_true } else { y })
}

/// The scalar `on_true` where `cond` holds, else the scalar `on_false` (NumPy
/// `where(cond, 1.0, 0.0)`: an array of `cond`'s shape).
pub fn select_scalars<T: Float, D: Dim>(
    cond: &Array<bool, D>,
    on_true: T,
    on_false: T,
) -> Array<T, D> {
    cond.mapv(|c| if c { on_true } else { on_false })
}

// ---- reductions -------------------------------------------------------------------------

/// The sum of the elements (ndarray's `sum`: 0 for an empty array).
pub fn sum<T: Float, D: Dim>(a: &Array<T, D>) -> T {
    a.sum()
}

/// The sum and count of the elements: the mergeable state of `mean`.
pub fn sum_count<T: Float, D: Dim>(a: &Array<T, D>) -> SumCount<T> {
    SumCount {
        sum: a.sum(),
        count: a.len(),
    }
}

/// The running mean and sum of squared deviations (ndarray's `var` loop): the
/// mergeable state of `var` and `std`.
pub fn welford<T: Float, D: Dim>(a: &Array<T, D>) -> Welford<T> {
    Welford::of(a.iter().copied())
}

/// Column sums of a 2-D array (ndarray's `sum_axis(Axis(0))`).
pub fn sum_axis0<T: Float>(a: &Array2<T>) -> Array1<T> {
    a.sum_axis(Axis(0))
}

/// Row sums of a 2-D array (ndarray's `sum_axis(Axis(1))`).
pub fn sum_axis1<T: Float>(a: &Array2<T>) -> Array1<T> {
    a.sum_axis(Axis(1))
}

/// Column sums and the row count: the mergeable state of `mean_axis(Axis(0))`.
pub fn sum_count_axis0<T: Float>(a: &Array2<T>) -> SumCount<Array1<T>> {
    SumCount {
        sum: a.sum_axis(Axis(0)),
        count: a.nrows(),
    }
}

/// Row means of a 2-D array (ndarray's `mean_axis(Axis(1))`; `None` without columns).
pub fn mean_axis1<T: Float>(a: &Array2<T>) -> Option<Array1<T>> {
    a.mean_axis(Axis(1))
}

/// Per-column running means and sums of squared deviations (ndarray's `var_axis`
/// loop over the rows): the mergeable state of `var_axis(Axis(0))`.
pub fn welford_axis0<T: Float>(a: &Array2<T>) -> WelfordAxis0<T> {
    WelfordAxis0::of(a)
}

/// Row variances of a 2-D array (ndarray's `var_axis(Axis(1), ddof)`); a
/// `ddof` outside `0..=ncols`, where ndarray panics, is an error.
pub fn var_axis1<T: Float>(a: &Array2<T>, ddof: T) -> Result<Array1<T>, ReductionError> {
    check_ddof(ddof, float_count::<T>(a.ncols()), a.ncols())?;
    Ok(a.var_axis(Axis(1), ddof))
}

/// Row standard deviations of a 2-D array (ndarray's `std_axis(Axis(1), ddof)`);
/// a `ddof` outside `0..=ncols` is an error.
pub fn std_axis1<T: Float>(a: &Array2<T>, ddof: T) -> Result<Array1<T>, ReductionError> {
    check_ddof(ddof, float_count::<T>(a.ncols()), a.ncols())?;
    Ok(a.std_axis(Axis(1), ddof))
}
