//! A plain NumPy-style library over [`ndarray`].
//!
//! This module is "the CPU library a user has today": eager, single-threaded,
//! and entirely unaware of Bach or any lazy runtime. Every function is a free
//! `pub fn` generic over one [`Float`] type (`f32` or `f64`), takes arrays as
//! `&Array1<T>` (masks as `&Array1<bool>`), scalars by value, and returns
//! owned, standard-layout (contiguous) results. The lazy module
//! `annotated_libs::numpy` wraps each function here 1:1 with the same
//! signature, so a workload written against `cpu::numpy as np` compiles
//! unchanged against the lazy one (see [`Array`] and [`Mask`]).
//!
//! # NumPy semantics
//!
//! The functions follow NumPy's behaviour for IEEE-754 edge cases:
//!
//! - Elementwise arithmetic never panics on values: `x / 0.0` is `±inf`
//!   (or NaN for `0.0 / 0.0`), `sqrt`/`log` of a negative number is NaN,
//!   `log(0.0)` is `-inf`, `arcsin(2.0)` is NaN, and NaN propagates.
//! - Array-array operations require equal lengths (there is no broadcasting
//!   between arrays; array-scalar variants cover the scalar case). Unequal
//!   lengths panic with a message like `"add: operands have lengths 3 and 4"`,
//!   the analogue of NumPy's broadcast error.
//! - [`minimum`] / [`maximum`] (and [`min`] / [`max`]) propagate NaN: if
//!   either operand is NaN the result is NaN (unlike `f64::min`).
//! - Comparisons with NaN are `false`, except [`not_equal`], which is `true`.
//! - [`sum`] of an empty array is `0`; [`mean`] and [`std`](fn@std) of an empty array
//!   are NaN; [`min`] / [`max`] of an empty array panic with
//!   `"min: zero-size array to reduction operation which has no identity"`
//!   (resp. `max: ...`), like NumPy's `ValueError`.
//! - [`sum`] uses NumPy's pairwise summation; [`mean`] is `sum / n`; [`std`](fn@std)
//!   is the population standard deviation (`ddof = 0`) computed in two passes
//!   (`sqrt(sum((x - mean)^2) / n)`), as NumPy does.
//! - Axis-0 reductions of a 2-D array (`a.sum(axis=0)` etc.) accumulate rows
//!   in order and return one value per column.
//!
//! For parallel reductions, [`Moments`] / [`MomentsAxis0`] are mergeable
//! partial states (count, mean, sum of squared deviations) combined with the
//! Chan et al. parallel formula.

use ndarray::{Array1, Array2, ArrayView1, Zip};

/// A 1-D array of `T`. The lifetime is unused on purpose: the lazy module
/// exports an `Array<'a, T>` with a lifetime, so the same workload source
/// compiles against both.
pub type Array<'a, T> = ndarray::Array1<T>;

/// A 1-D boolean mask. The lifetime is unused on purpose (see [`Array`]).
pub type Mask<'a> = ndarray::Array1<bool>;

/// The floating-point element types supported by this library (`f32`, `f64`).
pub trait Float:
    num_traits::Float + Send + Sync + 'static + std::fmt::Debug + std::fmt::Display + Default + Copy
{
    /// The NumPy name of the dtype: `"f32"` or `"f64"`.
    const DTYPE: &'static str;

    /// The error function, computed with `libm`.
    fn erf(self) -> Self;
}

impl Float for f32 {
    const DTYPE: &'static str = "f32";

