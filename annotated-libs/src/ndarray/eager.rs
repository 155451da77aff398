//! The same names over plain ndarray, so one source compiles both ways.
//!
//! `use annotated_libs::ndarray::eager::*` gives a function written for the lazy
//! module plain ndarray types ([`Array1<'a, T>`] is `ndarray::Array1<T>`: the
//! lifetime is unused) and, through [`ArrayExt`], the methods the lazy array has
//! and ndarray lacks (`erf`, `asin`, comparisons giving masks) and [`select`].
//! Everything else is ndarray's own operators and methods: code compiled against
//! this module is plain, eager ndarray code.

use ndarray::{Array, ArrayBase, Data, Dimension, Zip};

pub use super::Float;
pub use ndarray::Axis;

/// ndarray's `Array1<T>`, named like the lazy module's `Array1<'a, T>`.
pub type Array1<'a, T> = ndarray::Array1<T>;

/// ndarray's `Array2<T>`, named like the lazy module's `Array2<'a, T>`.
pub type Array2<'a, T> = ndarray::Array2<T>;

/// The right-hand side of an eager comparison or a branch of [`select`]: an
/// array or a scalar.
pub trait EagerOperand<T, D> {
    /// The element at `i` (`None`: a scalar, see [`scalar`](Self::scalar)).
    #[doc(hidden)]
    fn array(&self) -> Option<ndarray::ArrayView<'_, T, D>>;
    /// The scalar (for an array: unused).
    #[doc(hidden)]
    fn scalar(&self) -> T;
}

impl<T: Float, D: Dimension> EagerOperand<T, D> for T {
    fn array(&self) -> Option<ndarray::ArrayView<'_, T, D>> {
        None
    }
    fn scalar(&self) -> T {
        *self
    }
}

impl<T: Float, D: Dimension> EagerOperand<T, D> for &Array<T, D> {
    fn array(&self) -> Option<ndarray::ArrayView<'_, T, D>> {
        Some(self.view())
    }
    fn scalar(&self) -> T {
        <T as num_traits::Zero>::zero()
    }
}

impl<T: Float, D: Dimension> EagerOperand<T, D> for Array<T, D> {
    fn array(&self) -> Option<ndarray::ArrayView<'_, T, D>> {
        Some(self.view())
    }
    fn scalar(&self) -> T {
        <T as num_traits::Zero>::zero()
    }
}

macro_rules! mapped_decls {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {$(
        #[doc = $doc]
        fn $name(&self) -> Array<T, D>;
    )*};
}

macro_rules! mapped_impls {
    ($($name:ident $kernel:literal $dev:literal $doc:literal;)*) => {$(
        fn $name(&self) -> Array<T, D> {
            self.mapv(|x| x.$name())
        }
    )*};
}

macro_rules! comparison_decls {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {$(
        #[doc = concat!("The mask of `self ", stringify!($op), " rhs` (an array of the same shape or a scalar).")]
        fn $name(&self, rhs: impl EagerOperand<T, D>) -> Array<bool, D>;
    )*};
}

macro_rules! comparison_impls {
    ($($name:ident $op:tt [$k:literal, $ks:literal] $dev:literal;)*) => {$(
        fn $name(&self, rhs: impl EagerOperand<T, D>) -> Array<bool, D> {
            match rhs.array() {
                Some(b) => Zip::from(self).and(&b).map_collect(|&x, &y| x $op y),
                None => {
                    let s = rhs.scalar();
                    self.mapv(|x| x $op s)
                }
            }
        }
    )*};
}

/// The lazy array's methods that ndarray lacks, for plain ndarray arrays.
pub trait ArrayExt<T, D> {
    super::table::mapped_unary_ops!(mapped_decls);
    super::table::comparison_ops!(comparison_decls);
}

impl<T: Float, S: Data<Elem = T>, D: Dimension> ArrayExt<T, D> for ArrayBase<S, D> {
    super::table::mapped_unary_ops!(mapped_impls);
    super::table::comparison_ops!(comparison_impls);
}

/// `on_true` where `cond` holds, else `on_false` (NumPy `where`): each branch is an
/// array of `cond`'s shape or a scalar.
pub fn select<T: Float, D: Dimension>(
    cond: &Array<bool, D>,
    on_true: impl EagerOperand<T, D>,
    on_false: impl EagerOperand<T, D>,
) -> Array<T, D> {
    let (x, y) = (on_true.scalar(), on_false.scalar());
    match (on_true.array(), on_false.array()) {
        (Some(a), Some(b)) => Zip::from(cond)
            .and(&a)
            .and(&b)
            .map_collect(|&c, &x, &y| if c { x } else { y }),
        (Some(a), None) => Zip::from(cond)
            .and(&a)
            .map_collect(|&c, &x| if c { x } else { y }),
        (None, Some(b)) => Zip::from(cond)
            .and(&b)
            .map_collect(|&c, &y| if c { x } else { y }),
        (None, None) => cond.mapv(|c| if c { x } else { y }),
    }
}
