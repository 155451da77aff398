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
/// array or a scalar (the eager twin of [`Operand`](super::Operand)).
pub trait EagerOperand<T, D> {
    #[doc(hidden)]
    fn operand(&self) -> EagerOperandKind<'_, T, D>;
}

/// An [`EagerOperand`], resolved.
#[doc(hidden)]
pub enum EagerOperandKind<'v, T, D> {
    Array(ndarray::ArrayView<'v, T, D>),
    Scalar(T),
}

impl<T: Float, D: Dimension> EagerOperand<T, D> for T {
    fn operand(&self) -> EagerOperandKind<'_, T, D> {
        EagerOperandKind::Scalar(*self)
    }
}

impl<T: Float, D: Dimension> EagerOperand<T, D> for &Array<T, D> {
    fn operand(&self) -> EagerOperandKind<'_, T, D> {
        EagerOperandKind::Array(self.view())
    }
}

impl<T: Float, D: Dimension> EagerOperand<T, D> for Array<T, D> {
    fn operand(&self) -> EagerOperandKind<'_, T, D> {
        EagerOperandKind::Array(self.view())
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
            match rhs.operand() {
                EagerOperandKind::Array(b) => Zip::from(self).and(&b).map_collect(|&x, &y| x $op y),
                EagerOperandKind::Scalar(s) => self.mapv(|x| x $op s),
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
    use EagerOperandKind::{Array as A, Scalar as S};
    let pick = |c: bool, x: T, y: T| if c { x } else { y };
    match (on_true.operand(), on_false.operand()) {
        (A(x), A(y)) => Zip::from(cond)
            .and(&x)
            .and(&y)
            .map_collect(|&c, &x, &y| pick(c, x, y)),
        (A(x), S(y)) => Zip::from(cond).and(&x).map_collect(|&c, &x| pick(c, x, y)),
        (S(x), A(y)) => Zip::from(cond).and(&y).map_collect(|&c, &y| pick(c, x, y)),
        (S(x), S(y)) => cond.mapv(|c| pick(c, x, y)),
    }
}