    #[inline]
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Float for f64 {
    const DTYPE: &'static str = "f64";

    #[inline]
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

// ---------------------------------------------------------------------------
// Internal helpers
// ---------------------------------------------------------------------------

/// Panics with NumPy-like wording when two operands have different lengths.
#[inline]
#[track_caller]
fn check_len(op: &str, a: usize, b: usize) {
    if a != b {
        panic!("{op}: operands have lengths {a} and {b}");
    }
}

/// Panics with NumPy's message for a reduction without identity over nothing.
#[cold]
#[track_caller]
fn no_identity(op: &str) -> ! {
    panic!("{op}: zero-size array to reduction operation which has no identity");
}

/// Elementwise map of one array into a new standard-layout array.
///
/// `Zip::map_collect` always allocates a fresh contiguous output, unlike
/// `mapv`, which keeps the input's (possibly negative) strides.
#[inline]
fn map1<A: Copy, B>(a: &Array1<A>, f: impl Fn(A) -> B) -> Array1<B> {
    Zip::from(a).map_collect(|&x| f(x))
}

/// Elementwise map of two equal-length arrays into a new standard-layout array.
#[inline]
#[track_caller]
fn map2<A: Copy, B: Copy, C>(
    op: &str,
    a: &Array1<A>,
    b: &Array1<B>,
    f: impl Fn(A, B) -> C,
) -> Array1<C> {
    check_len(op, a.len(), b.len());
    Zip::from(a).and(b).map_collect(|&x, &y| f(x, y))
}

/// Converts a count to `T` (exact for any count that fits in memory).
#[inline]
fn cast_count<T: Float>(n: usize) -> T {
    <T as num_traits::NumCast>::from(n).expect("count representable as float")
}

/// NaN-propagating minimum of two values (NumPy `np.minimum`: of two equal
/// operands, such as -0.0 and 0.0, the second).
#[inline]
fn min2<T: Float>(x: T, y: T) -> T {
    if x.is_nan() || x < y {
        x
    } else {
        y
    }
}

/// NaN-propagating maximum of two values (NumPy `np.maximum`: of two equal
/// operands, the second).
#[inline]
fn max2<T: Float>(x: T, y: T) -> T {
    if x.is_nan() || x > y {
        x
    } else {
        y
    }
}

/// Block size below which pairwise summation switches to an 8-way unrolled
/// loop (NumPy's `PW_BLOCKSIZE`).
const PW_BLOCKSIZE: usize = 128;

/// NumPy's pairwise summation of `f(x)` over a slice.
fn pairwise_sum<T: Float>(s: &[T], f: &impl Fn(T) -> T) -> T {
    let n = s.len();
    if n < 8 {
        let mut res = T::zero();
        for &x in s {
            res = res + f(x);
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let mut r = [T::zero(); 8];
        for (rj, &x) in r.iter_mut().zip(&s[..8]) {
            *rj = f(x);
        }
        let whole = n - n % 8;
        for chunk in s[8..whole].chunks_exact(8) {
            for (rj, &x) in r.iter_mut().zip(chunk) {
                *rj = *rj + f(x);
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &s[whole..] {
            res = res + f(x);
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&s[..n2], f) + pairwise_sum(&s[n2..], f)
    }
}

/// Pairwise sum of `f(x)` over a 1-D view of any layout.
fn pairwise_sum_view<T: Float>(a: ArrayView1<'_, T>, f: impl Fn(T) -> T) -> T {
    match a.as_slice() {
        Some(s) => pairwise_sum(s, &f),
        None => {
            let v: Vec<T> = a.iter().copied().collect();
            pairwise_sum(&v, &f)
        }
    }
}

// ---------------------------------------------------------------------------
// Binary arithmetic
// ---------------------------------------------------------------------------

/// Elementwise `a + b`. Panics if the lengths differ.
#[track_caller]
pub fn add<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("add", a, b, |x, y| x + y)
}

/// Elementwise `a - b`. Panics if the lengths differ.
#[track_caller]
pub fn subtract<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("subtract", a, b, |x, y| x - y)
}

/// Elementwise `a * b`. Panics if the lengths differ.
#[track_caller]
pub fn multiply<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("multiply", a, b, |x, y| x * y)
}

/// Elementwise `a / b` (IEEE: `x / 0` is `±inf` or NaN). Panics if the lengths differ.
#[track_caller]
pub fn divide<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("divide", a, b, |x, y| x / y)
}

/// Elementwise `a + s`.
pub fn add_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| x + s)
}

/// Elementwise `a - s`.
pub fn subtract_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| x - s)
}

/// Elementwise `a * s`.
pub fn multiply_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| x * s)
}

/// Elementwise `a / s`.
pub fn divide_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| x / s)
}

/// Elementwise `s + a`.
pub fn scalar_add<T: Float>(s: T, a: &Array1<T>) -> Array1<T> {
    map1(a, |x| s + x)
}

