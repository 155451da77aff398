//! The lazy array's operators, generated from the op table: `+ - * / %` on owned
//! values and references, array with array, array with scalar, scalar with array
//! (`f32`, `f64`), a 2-D array with a 1-D row, compound assignment, unary `-`, and
//! `& | ^ !` on masks.

use std::ops::{
    Add, AddAssign, BitAnd, BitAndAssign, BitOr, BitOrAssign, BitXor, BitXorAssign, Div, DivAssign,
    Mul, MulAssign, Neg, Not, Rem, RemAssign, Sub, SubAssign,
};

use ndarray::{Ix1, Ix2};

use super::{ops, Dim, Float, LazyArray};

/// What the right-hand side of a comparison or a branch of
/// [`select`](super::select) can be: a lazy array (owned or borrowed) or a scalar.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be combined with a lazy array of `{T}`",
    label = "expected a lazy array of `{T}` with the same dimensions, or a `{T}` scalar",
    note = "both sides of a lazy operation need one element type and dimension: convert the input before it enters (`a.mapv(|x| x as f64)`)"
)]
pub trait Operand<'a, T, D> {
    #[doc(hidden)]
    fn into_operand(self) -> OperandKind<'a, T, D>;
}

/// An [`Operand`], resolved.
#[doc(hidden)]
pub enum OperandKind<'a, T, D> {
    Array(LazyArray<'a, T, D>),
    Scalar(T),
}

impl<'a, T: Float, D> Operand<'a, T, D> for T {
    fn into_operand(self) -> OperandKind<'a, T, D> {
        OperandKind::Scalar(self)
    }
}

impl<'a, T, D> Operand<'a, T, D> for LazyArray<'a, T, D> {
    fn into_operand(self) -> OperandKind<'a, T, D> {
        OperandKind::Array(self)
    }
}

impl<'a, T, D> Operand<'a, T, D> for &LazyArray<'a, T, D> {
    fn into_operand(self) -> OperandKind<'a, T, D> {
        OperandKind::Array(self.clone())
    }
}

/// `impl $Trait<$Rhs> for $Lhs` for the four combinations of owned and borrowed
/// operands, calling `$f(&lhs.inner, &rhs.inner)`.
macro_rules! four_ways {
    ([$($gen:tt)*] $Trait:ident $method:ident, $Lhs:ty, $Rhs:ty, $Out:ty, $f:path) => {
        impl<'a, $($gen)*> $Trait<&$Rhs> for &$Lhs {
            type Output = $Out;
            fn $method(self, rhs: &$Rhs) -> $Out {
                LazyArray::from_lazy($f(&self.inner, &rhs.inner))
            }
        }
        impl<'a, $($gen)*> $Trait<$Rhs> for &$Lhs {
            type Output = $Out;
            fn $method(self, rhs: $Rhs) -> $Out {
                LazyArray::from_lazy($f(&self.inner, rhs.inner))
            }
        }
        impl<'a, $($gen)*> $Trait<&$Rhs> for $Lhs {
            type Output = $Out;
            fn $method(self, rhs: &$Rhs) -> $Out {
                LazyArray::from_lazy($f(self.inner, &rhs.inner))
            }
        }
        impl<'a, $($gen)*> $Trait<$Rhs> for $Lhs {
            type Output = $Out;
            fn $method(self, rhs: $Rhs) -> $Out {
                LazyArray::from_lazy($f(self.inner, rhs.inner))
            }
        }
    };
}

/// `impl $Assign<&$Rhs>` and `impl $Assign<$Rhs>` for `$Lhs`: the array is
/// rebound to the recorded result, an update of its value (earlier clones keep
/// the old value, as a copy would).
macro_rules! assign_both_ways {
    ([$($gen:tt)*] $Assign:ident $assign:ident, $Lhs:ty, $Rhs:ty, $f:path) => {
        impl<'a, $($gen)*> $Assign<&$Rhs> for $Lhs {
            fn $assign(&mut self, rhs: &$Rhs) {
                self.inner = $f(&self.inner, &rhs.inner);
            }
        }
        impl<'a, $($gen)*> $Assign<$Rhs> for $Lhs {
            fn $assign(&mut self, rhs: $Rhs) {
                self.inner = $f(&self.inner, rhs.inner);
            }
        }
    };
}

