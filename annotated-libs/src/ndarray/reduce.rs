//! Mergeable states of the reductions (`mean`, `var`, `std` and their axis forms)
//! and their split types: each batch computes a state, states merge in element
//! order, and a last whole call turns the merged state into ndarray's result.
//!
//! With a single batch every result is bit for bit ndarray's: the states are
//! computed with ndarray's own loops (`sum`, the running mean of `var`). With
//! several, only the order of combining partial results differs.

use std::ops::Range;

use bach_runtime::{Error, Reducible, SplitKind, SplitType};
use ndarray::{azip, Array1, Array2, Axis};

use super::Float;

/// A count as an element (as ndarray converts lengths: exact for any count that
/// fits in memory).
pub(super) fn float_count<T: Float>(n: usize) -> T {
    <T as num_traits::FromPrimitive>::from_usize(n).expect("a count as a float")
}

/// The sum and the count of elements (or rows) of a range: the state of `mean`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SumCount<V> {
    /// The sum of the elements (per column for axis reductions).
    pub sum: V,
    /// How many elements (rows) were summed.
    pub count: usize,
}

/// Count, running mean and sum of squared deviations from it (Welford's
/// algorithm, as ndarray's `var` computes it): the state of `var` and `std`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Welford<T> {
    /// Elements seen.
    pub count: usize,
    /// Their mean.
    pub mean: T,
    /// The sum of squared deviations from the mean.
    pub sum_sq: T,
}

impl<T: Float> Welford<T> {
    /// The state of the elements of `items`, with ndarray's `var` loop.
    pub fn of(items: impl IntoIterator<Item = T>) -> Self {
        let mut w = Welford {
            count: 0,
            mean: <T as num_traits::Zero>::zero(),
            sum_sq: <T as num_traits::Zero>::zero(),
        };
        for x in items {
            let count = float_count::<T>(w.count + 1);
            let delta = x - w.mean;
            w.mean = w.mean + delta / count;
            w.sum_sq = (x - w.mean).mul_add(delta, w.sum_sq);
            w.count += 1;
        }
        w
    }

    /// The state of two disjoint ranges, `self` first (Chan et al.'s formula).
    pub fn merge(self, other: Self) -> Self {
        if other.count == 0 {
            return self;
        }
        if self.count == 0 {
            return other;
        }
        let (na, nb) = (float_count::<T>(self.count), float_count::<T>(other.count));
        let n = na + nb;
        let delta = other.mean - self.mean;
        Welford {
            count: self.count + other.count,
            mean: self.mean + delta * (nb / n),
            sum_sq: self.sum_sq + other.sum_sq + delta * delta * (na * nb / n),
        }
    }

    /// The variance with `ddof` degrees of freedom removed, as ndarray's `var`
    /// (an error where ndarray panics: unless `0 <= ddof <= count`).
    pub fn var(&self, ddof: T) -> Result<T, ReductionError> {
        let n = float_count::<T>(self.count);
        check_ddof(ddof, n, self.count)?;
        Ok(self.sum_sq / (n - ddof))
    }
}

/// Per-column [`Welford`] states of the rows of a 2-D array: the state of
/// `var_axis(Axis(0), ddof)` and `std_axis(Axis(0), ddof)`.
#[derive(Debug, Clone, PartialEq)]
pub struct WelfordAxis0<T> {
    /// Rows seen.
    pub count: usize,
    /// Column means.
    pub mean: Array1<T>,
    /// Column sums of squared deviations.
    pub sum_sq: Array1<T>,
}

impl<T: Float> WelfordAxis0<T> {
    /// The state of the rows of `a`, with ndarray's `var_axis` loop.
    pub fn of(a: &Array2<T>) -> Self {
        let mut mean = Array1::<T>::zeros(a.ncols());
        let mut sum_sq = Array1::<T>::zeros(a.ncols());
        for (i, row) in a.axis_iter(Axis(0)).enumerate() {
            let count = float_count::<T>(i + 1);
            azip!((mean in &mut mean, sum_sq in &mut sum_sq, &x in &row) {
                let delta = x - *mean;
                *mean = *mean + delta / count;
                *sum_sq = (x - *mean).mul_add(delta, *sum_sq);
            });
        }
        WelfordAxis0 {
            count: a.nrows(),
            mean,
            sum_sq,
        }
    }

    /// The state of two disjoint row ranges, `self` first: each column's
    /// [`Welford::merge`].
    pub fn merge(self, other: Self) -> Self {
        if other.count == 0 {
            return self;
        }
        if self.count == 0 {
            return other;
        }
        let (na, nb) = (self.count, other.count);
        let mut mean = self.mean;
        let mut sum_sq = self.sum_sq;
        azip!((m in &mut mean, s in &mut sum_sq, &mb in &other.mean, &sb in &other.sum_sq) {
            let a = Welford { count: na, mean: *m, sum_sq: *s };
            let b = Welford { count: nb, mean: mb, sum_sq: sb };
            let merged = a.merge(b);
            (*m, *s) = (merged.mean, merged.sum_sq);
        });
        WelfordAxis0 {
            count: na + nb,
            mean,
            sum_sq,
        }
    }