/// Elementwise `s - a`.
pub fn scalar_subtract<T: Float>(s: T, a: &Array1<T>) -> Array1<T> {
    map1(a, |x| s - x)
}

/// Elementwise `s * a`.
pub fn scalar_multiply<T: Float>(s: T, a: &Array1<T>) -> Array1<T> {
    map1(a, |x| s * x)
}

/// Elementwise `s / a`.
pub fn scalar_divide<T: Float>(s: T, a: &Array1<T>) -> Array1<T> {
    map1(a, |x| s / x)
}

/// Elementwise `a ** b`, always via `powf` (so results match a GPU `pow`).
/// Panics if the lengths differ.
#[track_caller]
pub fn power<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("power", a, b, |x, y| x.powf(y))
}

/// Elementwise `a ** s`, always via `powf`, even for integral `s` (so results
/// match a GPU `pow`).
pub fn power_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| x.powf(s))
}

/// Elementwise NaN-propagating minimum (`np.minimum`): NaN if either is NaN.
/// Panics if the lengths differ.
#[track_caller]
pub fn minimum<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("minimum", a, b, min2)
}

/// Elementwise NaN-propagating maximum (`np.maximum`): NaN if either is NaN.
/// Panics if the lengths differ.
#[track_caller]
pub fn maximum<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T> {
    map2("maximum", a, b, max2)
}

/// Elementwise NaN-propagating `np.minimum(a, s)`.
pub fn minimum_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| min2(x, s))
}

/// Elementwise NaN-propagating `np.maximum(a, s)`.
pub fn maximum_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<T> {
    map1(a, |x| max2(x, s))
}

// ---------------------------------------------------------------------------
// Unary
// ---------------------------------------------------------------------------

/// Elementwise `-a`.
pub fn negative<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| -x)
}

/// Elementwise absolute value.
pub fn abs<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.abs())
}

/// Elementwise square root (NaN for negative inputs).
pub fn sqrt<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.sqrt())
}

/// Elementwise `e^x`.
pub fn exp<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.exp())
}

/// Elementwise natural logarithm (`log(0) = -inf`, NaN for negative inputs).
pub fn log<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.ln())
}

/// Elementwise base-2 logarithm.
pub fn log2<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.log2())
}

/// Elementwise base-10 logarithm.
pub fn log10<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.log10())
}

/// Elementwise sine.
pub fn sin<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.sin())
}

/// Elementwise cosine.
pub fn cos<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.cos())
}

/// Elementwise tangent.
pub fn tan<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.tan())
}

/// Elementwise inverse sine (NaN outside `[-1, 1]`).
pub fn arcsin<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.asin())
}

/// Elementwise inverse cosine (NaN outside `[-1, 1]`).
pub fn arccos<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.acos())
}

/// Elementwise inverse tangent.
pub fn arctan<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x.atan())
}

/// Elementwise error function (via `libm`).
pub fn erf<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, Float::erf)
}

/// Elementwise `a * a`.
pub fn square<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x * x)
}

// ---------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------

/// Elementwise `a > b` (false where either is NaN). Panics if the lengths differ.
#[track_caller]
pub fn greater<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool> {
    map2("greater", a, b, |x, y| x > y)
}

/// Elementwise `a < b` (false where either is NaN). Panics if the lengths differ.
#[track_caller]
pub fn less<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool> {
    map2("less", a, b, |x, y| x < y)
}

/// Elementwise `a >= b` (false where either is NaN). Panics if the lengths differ.
#[track_caller]
pub fn greater_equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool> {
    map2("greater_equal", a, b, |x, y| x >= y)
}

/// Elementwise `a <= b` (false where either is NaN). Panics if the lengths differ.
#[track_caller]
pub fn less_equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool> {
    map2("less_equal", a, b, |x, y| x <= y)
}

/// Elementwise `a == b` (false where either is NaN). Panics if the lengths differ.
#[track_caller]
pub fn equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool> {
    map2("equal", a, b, |x, y| x == y)
}

/// Elementwise `a != b` (true where either is NaN). Panics if the lengths differ.
#[track_caller]
pub fn not_equal<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<bool> {
    map2("not_equal", a, b, |x, y| x != y)
}

