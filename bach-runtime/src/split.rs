//! Split types: how a value is cut into pieces for a range of elements, and how
//! pieces are merged back.
//!
//! A split type is a marker type implementing [`SplitType<T>`] for the value
//! types it can split. The runtime only sees split types through a
//! [`SplitVTable`], built once per (split type, value type) pair, so planning and
//! execution work on type-erased values.
//!
//! Three kinds exist ([`SplitKind`]):
//! - **partition** split types ([`NdArraySplit`], [`SizeSplit`]) cut a value into
//!   disjoint element ranges; a piece for range `r` has `r.len()` elements, and
//!   merging concatenates;
//! - **broadcast** ([`Broadcast`]): every piece is the whole value (scalars,
//!   parameters);
//! - **reduce** split types ([`SumSplit`], [`MinSplit`], [`MaxSplit`],
//!   [`CountSplit`]) describe return values: each piece is a partial result of
//!   a range, and merging combines partials. As an argument they broadcast.

use std::any::{Any, TypeId};
use std::mem::MaybeUninit;
use std::ops::Range;

use ndarray::{Array, Array1, Axis, Dimension, RemoveAxis};

use crate::error::{Error, Result};
use crate::value::{Piece, Value};

/// What a split type does to the element range (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitKind {
    /// The whole value goes to every piece.
    Broadcast,
    /// The value is cut into disjoint element ranges.
    Partition,
    /// Pieces are partial results combined by `merge`.
    Reduce,
}

/// How a value of type `T` is split into pieces and merged back.
///
/// Implementations must be consistent: for a partition split type,
/// `merge(split(v, r1), split(v, r2), ...)` over ranges that tile
/// `0..elements(v)` gives back `v`. Merge must be associative.
pub trait SplitType<T>: 'static {
    /// What the split type does to the element range.
    const KIND: SplitKind;

    /// Number of elements of `value` along the split dimension; `None` when the
    /// value is not split (broadcast and reduce split types).
    fn elements(value: &T) -> Option<usize>;

    /// The piece of `value` for the element range `range`
    /// (for non-partition split types: a copy of the whole value).
    fn split(value: &T, range: Range<usize>) -> T;

    /// Merges pieces, given in element order, into one value.
    /// Reduce split types define what merging zero pieces gives (sum: 0; max: an error).
    fn merge(pieces: Vec<T>) -> Result<T>;

    /// Bytes one element along the split dimension holds (a matrix's row:
    /// its width times the element size), for partition split types. It sizes
    /// CPU batches, so that a batch of wide elements still fits the cache.
    /// `None` (the default): one number, 8 bytes.
    fn element_bytes(_value: &T) -> Option<usize> {
        None
    }

    /// Optional fast path for partition split types: allocate the merged value
    /// for `total` elements (shaped like `sample`) so that pieces are written in
    /// place as they are computed, instead of kept and concatenated.
    fn assembler(_total: usize, _sample: &T) -> Option<Box<dyn Assembler<T>>> {
        None
    }
}

/// Writes pieces into a preallocated merged value (see [`SplitType::assembler`]).
pub trait Assembler<T>: Send + Sync {
    /// Writes `piece`, the piece for `range`, into the merged value.
    ///
    /// # Safety
    /// Calls from several threads at once are allowed only for disjoint ranges,
    /// and every range must lie in `0..total`.
    unsafe fn write(&self, range: Range<usize>, piece: &T) -> Result<(), usize>;
    /// The merged value.
    ///
    /// # Safety
    /// Every element range of `0..total` has been written exactly once.
    unsafe fn finish(self: Box<Self>) -> T;
    /// The merged value's memory for `range` as bytes, when its elements are
    /// plain numbers that any bit pattern makes valid (`f32`, `f64`), so that
    /// a device can download straight into it. `None`: write pieces instead.
    ///
    /// # Safety
    /// As [`Assembler::write`]: disjoint ranges within `0..total`; the bytes
    /// must be fully written before [`Assembler::finish`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn pod_bytes(&self, _range: Range<usize>) -> Option<&mut [u8]> {
        None
    }
}