    /// Column variances with `ddof` degrees of freedom removed (ndarray's `var_axis`;
    /// an error where it panics).
    pub fn var(&self, ddof: T) -> Result<Array1<T>, ReductionError> {
        let n = float_count::<T>(self.count);
        check_ddof(ddof, n, self.count)?;
        let dof = n - ddof;
        Ok(self.sum_sq.mapv(|s| s / dof))
    }
}

/// What the lazy reductions report where ndarray panics or returns `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReductionError {
    /// `unwrap` of a `None` mean: the array (or axis) was empty.
    Empty,
    /// `ddof` outside `0..=len` for `var` / `std`.
    DdofOutOfRange {
        /// The `ddof` given.
        ddof: f64,
        /// The length of the reduced axis.
        len: usize,
    },
}

impl std::fmt::Display for ReductionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReductionError::Empty => write!(f, "called `unwrap` on a `None` value: the mean of an empty array"),
            ReductionError::DdofOutOfRange { ddof, len } => write!(
                f,
                "`ddof` must not be less than zero or greater than the length of the axis (ddof {ddof}, length {len})"
            ),
        }
    }
}

impl std::error::Error for ReductionError {}

pub(super) fn check_ddof<T: Float>(ddof: T, n: T, len: usize) -> Result<(), ReductionError> {
    if ddof < <T as num_traits::Zero>::zero() || ddof > n || ddof.is_nan() {
        return Err(ReductionError::DdofOutOfRange {
            ddof: ddof.to_f64().unwrap_or(f64::NAN),
            len,
        });
    }
    Ok(())
}

/// The return split type of the reduction states: per-batch states merged in
/// element order.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateSplit;

impl<V: Reducible> SplitType<SumCount<V>> for StateSplit {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &SumCount<V>) -> Option<usize> {
        None
    }
    fn split(value: &SumCount<V>, _: Range<usize>) -> SumCount<V> {
        value.clone()
    }
    fn merge(pieces: Vec<SumCount<V>>) -> bach_runtime::Result<SumCount<V>> {
        let mut it = pieces.into_iter();
        let first = match it.next() {
            Some(first) => first,
            None => SumCount {
                sum: V::zero().ok_or(Error::EmptyReduction { op: "sum_count" })?,
                count: 0,
            },
        };
        Ok(it.fold(first, |acc, p| SumCount {
            sum: V::add(acc.sum, &p.sum),
            count: acc.count + p.count,
        }))
    }
}

impl<T: Float> SplitType<Welford<T>> for StateSplit {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &Welford<T>) -> Option<usize> {
        None
    }
    fn split(value: &Welford<T>, _: Range<usize>) -> Welford<T> {
        *value
    }
    fn merge(pieces: Vec<Welford<T>>) -> bach_runtime::Result<Welford<T>> {
        Ok(pieces.into_iter().fold(Welford::of(None), Welford::merge))
    }
}

impl<T: Float> SplitType<WelfordAxis0<T>> for StateSplit {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &WelfordAxis0<T>) -> Option<usize> {
        None
    }
    fn split(value: &WelfordAxis0<T>, _: Range<usize>) -> WelfordAxis0<T> {
        value.clone()
    }
    fn merge(pieces: Vec<WelfordAxis0<T>>) -> bach_runtime::Result<WelfordAxis0<T>> {
        let mut it = pieces.into_iter();
        let first = it.next().ok_or(Error::EmptyReduction { op: "var_axis" })?;
        Ok(it.fold(first, WelfordAxis0::merge))
    }
}

// ---- the last, whole step of each reduction ----------------------------------------------

/// The mean from its state (ndarray's `mean`: `None` for no elements).
pub fn mean_of<T: Float>(s: SumCount<T>) -> Option<T> {
    (s.count > 0).then(|| s.sum / float_count::<T>(s.count))
}

/// The variance from its state (ndarray's `var(ddof)`).
pub fn var_of<T: Float>(w: Welford<T>, ddof: T) -> Result<T, ReductionError> {
    w.var(ddof)
}

/// The standard deviation from its state (ndarray's `std(ddof)`).
pub fn std_of<T: Float>(w: Welford<T>, ddof: T) -> Result<T, ReductionError> {
    Ok(w.var(ddof)?.sqrt())
}

/// Column means from their state (ndarray's `mean_axis(Axis(0))`: `None` for no rows).
pub fn mean_axis0_of<T: Float>(s: &SumCount<Array1<T>>) -> Option<Array1<T>> {
    (s.count > 0).then(|| &s.sum / float_count::<T>(s.count))
}

/// Column variances from their state (ndarray's `var_axis(Axis(0), ddof)`).
pub fn var_axis0_of<T: Float>(w: &WelfordAxis0<T>, ddof: T) -> Result<Array1<T>, ReductionError> {
    w.var(ddof)
}

/// Column standard deviations from their state (ndarray's `std_axis(Axis(0), ddof)`).
pub fn std_axis0_of<T: Float>(w: &WelfordAxis0<T>, ddof: T) -> Result<Array1<T>, ReductionError> {
    Ok(w.var(ddof)?.mapv(|v| v.sqrt()))
}

/// The value of a `Some`; `None` is [`ReductionError::Empty`] (`Option::unwrap`
/// on a lazy option).
pub fn unwrap<V: Clone>(o: &Option<V>) -> Result<V, ReductionError> {
    o.clone().ok_or(ReductionError::Empty)
}