/// Elementwise `a > s` (false where `a` or `s` is NaN).
pub fn greater_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool> {
    map1(a, |x| x > s)
}

/// Elementwise `a < s` (false where `a` or `s` is NaN).
pub fn less_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool> {
    map1(a, |x| x < s)
}

/// Elementwise `a >= s` (false where `a` or `s` is NaN).
pub fn greater_equal_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool> {
    map1(a, |x| x >= s)
}

/// Elementwise `a <= s` (false where `a` or `s` is NaN).
pub fn less_equal_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool> {
    map1(a, |x| x <= s)
}

/// Elementwise `a == s` (false where `a` or `s` is NaN).
pub fn equal_scalar<T: Float>(a: &Array1<T>, s: T) -> Array1<bool> {
    map1(a, |x| x == s)
}

// ---------------------------------------------------------------------------
// Masks
// ---------------------------------------------------------------------------

/// Elementwise `a && b`. Panics if the lengths differ.
#[track_caller]
pub fn logical_and(a: &Array1<bool>, b: &Array1<bool>) -> Array1<bool> {
    map2("logical_and", a, b, |x, y| x && y)
}

/// Elementwise `a || b`. Panics if the lengths differ.
#[track_caller]
pub fn logical_or(a: &Array1<bool>, b: &Array1<bool>) -> Array1<bool> {
    map2("logical_or", a, b, |x, y| x || y)
}

/// Elementwise `!a`.
pub fn logical_not(a: &Array1<bool>) -> Array1<bool> {
    map1(a, |x| !x)
}

/// `np.where(cond, x, y)`: `x` where `cond` is true, else `y`.
/// Panics if the lengths differ.
#[track_caller]
pub fn where_<T: Float>(cond: &Array1<bool>, x: &Array1<T>, y: &Array1<T>) -> Array1<T> {
    check_len("where_", cond.len(), x.len());
    check_len("where_", x.len(), y.len());
    Zip::from(cond)
        .and(x)
        .and(y)
        .map_collect(|&c, &xv, &yv| if c { xv } else { yv })
}

/// `np.where(cond, x, s)`: `x` where `cond` is true, else the scalar `s`.
/// Panics if the lengths differ.
#[track_caller]
pub fn where_scalar<T: Float>(cond: &Array1<bool>, x: &Array1<T>, s: T) -> Array1<T> {
    map2("where_scalar", cond, x, |c, xv| if c { xv } else { s })
}

/// pandas `Series.mask(cond, value)`: `value` where `cond` is true, else `a`.
/// Panics if the lengths differ.
#[track_caller]
pub fn mask<T: Float>(a: &Array1<T>, cond: &Array1<bool>, value: T) -> Array1<T> {
    map2("mask", a, cond, |x, c| if c { value } else { x })
}

/// Number of `true` elements (`np.count_nonzero`).
pub fn count_nonzero(a: &Array1<bool>) -> usize {
    a.iter().filter(|&&x| x).count()
}

// ---------------------------------------------------------------------------
// Reductions over a 1-D array
// ---------------------------------------------------------------------------

/// Sum of all elements with NumPy's pairwise summation; `0` for an empty array.
pub fn sum<T: Float>(a: &Array1<T>) -> T {
    pairwise_sum_view(a.view(), |x| x)
}

/// Arithmetic mean (`sum / n`); NaN for an empty array.
pub fn mean<T: Float>(a: &Array1<T>) -> T {
    if a.is_empty() {
        return T::nan();
    }
    sum(a) / cast_count(a.len())
}

/// Minimum element; NaN if any element is NaN.
///
/// # Panics
/// On an empty array, with
/// `"min: zero-size array to reduction operation which has no identity"`.
#[track_caller]
pub fn min<T: Float>(a: &Array1<T>) -> T {
    let mut it = a.iter().copied();
    let Some(first) = it.next() else {
        no_identity("min")
    };
    it.fold(first, min2)
}

/// Maximum element; NaN if any element is NaN.
///
/// # Panics
/// On an empty array, with
/// `"max: zero-size array to reduction operation which has no identity"`.
#[track_caller]
pub fn max<T: Float>(a: &Array1<T>) -> T {
    let mut it = a.iter().copied();
    let Some(first) = it.next() else {
        no_identity("max")
    };
    it.fold(first, max2)
}