/// The whole value goes to every piece. The default for scalar parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Broadcast;

impl<T: Value> SplitType<T> for Broadcast {
    const KIND: SplitKind = SplitKind::Broadcast;
    fn elements(_: &T) -> Option<usize> {
        None
    }
    fn split(value: &T, _: Range<usize>) -> T {
        value.clone()
    }
    fn merge(mut pieces: Vec<T>) -> Result<T> {
        // Every piece of a broadcast result is the same value; keep the first.
        match pieces.is_empty() {
            false => Ok(pieces.swap_remove(0)),
            true => Err(Error::internal("at least one piece of a broadcast value")),
        }
    }
}

/// A generic split type: an argument split by `Inherit` takes the split type
/// of the value that flows into it (the output split type of the call that
/// produced it), and a return value split by `Inherit` takes the split type of
/// the first such argument of the same type. For functions that work on any
/// splittable value (copies, selections, identity-like transforms). A value
/// that comes from outside the graph, with nothing to inherit, is broadcast.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inherit;

impl<T: Value> SplitType<T> for Inherit {
    const KIND: SplitKind = SplitKind::Broadcast;
    fn elements(_: &T) -> Option<usize> {
        None
    }
    fn split(value: &T, _: Range<usize>) -> T {
        value.clone()
    }
    fn merge(pieces: Vec<T>) -> Result<T> {
        <Broadcast as SplitType<T>>::merge(pieces)
    }
}

/// Splits arrays along their first axis: 1-D arrays into element ranges, 2-D
/// arrays into row ranges (and n-D arrays into ranges of their first index).
#[derive(Debug, Clone, Copy, Default)]
pub struct NdArraySplit;

impl<A: Clone + Send + Sync + 'static, D: RemoveAxis + 'static> SplitType<Array<A, D>>
    for NdArraySplit
{
    const KIND: SplitKind = SplitKind::Partition;
    fn elements(value: &Array<A, D>) -> Option<usize> {
        Some(value.len_of(Axis(0)))
    }
    fn element_bytes(value: &Array<A, D>) -> Option<usize> {
        let per_row: usize = value.shape().iter().skip(1).product();
        Some(per_row * std::mem::size_of::<A>())
    }
    fn split(value: &Array<A, D>, range: Range<usize>) -> Array<A, D> {
        value.slice_axis(Axis(0), range.into()).to_owned()
    }
    fn merge(pieces: Vec<Array<A, D>>) -> Result<Array<A, D>> {
        let Some(first) = pieces.first() else {
            // No pieces: an empty array (0 along every axis; the shape of a
            // zero-element result is not known without a piece).
            return Ok(
                Array::from_shape_vec(D::zeros(D::NDIM.unwrap_or(1)), Vec::new())
                    .expect("empty shape"),
            );
        };
        let row_shape = first.shape()[1..].to_vec();
        if pieces.iter().any(|p| p.shape()[1..] != row_shape[..]) {
            return Err(Error::internal(
                "pieces with equal shapes beyond the first axis",
            ));
        }
        let views: Vec<_> = pieces.iter().map(|p| p.view()).collect();
        Ok(ndarray::concatenate(Axis(0), &views).expect("equal shapes beyond the first axis"))
    }
    fn assembler(total: usize, sample: &Array<A, D>) -> Option<Box<dyn Assembler<Array<A, D>>>> {
        let mut shape = sample.raw_dim();
        shape[0] = total;
        Some(Box::new(ArrayAssembler::<A, D>::new(shape)))
    }
}

/// An uninitialised row-major buffer of an array's elements into which
/// disjoint ranges along the first axis are written from several threads.
struct ArrayAssembler<A, D> {
    buf: Vec<MaybeUninit<A>>,
    ptr: *mut MaybeUninit<A>,
    shape: D,
    /// Elements per index of the first axis (1 for 1-D arrays, columns for 2-D).
    row_len: usize,
}

