//! Method and operator syntax over the stubs of [`super::ops`]: a lazy
//! column reads like polars code.

use polars_core::prelude::{BooleanChunked, Float64Chunked};

use bach_runtime::{Evaluate, Lazy};

use super::csv::CsvColumn;
use super::ops;

/// A lazy `Float64Chunked`: polars' comparisons, arithmetic, masking and
/// `sum`, recorded in the thread's current graph and run by
/// [`bach_runtime::evaluate`].
#[derive(Debug, Clone)]
pub struct LazySeries<'a> {
    inner: Lazy<'a, Float64Chunked>,
}

/// A lazy sum.
pub type LazySum<'a> = Lazy<'a, f64>;

/// A lazy `BooleanChunked`: the result of a comparison, used as a mask.
#[derive(Debug, Clone)]
pub struct LazyMask<'a> {
    inner: Lazy<'a, BooleanChunked>,
}

impl<'a> LazySeries<'a> {
    /// Wraps a lazy column (the result of a stub of [`super::ops`]).
    pub fn from_lazy(inner: Lazy<'a, Float64Chunked>) -> Self {
        super::register_device_codecs();
        LazySeries { inner }
    }

    /// A column computed before, borrowed for the handle's lifetime.
    pub fn new(column: &'a Float64Chunked) -> Self {
        Self::from_lazy(Lazy::borrowed(column))
    }

    /// The rows of a CSV column, parsed batch by batch when evaluated
    /// ([`super::read_column`](fn@super::read_column)).
    pub fn read(csv: &'a CsvColumn) -> Self {
        Self::from_lazy(ops::read_column(csv))
    }

    /// The lazy value.
    pub fn lazy(&self) -> &Lazy<'a, Float64Chunked> {
        &self.inner
    }

    /// The lazy value, unwrapped.
    pub fn into_lazy(self) -> Lazy<'a, Float64Chunked> {
        self.inner
    }

    /// `self > s` in polars' total order (`ChunkCompareIneq::gt`).
    pub fn gt(&self, s: f64) -> LazyMask<'a> {
        LazyMask {
            inner: ops::gt(&self.inner, s),
        }
    }

    /// `self < s` in polars' total order (`ChunkCompareIneq::lt`).
    pub fn lt(&self, s: f64) -> LazyMask<'a> {
        LazyMask {
            inner: ops::lt(&self.inner, s),
        }
    }

    /// `value` where `cond` holds, `self` elsewhere (the values of `set(cond, Some(value))`).
    pub fn mask(&self, cond: &LazyMask<'a>, value: f64) -> LazySeries<'a> {
        Self::from_lazy(ops::mask(&self.inner, &cond.inner, value))
    }

    /// `self` where `cond` holds, `other` elsewhere (`ChunkZip::zip_with`).
    pub fn zip_with(&self, cond: &LazyMask<'a>, other: &LazySeries<'a>) -> LazySeries<'a> {
        Self::from_lazy(ops::zip_with(&cond.inner, &self.inner, &other.inner))
    }

    /// The sum of the elements (`ChunkAgg::sum`, 0 for none).
    pub fn sum(&self) -> LazySum<'a> {
        ops::sum(&self.inner)
    }

    /// [`LazySeries::sum`], under the name [`super::eager::SeriesExt`] gives
    /// plain polars (whose `sum` is an `Option`), for sources compiled both ways.
    pub fn total(&self) -> LazySum<'a> {
        self.sum()
    }
}

impl<'a> LazyMask<'a> {
    /// The lazy value.
    pub fn lazy(&self) -> &Lazy<'a, BooleanChunked> {
        &self.inner
    }

    /// The lazy value, unwrapped.
    pub fn into_lazy(self) -> Lazy<'a, BooleanChunked> {
        self.inner
    }
}

/// The four ownership forms of a column-column operator and the two of a
/// column-scalar one, all recording the same stub.
macro_rules! operators {
    ($($trait:ident $method:ident $stub:ident $scalar_stub:ident;)*) => {$(
        impl<'a> std::ops::$trait<&LazySeries<'a>> for &LazySeries<'a> {
            type Output = LazySeries<'a>;
            fn $method(self, rhs: &LazySeries<'a>) -> LazySeries<'a> {
                LazySeries::from_lazy(ops::$stub(&self.inner, &rhs.inner))
            }
        }
        impl<'a> std::ops::$trait<LazySeries<'a>> for &LazySeries<'a> {
            type Output = LazySeries<'a>;
            fn $method(self, rhs: LazySeries<'a>) -> LazySeries<'a> {
                self.$method(&rhs)
            }
        }
        impl<'a> std::ops::$trait<&LazySeries<'a>> for LazySeries<'a> {
            type Output = LazySeries<'a>;
            fn $method(self, rhs: &LazySeries<'a>) -> LazySeries<'a> {
                (&self).$method(rhs)
            }
        }
        impl<'a> std::ops::$trait<LazySeries<'a>> for LazySeries<'a> {
            type Output = LazySeries<'a>;
            fn $method(self, rhs: LazySeries<'a>) -> LazySeries<'a> {
                (&self).$method(&rhs)
            }
        }
        impl<'a> std::ops::$trait<f64> for &LazySeries<'a> {
            type Output = LazySeries<'a>;
            fn $method(self, rhs: f64) -> LazySeries<'a> {
                LazySeries::from_lazy(ops::$scalar_stub(&self.inner, rhs))
            }
        }
        impl<'a> std::ops::$trait<f64> for LazySeries<'a> {
            type Output = LazySeries<'a>;
            fn $method(self, rhs: f64) -> LazySeries<'a> {
                (&self).$method(rhs)
            }
        }
    )*};
}

operators! {
    Add add add add_scalar;
    Sub sub sub sub_scalar;
    Mul mul mul mul_scalar;
    Div div div div_scalar;
}

macro_rules! evaluate {
    ($($wrapper:ident $value:ty;)*) => {$(
        impl<'a> Evaluate for $wrapper<'a> {
            type Output = $value;
            fn targets(&self, out: &mut Vec<bach_runtime::__private::Target>) {
                self.inner.targets(out)
            }
            fn finish(
                self,
                values: &mut bach_runtime::__private::Values,
            ) -> bach_runtime::Result<$value> {
                self.inner.finish(values)
            }
        }

        impl<'r, 'a> Evaluate for &'r $wrapper<'a> {
            type Output = $value;
            fn targets(&self, out: &mut Vec<bach_runtime::__private::Target>) {
                self.inner.targets(out)
            }
            fn finish(
                self,
                values: &mut bach_runtime::__private::Values,
            ) -> bach_runtime::Result<$value> {
                (&self.inner).finish(values)
            }
        }
    )*};
}

evaluate! {
    LazySeries Float64Chunked;
    LazyMask BooleanChunked;
}