/// Population standard deviation (`ddof = 0`), two-pass; NaN for an empty array.
pub fn std<T: Float>(a: &Array1<T>) -> T {
    moments(a).std()
}

// ---------------------------------------------------------------------------
// Reductions along axis 0 of a 2-D array
// ---------------------------------------------------------------------------

/// `a.sum(axis=0)`: per-column sum (rows added in order); zeros when there are no rows.
pub fn sum_axis0<T: Float>(a: &Array2<T>) -> Array1<T> {
    let mut acc = Array1::<T>::zeros(a.ncols());
    for row in a.rows() {
        Zip::from(&mut acc).and(row).for_each(|s, &x| *s = *s + x);
    }
    acc
}

/// `a.mean(axis=0)`: per-column mean; NaN columns when there are no rows.
pub fn mean_axis0<T: Float>(a: &Array2<T>) -> Array1<T> {
    if a.nrows() == 0 {
        return Array1::from_elem(a.ncols(), T::nan());
    }
    let n: T = cast_count(a.nrows());
    let mut s = sum_axis0(a);
    s.mapv_inplace(|x| x / n);
    s
}

/// Folds the rows of `a` with `f`, starting from (a contiguous copy of) the first row.
#[track_caller]
fn fold_rows<T: Float>(op: &str, a: &Array2<T>, f: fn(T, T) -> T) -> Array1<T> {
    let mut rows = a.rows().into_iter();
    let Some(first) = rows.next() else {
        no_identity(op)
    };
    let mut acc = Zip::from(first).map_collect(|&x| x);
    for row in rows {
        Zip::from(&mut acc).and(row).for_each(|m, &x| *m = f(*m, x));
    }
    acc
}

/// `a.min(axis=0)`: per-column minimum; NaN propagates.
///
/// # Panics
/// When `a` has zero rows, with
/// `"min: zero-size array to reduction operation which has no identity"`.
#[track_caller]
pub fn min_axis0<T: Float>(a: &Array2<T>) -> Array1<T> {
    fold_rows("min", a, min2)
}

/// `a.max(axis=0)`: per-column maximum; NaN propagates.
///
/// # Panics
/// When `a` has zero rows, with
/// `"max: zero-size array to reduction operation which has no identity"`.
#[track_caller]
pub fn max_axis0<T: Float>(a: &Array2<T>) -> Array1<T> {
    fold_rows("max", a, max2)
}

/// `a.std(axis=0)`: per-column population standard deviation (two-pass);
/// NaN columns when there are no rows.
pub fn std_axis0<T: Float>(a: &Array2<T>) -> Array1<T> {
    moments_axis0(a).std()
}

// ---------------------------------------------------------------------------
// Mergeable moments
// ---------------------------------------------------------------------------

/// The mean of two chunks' means `ma`, `mb` (sizes `na`, `nb`, `n = na + nb`;
/// `delta = mb - ma`). Where `delta` overflows or is infinite (a chunk of
/// infinities), weighs the means directly instead, so that `inf` mixed with
/// finite values stays `inf` and `+inf` with `-inf` is NaN, as in NumPy.
fn merged_mean<T: Float>(ma: T, mb: T, delta: T, na: T, nb: T, n: T) -> T {
    if delta.is_finite() {
        ma + delta * (nb / n)
    } else {
        ma * (na / n) + mb * (nb / n)
    }
}

/// Mergeable partial state of a 1-D mean/variance reduction: element count,
/// mean, and `m2 = sum((x - mean)^2)`.
///
/// States of disjoint chunks combine with [`Moments::merge`] (Chan et al.),
/// so a parallel runtime can reduce chunks independently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments<T> {
    /// Number of elements.
    pub count: usize,
    /// Mean of the elements (`0` when `count` is 0).
    pub mean: T,
    /// Sum of squared deviations from the mean (`0` when `count` is 0).
    pub m2: T,
}

impl<T: Float> Moments<T> {
    /// The state of an empty array: the identity of [`Moments::merge`].
    pub fn empty() -> Self {
        Moments {
            count: 0,
            mean: T::zero(),
            m2: T::zero(),
        }
    }