macro_rules! arithmetic {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident [$k:literal, $ks:literal, $sk:literal] $dev:literal;)*) => {$(
        four_ways!([T: Float, D: Dim] $Trait $method, LazyArray<'a, T, D>, LazyArray<'a, T, D>, LazyArray<'a, T, D>, ops::$name);
        four_ways!([T: Float] $Trait $method, LazyArray<'a, T, Ix2>, LazyArray<'a, T, Ix1>, LazyArray<'a, T, Ix2>, ops::rows::$name);
        assign_both_ways!([T: Float, D: Dim] $Assign $assign, LazyArray<'a, T, D>, LazyArray<'a, T, D>, ops::$name);
        assign_both_ways!([T: Float] $Assign $assign, LazyArray<'a, T, Ix2>, LazyArray<'a, T, Ix1>, ops::rows::$name);

        impl<'a, T: Float, D: Dim> $Trait<T> for &LazyArray<'a, T, D> {
            type Output = LazyArray<'a, T, D>;
            fn $method(self, s: T) -> LazyArray<'a, T, D> {
                LazyArray::from_lazy(ops::array_scalar::$name(&self.inner, s))
            }
        }
        impl<'a, T: Float, D: Dim> $Trait<T> for LazyArray<'a, T, D> {
            type Output = LazyArray<'a, T, D>;
            fn $method(self, s: T) -> LazyArray<'a, T, D> {
                LazyArray::from_lazy(ops::array_scalar::$name(self.inner, s))
            }
        }
        impl<'a, T: Float, D: Dim> $Assign<T> for LazyArray<'a, T, D> {
            fn $assign(&mut self, s: T) {
                self.inner = ops::array_scalar::$name(&self.inner, s);
            }
        }
        scalar_first!($name $Trait $method f32);
        scalar_first!($name $Trait $method f64);
    )*};
}

/// `s op a` for one concrete scalar type (a generic `impl Add<LazyArray<T>> for T`
/// is not allowed for a foreign `T`).
macro_rules! scalar_first {
    ($name:ident $Trait:ident $method:ident $t:ty) => {
        impl<'a, D: Dim> $Trait<&LazyArray<'a, $t, D>> for $t {
            type Output = LazyArray<'a, $t, D>;
            fn $method(self, a: &LazyArray<'a, $t, D>) -> LazyArray<'a, $t, D> {
                LazyArray::from_lazy(ops::scalar_array::$name(self, &a.inner))
            }
        }
        impl<'a, D: Dim> $Trait<LazyArray<'a, $t, D>> for $t {
            type Output = LazyArray<'a, $t, D>;
            fn $method(self, a: LazyArray<'a, $t, D>) -> LazyArray<'a, $t, D> {
                LazyArray::from_lazy(ops::scalar_array::$name(self, a.inner))
            }
        }
    };
}

super::table::arithmetic_ops!(arithmetic);

macro_rules! logical {
    ($($name:ident $op:tt $Trait:ident $method:ident $Assign:ident $assign:ident $kernel:literal $dev:literal;)*) => {$(
        four_ways!([D: Dim] $Trait $method, LazyArray<'a, bool, D>, LazyArray<'a, bool, D>, LazyArray<'a, bool, D>, ops::$name);
        assign_both_ways!([D: Dim] $Assign $assign, LazyArray<'a, bool, D>, LazyArray<'a, bool, D>, ops::$name);
    )*};
}
super::table::logical_ops!(logical);

/// `impl $Trait for &$Arr` and `impl $Trait for $Arr`, calling `$f(inner)`.
macro_rules! unary_both_ways {
    ([$($gen:tt)*] $Trait:ident $method:ident, $Arr:ty, $f:path) => {
        impl<'a, $($gen)*> $Trait for &$Arr {
            type Output = $Arr;
            fn $method(self) -> $Arr {
                LazyArray::from_lazy($f(&self.inner))
            }
        }
        impl<'a, $($gen)*> $Trait for $Arr {
            type Output = $Arr;
            fn $method(self) -> $Arr {
                LazyArray::from_lazy($f(self.inner))
            }
        }
    };
}

unary_both_ways!([T: Float, D: Dim] Neg neg, LazyArray<'a, T, D>, ops::neg);
unary_both_ways!([D: Dim] Not not, LazyArray<'a, bool, D>, ops::not);

/// A lazy array has no elements until it is evaluated: indexing one is a compile
/// error that says so (no type implements this trait).
#[diagnostic::on_unimplemented(
    message = "a lazy array has no elements before it is evaluated",
    label = "cannot index a lazy array",
    note = "evaluate it first: `let array = bach_runtime::evaluate(lazy)?;` returns an ndarray array you can index"
)]
pub trait EvaluateFirst {}

impl<'a, T, D, I> std::ops::Index<I> for LazyArray<'a, T, D>
where
    LazyArray<'a, T, D>: EvaluateFirst,
{
    type Output = T;
    fn index(&self, _: I) -> &T {
        unreachable!("no type implements EvaluateFirst")
    }
}