// SAFETY: the buffer is only written through `ptr` at disjoint ranges (the
// caller's contract on `Assembler::write`), and read only in `finish`.
unsafe impl<A: Send, D: Send> Send for ArrayAssembler<A, D> {}
unsafe impl<A: Send, D: Sync> Sync for ArrayAssembler<A, D> {}

impl<A, D: Dimension> ArrayAssembler<A, D> {
    fn new(shape: D) -> Self {
        let row_len = shape.slice()[1..].iter().product();
        let len = shape.size();
        let mut buf = Vec::with_capacity(len);
        // SAFETY: MaybeUninit needs no initialisation.
        unsafe { buf.set_len(len) };
        let ptr = buf.as_mut_ptr();
        ArrayAssembler {
            buf,
            ptr,
            shape,
            row_len,
        }
    }

    fn rows(&self) -> usize {
        self.shape[0]
    }

    fn into_vec(self) -> Vec<A> {
        let mut buf = std::mem::ManuallyDrop::new(self.buf);
        // SAFETY: the caller of `finish` guarantees every element was written;
        // MaybeUninit<A> has the layout of A.
        unsafe { Vec::from_raw_parts(buf.as_mut_ptr() as *mut A, buf.len(), buf.capacity()) }
    }
}

impl<A: Clone + Send + Sync + 'static, D: RemoveAxis + 'static> Assembler<Array<A, D>>
    for ArrayAssembler<A, D>
{
    unsafe fn write(&self, range: Range<usize>, piece: &Array<A, D>) -> Result<(), usize> {
        let rows = piece.len_of(Axis(0));
        if piece.shape()[1..] != self.shape.slice()[1..]
            || rows != range.len()
            || range.end > self.rows()
        {
            return Err(rows);
        }
        let base = self.ptr.add(range.start * self.row_len);
        // `iter` walks in logical (row-major) order whatever the piece's layout.
        for (i, x) in piece.iter().enumerate() {
            (*base.add(i)).write(x.clone());
        }
        Ok(())
    }
    unsafe fn finish(self: Box<Self>) -> Array<A, D> {
        let shape = self.shape.clone();
        Array::from_shape_vec(shape, self.into_vec()).expect("every element of the shape")
    }
    unsafe fn pod_bytes(&self, range: Range<usize>) -> Option<&mut [u8]> {
        let pod =
            TypeId::of::<A>() == TypeId::of::<f64>() || TypeId::of::<A>() == TypeId::of::<f32>();
        if !pod || range.end > self.rows() {
            return None;
        }
        let size = std::mem::size_of::<A>();
        // SAFETY: the range lies in the buffer; the caller writes disjoint ranges;
        // every bit pattern is a valid f32/f64.
        Some(std::slice::from_raw_parts_mut(
            self.ptr.add(range.start * self.row_len) as *mut u8,
            range.len() * self.row_len * size,
        ))
    }
}

/// Splits an element count: the piece of `n` for a range is the range's length.
/// The split type of the size parameter of allocation functions (`zeros(n)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeSplit;

impl SplitType<usize> for SizeSplit {
    const KIND: SplitKind = SplitKind::Partition;
    fn elements(value: &usize) -> Option<usize> {
        Some(*value)
    }
    fn split(_: &usize, range: Range<usize>) -> usize {
        range.len()
    }
    fn merge(pieces: Vec<usize>) -> Result<usize> {
        Ok(pieces.into_iter().sum())
    }
}

/// A return value that is the sum of per-piece partial results (0 for no pieces).
#[derive(Debug, Clone, Copy, Default)]
pub struct SumSplit;

/// A return value that is the minimum of per-piece results; NaN propagates, and
/// zero pieces are an error, as in NumPy.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinSplit;

/// A return value that is the maximum of per-piece results; NaN propagates, and
/// zero pieces are an error, as in NumPy.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxSplit;

/// A return value that is a count (`usize`) of per-piece counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountSplit;