    /// Combines the states of two disjoint chunks (Chan et al. parallel
    /// formula). Merging with an empty side returns the other side exactly.
    pub fn merge(self, other: Self) -> Self {
        if other.count == 0 {
            return self;
        }
        if self.count == 0 {
            return other;
        }
        let count = self.count + other.count;
        let na: T = cast_count(self.count);
        let nb: T = cast_count(other.count);
        let n: T = cast_count(count);
        let delta = other.mean - self.mean;
        Moments {
            count,
            mean: merged_mean(self.mean, other.mean, delta, na, nb, n),
            m2: self.m2 + other.m2 + delta * delta * (na * nb / n),
        }
    }

    /// The mean; NaN when `count` is 0.
    pub fn mean(&self) -> T {
        if self.count == 0 {
            T::nan()
        } else {
            self.mean
        }
    }

    /// The population variance `m2 / count`; NaN when `count` is 0.
    pub fn variance(&self) -> T {
        if self.count == 0 {
            T::nan()
        } else {
            self.m2 / cast_count(self.count)
        }
    }

    /// The population standard deviation; NaN when `count` is 0.
    pub fn std(&self) -> T {
        self.variance().sqrt()
    }
}

/// The [`Moments`] of a 1-D array, computed in two passes (pairwise sums), so
/// `moments(a).mean()` and `moments(a).std()` equal [`mean`] and [`std`](fn@std) exactly.
pub fn moments<T: Float>(a: &Array1<T>) -> Moments<T> {
    if a.is_empty() {
        return Moments::empty();
    }
    let m = mean(a);
    let m2 = pairwise_sum_view(a.view(), |x| {
        let d = x - m;
        d * d
    });
    Moments {
        count: a.len(),
        mean: m,
        m2,
    }
}

/// The mean of a [`Moments`] state (NaN when empty); a free-function form of
/// [`Moments::mean`].
pub fn moments_mean<T: Float>(m: Moments<T>) -> T {
    m.mean()
}

/// The population standard deviation of a [`Moments`] state (NaN when
/// empty); a free-function form of [`Moments::std`].
pub fn moments_std<T: Float>(m: Moments<T>) -> T {
    m.std()
}

/// Mergeable per-column partial state of an axis-0 mean/variance reduction
/// of a 2-D array: row count, per-column mean and per-column `m2`.
#[derive(Clone, Debug, PartialEq)]
pub struct MomentsAxis0<T> {
    /// Number of rows.
    pub count: usize,
    /// Per-column mean (zeros when `count` is 0).
    pub mean: Array1<T>,
    /// Per-column sum of squared deviations (zeros when `count` is 0).
    pub m2: Array1<T>,
}

impl<T: Float> MomentsAxis0<T> {
    /// The identity of [`MomentsAxis0::merge`]: zero rows and zero columns.
    /// (Any state with `count == 0` acts as an identity.)
    pub fn empty() -> Self {
        MomentsAxis0 {
            count: 0,
            mean: Array1::zeros(0),
            m2: Array1::zeros(0),
        }
    }

    /// Combines the states of two disjoint row blocks (Chan et al., per
    /// column). Merging with an empty side returns the other side exactly.
    ///
    /// # Panics
    /// If both sides are non-empty and have different column counts.
    #[track_caller]
    pub fn merge(self, other: Self) -> Self {
        if other.count == 0 {
            return self;
        }
        if self.count == 0 {
            return other;
        }
        check_len("MomentsAxis0::merge", self.mean.len(), other.mean.len());
        let count = self.count + other.count;
        let na: T = cast_count(self.count);
        let nb: T = cast_count(other.count);
        let n: T = cast_count(count);
        let wab = na * nb / n;
        let mean = Zip::from(&self.mean)
            .and(&other.mean)
            .map_collect(|&ma, &mb| merged_mean(ma, mb, mb - ma, na, nb, n));
        let m2 = Zip::from(&self.mean)
            .and(&other.mean)
            .and(&self.m2)
            .and(&other.m2)
            .map_collect(|&ma, &mb, &m2a, &m2b| {
                let d = mb - ma;
                m2a + m2b + d * d * wab
            });
        MomentsAxis0 { count, mean, m2 }
    }