/// Values that [`SumSplit`], [`MinSplit`] and [`MaxSplit`] can combine:
/// scalars, and 1-D arrays combined elementwise (reductions along axis 0).
pub trait Reducible: Value {
    /// The additive identity shaped like nothing (scalars) or `None` where no
    /// shape is known (arrays with zero pieces).
    fn zero() -> Option<Self>;
    /// `a + b`.
    fn add(a: Self, b: &Self) -> Self;
    /// NaN-propagating minimum.
    fn min(a: Self, b: &Self) -> Self;
    /// NaN-propagating maximum.
    fn max(a: Self, b: &Self) -> Self;
}

macro_rules! reducible_float {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            fn zero() -> Option<Self> { Some(0.0) }
            fn add(a: Self, b: &Self) -> Self { a + *b }
            fn min(a: Self, b: &Self) -> Self { if a.is_nan() || a < *b { a } else { *b } }
            fn max(a: Self, b: &Self) -> Self { if a.is_nan() || a > *b { a } else { *b } }
        }
    )*};
}
reducible_float!(f32, f64);

/// Arrays reduce elementwise (reductions along axis 0 of a 2-D array).
impl<A: Reducible + Copy> Reducible for Array1<A> {
    fn zero() -> Option<Self> {
        None
    }
    fn add(mut a: Self, b: &Self) -> Self {
        a.zip_mut_with(b, |x, y| *x = A::add(*x, y));
        a
    }
    fn min(mut a: Self, b: &Self) -> Self {
        a.zip_mut_with(b, |x, y| *x = A::min(*x, y));
        a
    }
    fn max(mut a: Self, b: &Self) -> Self {
        a.zip_mut_with(b, |x, y| *x = A::max(*x, y));
        a
    }
}

macro_rules! reducible_int {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            fn zero() -> Option<Self> { Some(0) }
            fn add(a: Self, b: &Self) -> Self { a + *b }
            fn min(a: Self, b: &Self) -> Self { a.min(*b) }
            fn max(a: Self, b: &Self) -> Self { a.max(*b) }
        }
    )*};
}
reducible_int!(i32, i64, u32, u64, usize);

fn fold<T: Reducible>(pieces: Vec<T>, f: fn(T, &T) -> T) -> Option<T> {
    let mut it = pieces.into_iter();
    let first = it.next()?;
    Some(it.fold(first, |acc, p| f(acc, &p)))
}

/// A reduce split type over [`Reducible`] values: pieces are partial results
/// combined by `$merge`.
macro_rules! reduce_split {
    ($split:ty, |$pieces:ident| $merge:expr) => {
        impl<T: Reducible> SplitType<T> for $split {
            const KIND: SplitKind = SplitKind::Reduce;
            fn elements(_: &T) -> Option<usize> {
                None
            }
            fn split(value: &T, _: Range<usize>) -> T {
                value.clone()
            }
            fn merge($pieces: Vec<T>) -> Result<T> {
                $merge
            }
        }
    };
}

reduce_split!(SumSplit, |pieces| fold(pieces, T::add)
    .or_else(T::zero)
    .ok_or(Error::EmptyReduction { op: "SumSplit" }));
reduce_split!(MinSplit, |pieces| fold(pieces, T::min)
    .ok_or(Error::EmptyReduction { op: "min" }));
reduce_split!(MaxSplit, |pieces| fold(pieces, T::max)
    .ok_or(Error::EmptyReduction { op: "max" }));

impl SplitType<usize> for CountSplit {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &usize) -> Option<usize> {
        None
    }
    fn split(value: &usize, _: Range<usize>) -> usize {
        *value
    }
    fn merge(pieces: Vec<usize>) -> Result<usize> {
        Ok(pieces.into_iter().sum())
    }
}

/// A type-erased [`SplitType`] for one value type: what the planner and the
/// executors use. [`SplitVTable::of`] hands out one `'static` table per
/// (split type, value type) pair, built at compile time, so graph nodes hold a
/// pointer rather than a copy.
pub struct SplitVTable {
    name: fn() -> &'static str,
    /// Identifies the split type (not the value type): two edges fuse only when
    /// producer and consumer agree on it.
    pub split_id: TypeId,
    value_type: fn() -> &'static str,
    pub(crate) value_id: TypeId,
    /// What the split type does.
    pub kind: SplitKind,
    pub(crate) elements: fn(&dyn Any) -> Option<usize>,
    pub(crate) element_bytes: fn(&dyn Any) -> Option<usize>,
    pub(crate) split: fn(&dyn Any, Range<usize>) -> Result<Piece>,
    pub(crate) merge: fn(Vec<Piece>) -> Result<Piece>,
    pub(crate) clone: fn(&dyn Any) -> Piece,
    pub(crate) assembler: fn(usize, &dyn Any) -> Option<Box<dyn ErasedAssembler>>,
}