    /// Per-column mean; all NaN when `count` is 0.
    pub fn mean(&self) -> Array1<T> {
        if self.count == 0 {
            Array1::from_elem(self.mean.len(), T::nan())
        } else {
            self.mean.clone()
        }
    }

    /// Per-column population variance `m2 / count`; all NaN when `count` is 0.
    pub fn variance(&self) -> Array1<T> {
        if self.count == 0 {
            return Array1::from_elem(self.m2.len(), T::nan());
        }
        let n: T = cast_count(self.count);
        map1(&self.m2, |x| x / n)
    }

    /// Per-column population standard deviation; all NaN when `count` is 0.
    pub fn std(&self) -> Array1<T> {
        let mut v = self.variance();
        v.mapv_inplace(|x| x.sqrt());
        v
    }
}

/// The [`MomentsAxis0`] of a 2-D array (two passes over the rows), so its
/// `mean()` / `std()` equal [`mean_axis0`] / [`std_axis0`] exactly.
pub fn moments_axis0<T: Float>(a: &Array2<T>) -> MomentsAxis0<T> {
    let cols = a.ncols();
    if a.nrows() == 0 {
        return MomentsAxis0 {
            count: 0,
            mean: Array1::zeros(cols),
            m2: Array1::zeros(cols),
        };
    }
    let m = mean_axis0(a);
    let mut m2 = Array1::<T>::zeros(cols);
    for row in a.rows() {
        Zip::from(&mut m2).and(&m).and(row).for_each(|s, &mu, &x| {
            let d = x - mu;
            *s = *s + d * d;
        });
    }
    MomentsAxis0 {
        count: a.nrows(),
        mean: m,
        m2,
    }
}

// ---------------------------------------------------------------------------
// Allocation
// ---------------------------------------------------------------------------

/// An array of `n` zeros.
pub fn zeros<T: Float>(n: usize) -> Array1<T> {
    Array1::from_elem(n, T::zero())
}

/// An array of `n` ones.
pub fn ones<T: Float>(n: usize) -> Array1<T> {
    Array1::from_elem(n, T::one())
}

/// An array of `n` copies of `value`.
pub fn full<T: Float>(n: usize, value: T) -> Array1<T> {
    Array1::from_elem(n, value)
}

/// `np.empty(n)`, made safe: the contents are unspecified by contract, but
/// this implementation returns zeros (no uninitialised memory is exposed).
pub fn empty<T: Float>(n: usize) -> Array1<T> {
    zeros(n)
}

/// A `rows x cols` 2-D array of zeros (standard layout).
pub fn zeros_2d<T: Float>(rows: usize, cols: usize) -> Array2<T> {
    Array2::from_elem((rows, cols), T::zero())
}

/// A standard-layout copy of `a`.
pub fn copy<T: Float>(a: &Array1<T>) -> Array1<T> {
    map1(a, |x| x)
}

// ---------------------------------------------------------------------------
// Writing into an output array (NumPy's `out=`)
// ---------------------------------------------------------------------------

/// Writes `a + b` into `out` (NumPy `np.add(a, b, out=out)`).
///
/// # Panics
/// When the three lengths differ.
pub fn add_into<T: Float>(a: &Array1<T>, b: &Array1<T>, out: &mut Array1<T>) {
    check_len("add_into", a.len(), b.len());
    check_len("add_into", a.len(), out.len());
    Zip::from(out)
        .and(a)
        .and(b)
        .for_each(|o, &x, &y| *o = x + y);
}

/// Writes `a * b` into `out` (NumPy `np.multiply(a, b, out=out)`).
///
/// # Panics
/// When the three lengths differ.
pub fn multiply_into<T: Float>(a: &Array1<T>, b: &Array1<T>, out: &mut Array1<T>) {
    check_len("multiply_into", a.len(), b.len());
    check_len("multiply_into", a.len(), out.len());
    Zip::from(out)
        .and(a)
        .and(b)
        .for_each(|o, &x, &y| *o = x * y);
}

/// Sets every element of `out` to `value` (NumPy `out.fill(value)`).
pub fn fill<T: Float>(out: &mut Array1<T>, value: T) {
    out.fill(value);
}