impl std::fmt::Debug for SplitVTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}<{}>", short_name(self.name()), self.value_type())
    }
}

/// [`Assembler`] over erased pieces.
pub(crate) trait ErasedAssembler: Send + Sync {
    /// # Safety
    /// As [`Assembler::write`].
    unsafe fn write(&self, range: Range<usize>, piece: &dyn Any) -> Result<(), usize>;
    /// # Safety
    /// As [`Assembler::finish`].
    unsafe fn finish(self: Box<Self>) -> Piece;
    /// # Safety
    /// As [`Assembler::pod_bytes`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn pod_bytes(&self, range: Range<usize>) -> Option<&mut [u8]>;
}

struct Erased<T>(Box<dyn Assembler<T>>);

impl<T: Value> ErasedAssembler for Erased<T> {
    unsafe fn write(&self, range: Range<usize>, piece: &dyn Any) -> Result<(), usize> {
        let piece = piece.downcast_ref::<T>().ok_or(0usize)?;
        self.0.write(range, piece)
    }
    unsafe fn finish(self: Box<Self>) -> Piece {
        Box::new(self.0.finish())
    }
    unsafe fn pod_bytes(&self, range: Range<usize>) -> Option<&mut [u8]> {
        self.0.pod_bytes(range)
    }
}

fn short_name(full: &'static str) -> &'static str {
    full.rsplit("::").next().unwrap_or(full)
}

fn downcast<T: 'static>(v: &dyn Any) -> &T {
    v.downcast_ref::<T>().unwrap_or_else(|| {
        panic!(
            "split type applied to a value that is not `{}`",
            std::any::type_name::<T>()
        )
    })
}

impl SplitVTable {
    /// The vtable of split type `S` over values of type `T`.
    pub fn of<S: SplitType<T>, T: Value>() -> &'static SplitVTable {
        &const { SplitVTable::build::<S, T>() }
    }

    /// The split type's full path (for `explain` and errors).
    pub fn name(&self) -> &'static str {
        (self.name)()
    }

    /// The value type's name.
    pub fn value_type(&self) -> &'static str {
        (self.value_type)()
    }

    const fn build<S: SplitType<T>, T: Value>() -> SplitVTable {
        SplitVTable {
            name: std::any::type_name::<S>,
            split_id: TypeId::of::<S>(),
            value_type: std::any::type_name::<T>,
            value_id: TypeId::of::<T>(),
            kind: S::KIND,
            elements: |v| S::elements(downcast::<T>(v)),
            element_bytes: |v| S::element_bytes(downcast::<T>(v)),
            split: |v, r| {
                crate::error::guard(
                    || short_name(std::any::type_name::<S>()),
                    || Ok(Box::new(S::split(downcast::<T>(v), r)) as Piece),
                )
            },
            merge: |pieces| {
                crate::error::guard(
                    || short_name(std::any::type_name::<S>()),
                    || {
                        let typed = pieces
                            .into_iter()
                            .map(|p| {
                                p.downcast::<T>().map(|b| *b).map_err(|_| {
                                    Error::internal(format!(
                                        "a piece of type `{}`",
                                        std::any::type_name::<T>()
                                    ))
                                })
                            })
                            .collect::<Result<Vec<T>>>()?;
                        Ok(Box::new(S::merge(typed)?) as Piece)
                    },
                )
            },
            clone: |v| Box::new(downcast::<T>(v).clone()),
            assembler: |total, sample| {
                S::assembler(total, downcast::<T>(sample))
                    .map(|a| Box::new(Erased::<T>(a)) as Box<dyn ErasedAssembler>)
            },
        }
    }

    /// Elements of `value` along this split type's dimension (`None`: not split).
    pub(crate) fn elements_of(&self, value: &dyn Any) -> Option<usize> {
        match self.kind {
            SplitKind::Partition => (self.elements)(value),
            _ => None,
        }
    }

    /// Bytes per element of `value` along this split type's dimension (`None`:
    /// not split, or not said: one number).
    pub(crate) fn element_bytes_of(&self, value: &dyn Any) -> Option<usize> {
        match self.kind {
            SplitKind::Partition => (self.element_bytes)(value),
            _ => None,
        }
    }

    /// True for the generic [`Inherit`] split type, resolved when a call is recorded.
    pub(crate) fn is_inherit(&self) -> bool {
        self.split_id == TypeId::of::<Inherit>()
    }

    /// True when a value produced under `self` can flow piece by piece into an
    /// argument split by `consumer`.
    pub(crate) fn fuses_with(&self, consumer: &SplitVTable) -> bool {
        self.kind == SplitKind::Partition
            && consumer.kind == SplitKind::Partition
            && self.split_id == consumer.split_id
            && self.value_id == consumer.value_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn roundtrip<S: SplitType<T>, T: Value + PartialEq + std::fmt::Debug>(v: T, cuts: &[usize]) {
        let n = S::elements(&v).unwrap();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c < n));
        bounds.push(n);
        let pieces: Vec<T> = bounds
            .windows(2)
            .map(|w| S::split(&v, w[0]..w[1]))
            .collect();
        assert_eq!(S::merge(pieces.clone()).unwrap(), v);
        let asm = S::assembler(n, &pieces[0]).unwrap();
        for (w, p) in bounds.windows(2).zip(&pieces) {
            unsafe { asm.write(w[0]..w[1], p).unwrap() };
        }
        assert_eq!(unsafe { asm.finish() }, v);
    }

    #[test]
    fn ndarray_split_roundtrips_1d_and_2d() {
        roundtrip::<NdArraySplit, _>(array![1.0, 2.0, 3.0, 4.0, 5.0], &[2, 3]);
        roundtrip::<NdArraySplit, _>(array![[1, 2], [3, 4], [5, 6]], &[1]);
        roundtrip::<NdArraySplit, _>(Array1::<f64>::zeros(0), &[]);
    }

    #[test]
    fn assembler_rejects_wrong_piece_length() {
        let asm = <NdArraySplit as SplitType<Array1<f64>>>::assembler(4, &array![1.0]).unwrap();
        assert_eq!(unsafe { asm.write(0..2, &array![1.0, 2.0, 3.0]) }, Err(3));
    }

    #[test]
    fn reductions_follow_numpy_on_empty_and_nan() {
        assert_eq!(<SumSplit as SplitType<f64>>::merge(vec![]).unwrap(), 0.0);
        assert!(matches!(
            <MaxSplit as SplitType<f64>>::merge(vec![]),
            Err(Error::EmptyReduction { .. })
        ));
        assert!(
            <MaxSplit as SplitType<f64>>::merge(vec![1.0, f64::NAN, 3.0])
                .unwrap()
                .is_nan()
        );
        assert!(<MinSplit as SplitType<f64>>::merge(vec![f64::NAN, 3.0])
            .unwrap()
            .is_nan());
        assert_eq!(
            <MinSplit as SplitType<f64>>::merge(vec![2.0, -1.0]).unwrap(),
            -1.0
        );
        assert_eq!(
            <SumSplit as SplitType<Array1<f64>>>::merge(vec![array![1.0, 2.0], array![3.0, 4.0]])
                .unwrap(),
            array![4.0, 6.0]
        );
    }

    #[test]
    fn size_split_gives_range_lengths() {
        assert_eq!(SizeSplit::split(&10, 3..7), 4);
        assert_eq!(
            <SizeSplit as SplitType<usize>>::merge(vec![3, 4, 3]).unwrap(),
            10
        );
    }
}
