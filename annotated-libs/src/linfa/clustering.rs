//! DBSCAN, annotated: linfa-clustering's [`Dbscan`] with its region queries split by rows.
//!
//! linfa's DBSCAN expands clusters one point at a time from the answers of a
//! nearest-neighbour index (`within_range`): single-threaded, and in 256
//! dimensions its k-d tree prunes nothing, so every query scans every point.
//! The annotation splits that work off without changing linfa:
//!
//! 1. [`region_queries()`] (split by rows, the whole matrix broadcast): the
//!    epsilon-neighbourhood of every row of a batch among the rows after it
//!    (the relation is symmetric), by matrix products (`|a|^2 + |b|^2 -
//!    2 a.b`), each pair near the boundary confirmed with linfa's own squared
//!    distance, so the relation is exactly linfa's (`rdistance(a, b) < eps^2`).
//!    Batches run in parallel; their [`Neighbourhoods`] concatenate
//!    ([`NeighbourhoodSplit`]). It also rejects NaN and infinite values (a
//!    typed [`DbscanError`]). [`row_numbers()`] tells each batch where its rows are.
//! 2. [`dbscan_labels()`] (whole values): completes the neighbourhoods
//!    ([`Neighbourhoods::symmetrized`]) and runs linfa's `Dbscan` itself, given a
//!    [`Precomputed`] index that answers `within_range` from those
//!    neighbourhoods (the same neighbours, in the same order, as linfa's
//!    `LinearSearch`), so the expansion and the labels are linfa's.
//!
//! [`dbscan`] records both for a lazy array; [`eager::dbscan`] is the plain
//! library call. Labels follow scikit-learn: cluster ids from 0 in order of
//! discovery, `-1` for noise.
//!
//! Semantics to know (where linfa and scikit-learn differ):
//! - a point's neighbourhood includes the point itself, and `min_samples`
//!   counts it (both libraries);
//! - neighbours are strictly closer than `eps` (linfa); scikit-learn counts
//!   `distance <= eps`, which differs only for pairs at exactly `eps`;
//! - `min_samples` must be at least 2 (linfa's rule; scikit-learn also takes 1);
//! - NaN or infinite values are an error (scikit-learn raises `ValueError`
//!   "Input X contains NaN"). A column with zero variance standardized with
//!   NumPy's `X /= X.std(axis=0)` becomes NaN (0/0), so DBSCAN of such a
//!   matrix is [`DbscanError::NonFinite`] at row 0 of that column, as
//!   scikit-learn's fit fails on it.
//!
//! The device implementation of the whole clustering is [`device`].

pub mod device;

use std::ops::Range;
use std::sync::Arc;

use bach_runtime::{offload, Broadcast, Lazy, NdArraySplit, SplitKind, SplitType};
use linfa::traits::Transformer;
use linfa::ParamGuard;
use linfa_clustering::Dbscan;
use linfa_nn::distance::{Distance, L2Dist};
use linfa_nn::{BuildError, NearestNeighbour, NearestNeighbourIndex, NnError};
use ndarray::parallel::prelude::*;
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, ArrayView2, Axis, Data, Ix1, Ix2};

/// DBSCAN's parameters, checked: `eps > 0` and finite, `min_samples >= 2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbscanParams {
    eps: f64,
    min_samples: usize,
}

impl DbscanParams {
    /// The parameters of scikit-learn's `DBSCAN(eps, min_samples)`, or why they are invalid.
    pub fn new(eps: f64, min_samples: usize) -> Result<Self, DbscanError> {
        // `!(eps > 0.0)` also rejects NaN.
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(DbscanError::Eps(eps));
        }
        if min_samples < 2 {
            return Err(DbscanError::MinSamples(min_samples));
        }
        Ok(DbscanParams { eps, min_samples })
    }

    /// The neighbourhood radius.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Points (the point itself included) within `eps` that make a point a core point.
    pub fn min_samples(&self) -> usize {
        self.min_samples
    }

    /// `eps` squared, as linfa compares squared distances (`L2Dist::dist_to_rdist`).
    pub fn eps_squared(&self) -> f64 {
        Distance::<f64>::dist_to_rdist(&L2Dist, self.eps)
    }
}

/// Why DBSCAN cannot run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DbscanError {
    /// `eps` is not a positive finite number.
    Eps(f64),
    /// `min_samples` is below 2.
    MinSamples(usize),
    /// The data holds NaN or an infinity, first at (`row`, `col`) in row-major order.
    NonFinite {
        /// Row of the first such value.
        row: usize,
        /// Its column.
        col: usize,
        /// The value.
        value: f64,
    },
    /// More rows than 32-bit neighbour indices can name.
    TooManyRows(usize),
}

impl std::fmt::Display for DbscanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbscanError::Eps(eps) => write!(f, "eps must be positive and finite, got {eps}"),
            DbscanError::MinSamples(m) => write!(f, "min_samples must be at least 2, got {m}"),
            DbscanError::NonFinite { row, col, value } => {
                write!(f, "input contains {value} at row {row}, column {col}")
            }
            DbscanError::TooManyRows(n) => {
                write!(
                    f,
                    "{n} rows exceed the 2^32 that neighbour indices can name"
                )
            }
        }
    }
}

impl std::error::Error for DbscanError {}

/// The first NaN or infinite value of `x` in row-major order, as an error.
pub fn check_finite<S: Data<Elem = f64>>(x: &ArrayBase<S, Ix2>) -> Result<(), DbscanError> {
    for (row, r) in x.outer_iter().enumerate() {
        if let Some((col, &value)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(DbscanError::NonFinite { row, col, value });
        }
    }
    Ok(())
}

/// The epsilon-neighbourhood of each of a range of rows: the indices of the
/// points closer than `eps` (itself included), ascending, in compressed rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Neighbourhoods {
    /// `offsets[i]..offsets[i + 1]` indexes row `i`'s neighbours; `offsets[0] == 0`.
    offsets: Arc<[usize]>,
    /// Neighbour indices (rows of the whole matrix).
    indices: Arc<[u32]>,
}

impl Neighbourhoods {
    /// From compressed rows (`offsets` starts at 0, ascends and ends at `indices.len()`).
    fn from_parts(offsets: Vec<usize>, indices: Vec<u32>) -> Self {
        debug_assert_eq!(offsets.first(), Some(&0));
        debug_assert_eq!(offsets.last(), Some(&indices.len()));
        Neighbourhoods {
            offsets: offsets.into(),
            indices: indices.into(),
        }
    }

    /// Rows described.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The neighbours of row `i` (ascending).
    pub fn of(&self, i: usize) -> &[u32] {
        &self.indices[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The whole neighbourhoods from their upper halves (row `i` holding its
    /// neighbours `j >= i`, as [`upper_eps_neighbourhoods`] gives them): each
    /// pair added to both rows, each row ascending.
    pub fn symmetrized(&self) -> Neighbourhoods {
        let n = self.rows();
        let mut degree = vec![0usize; n];
        for i in 0..n {
            for &j in self.of(i) {
                degree[i] += 1;
                if j as usize != i {
                    degree[j as usize] += 1;
                }
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for d in &degree {
            offsets.push(offsets.last().unwrap() + d);
        }
        let mut cursor: Vec<usize> = offsets[..n].to_vec();
        let mut indices = vec![0u32; *offsets.last().unwrap()];
        // Rows in ascending order: row j receives its lower neighbours i < j (ascending)
        // before its own upper half, so every row comes out ascending.
        for i in 0..n {
            for &j in self.of(i) {
                indices[cursor[i]] = j;
                cursor[i] += 1;
                if j as usize != i {
                    indices[cursor[j as usize]] = i as u32;
                    cursor[j as usize] += 1;
                }
            }
        }
        Neighbourhoods::from_parts(offsets, indices)
    }

    /// Neighbour pairs in all rows (each unordered pair twice, each point once with itself).
    pub fn pairs(&self) -> usize {
        self.indices.len()
    }
}

/// Splits [`Neighbourhoods`] by rows; pieces concatenate in row order.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeighbourhoodSplit;

impl SplitType<Neighbourhoods> for NeighbourhoodSplit {
    const KIND: SplitKind = SplitKind::Partition;

    fn elements(value: &Neighbourhoods) -> Option<usize> {
        Some(value.rows())
    }

    fn split(value: &Neighbourhoods, range: Range<usize>) -> Neighbourhoods {
        let (start, end) = (value.offsets[range.start], value.offsets[range.end]);
        let offsets = value.offsets[range.start..=range.end]
            .iter()
            .map(|o| o - start)
            .collect();
        Neighbourhoods::from_parts(offsets, value.indices[start..end].to_vec())
    }

    fn merge(pieces: Vec<Neighbourhoods>) -> bach_runtime::Result<Neighbourhoods> {
        let rows: usize = pieces.iter().map(Neighbourhoods::rows).sum();
        let pairs: usize = pieces.iter().map(Neighbourhoods::pairs).sum();
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut indices = Vec::with_capacity(pairs);
        offsets.push(0);
        for p in &pieces {
            let base = indices.len();
            offsets.extend(p.offsets[1..].iter().map(|o| o + base));
            indices.extend_from_slice(&p.indices);
        }
        Ok(Neighbourhoods::from_parts(offsets, indices))
    }
}

/// Rows of a batch multiplied at once, and candidate rows per product: an
/// 128 x 2048 block of products (2 MiB) stays in cache while it is scanned.
const PRODUCT_ROWS: usize = 128;
const PRODUCT_COLS: usize = 2048;

/// The upper halves of the epsilon-neighbourhoods of rows `first..first +
/// rows.nrows()` of `all` (`rows` holds those rows): for each, the neighbours
/// `j >= i`, where `j` is a neighbour of `i` when linfa's
/// `L2Dist::rdistance(all[i], all[j]) < eps^2` (the relation of linfa's
/// `LinearSearch::within_range`). [`Neighbourhoods::symmetrized`] completes them.
///
/// Distances come from one matrix product per block of rows (`|a|^2 + |b|^2 -
/// 2 a.b`, only against rows from the block's first row on: the relation is
/// symmetric, so half the products suffice); a pair whose product-based
/// squared distance lies within its rounding bound of `eps^2` is decided by
/// linfa's own `rdistance`, so no pair is decided differently from linfa. A
/// NaN or infinity anywhere in `all` is an error naming its first position
/// (the same for every batch, so every plan reports the same).
///
/// # Panics
///
/// When `rows` are not rows `first..` of `all` by shape (more rows than
/// remain, another width): a caller's mistake, not bad data.
pub fn upper_eps_neighbourhoods<S: Data<Elem = f64>, T: Data<Elem = f64>>(
    rows: &ArrayBase<S, Ix2>,
    first: usize,
    all: &ArrayBase<T, Ix2>,
    params: DbscanParams,
) -> Result<Neighbourhoods, DbscanError> {
    let n = all.nrows();
    if u32::try_from(n).is_err() {
        return Err(DbscanError::TooManyRows(n));
    }
    assert!(
        first + rows.nrows() <= n && rows.ncols() == all.ncols(),
        "rows {first}..{} of a {n} x {} matrix: {} columns",
        first + rows.nrows(),
        all.ncols(),
        rows.ncols()
    );
    if check_finite(rows).is_err() {
        // Name the first non-finite value of the whole matrix, not of this batch.
        check_finite(all)?;
    }
    let eps2 = params.eps_squared();
    // The product's rounding error is below (d + 2) ulp of |a|^2 + |b|^2 (sums of d
    // products); four times that leaves room for both roundings of the exact path too.
    let tol = 4.0 * (all.ncols() as f64 + 2.0) * f64::EPSILON;
    let sq_norms = |m: ArrayView2<'_, f64>| -> Array1<f64> { m.map_axis(Axis(1), |r| r.dot(&r)) };
    let (rows, all) = (rows.view(), all.view());
    // Candidates are rows from `first` on (the relation is symmetric: the upper half).
    let all_norms = sq_norms(all.slice(ndarray::s![first.., ..]));

    // Blocks of rows in parallel (a batch may be the whole matrix), each giving its
    // rows' neighbour counts and indices; concatenated in row order.
    let blocks: Vec<(Vec<usize>, Vec<u32>)> = rows
        .axis_chunks_iter(Axis(0), PRODUCT_ROWS)
        .into_par_iter()
        .enumerate()
        .map(|(b, block)| {
            let block_first = first + b * PRODUCT_ROWS;
            let block_norms = sq_norms(block.view());
            let mut neighbours: Vec<Vec<u32>> = vec![Vec::new(); block.nrows()];
            let mut start = block_first;
            while start < n {
                let end = (start + PRODUCT_COLS).min(n);
                let cands = all.slice(ndarray::s![start..end, ..]);
                let products = block.dot(&cands.t());
                let norms = &all_norms.as_slice().expect("a new array")[start - first..end - first];
                for (k, (a, prod)) in block.outer_iter().zip(products.outer_iter()).enumerate() {
                    let (na, row) = (block_norms[k], block_first + k);
                    // Row `row` against candidates `max(row, start)..end`.
                    let skip = row.saturating_sub(start);
                    for (j, (&p, &nb)) in prod.iter().zip(norms).enumerate().skip(skip) {
                        let d2 = na + nb - 2.0 * p;
                        let margin = tol * (na + nb + eps2);
                        let near = if d2 < eps2 - margin {
                            true
                        } else if d2 > eps2 + margin {
                            false
                        } else {
                            L2Dist.rdistance(a.view(), cands.row(j)) < eps2
                        };
                        if near {
                            neighbours[k].push((start + j) as u32);
                        }
                    }
                }
                start = end;
            }
            let lens = neighbours.iter().map(Vec::len).collect();
            (lens, neighbours.concat())
        })
        .collect();
    let mut offsets = Vec::with_capacity(rows.nrows() + 1);
    offsets.push(0);
    let mut indices = Vec::with_capacity(blocks.iter().map(|b| b.1.len()).sum());
    for (lens, block_indices) in blocks {
        for len in lens {
            offsets.push(offsets.last().unwrap() + len);
        }
        indices.extend_from_slice(&block_indices);
    }
    Ok(Neighbourhoods::from_parts(offsets, indices))
}

/// The epsilon-neighbourhoods of all rows of `x` (see [`upper_eps_neighbourhoods`]),
/// on one thread.
pub fn eps_neighbourhoods<S: Data<Elem = f64>>(
    x: &ArrayBase<S, Ix2>,
    params: DbscanParams,
) -> Result<Neighbourhoods, DbscanError> {
    Ok(upper_eps_neighbourhoods(x, 0, x, params)?.symmetrized())
}

/// `0..x.nrows()`: row numbers that travel with the rows of a split matrix, so
/// that a batch of [`region_queries()`] knows where its rows are.
#[offload(split = Broadcast, unsplittable)]
pub fn row_numbers(x: &Array2<f64>) -> Array1<u64> {
    Array1::from_iter(0..x.nrows() as u64)
}

/// The upper halves of the epsilon-neighbourhoods of the rows `rows` (numbered
/// `numbers`) among all the rows of `all` (the same matrix, whole):
/// [`upper_eps_neighbourhoods`], split by rows.
#[offload(split(rows = NdArraySplit, numbers = NdArraySplit, all = Broadcast), ret = NeighbourhoodSplit)]
pub fn region_queries(
    rows: &Array2<f64>,
    numbers: &Array1<u64>,
    all: &Array2<f64>,
    params: DbscanParams,
) -> Result<Neighbourhoods, DbscanError> {
    let first = numbers.first().map_or(all.nrows(), |&f| f as usize);
    upper_eps_neighbourhoods(rows, first, all, params)
}

/// A linfa nearest-neighbour "algorithm" that answers range queries from
/// [`Neighbourhoods`] computed before: linfa's `Dbscan` runs unchanged on it.
///
/// A query must be a row of the indexed matrix (found by its address, as
/// `Dbscan` queries `observations.row(i)`) at the radius the neighbourhoods
/// were computed for; any other query falls back to a linear scan with the
/// index's distance, so answers are always right.
#[derive(Debug, Clone)]
pub struct Precomputed {
    neighbourhoods: Neighbourhoods,
    eps: f64,
}

impl Precomputed {
    /// Serves `neighbourhoods`, computed for radius `eps`.
    pub fn new(neighbourhoods: Neighbourhoods, eps: f64) -> Self {
        Precomputed {
            neighbourhoods,
            eps,
        }
    }
}

impl NearestNeighbour for Precomputed {
    fn from_batch_with_leaf_size<'a, F: linfa::Float, DT: Data<Elem = F>, D: 'a + Distance<F>>(
        &self,
        batch: &'a ArrayBase<DT, Ix2>,
        _leaf_size: usize,
        dist_fn: D,
    ) -> Result<Box<dyn 'a + Send + Sync + NearestNeighbourIndex<F>>, BuildError> {
        if batch.ncols() == 0 {
            return Err(BuildError::ZeroDimension);
        }
        Ok(Box::new(PrecomputedIndex {
            points: batch.view(),
            neighbourhoods: match batch.nrows() == self.neighbourhoods.rows() {
                true => Some(self.neighbourhoods.clone()),
                false => None,
            },
            eps: F::cast(self.eps),
            dist_fn,
        }))
    }
}

/// The index [`Precomputed`] builds over a matrix.
struct PrecomputedIndex<'a, F: linfa::Float, D> {
    points: ArrayView2<'a, F>,
    /// `None` when they do not describe `points` (every query scans).
    neighbourhoods: Option<Neighbourhoods>,
    eps: F,
    dist_fn: D,
}

impl<F: linfa::Float, D: Distance<F>> PrecomputedIndex<'_, F, D> {
    /// The row of `points` that `point` is (the same memory), if any.
    fn row_of(&self, point: &ArrayBase<ndarray::ViewRepr<&F>, Ix1>) -> Option<usize> {
        let (rows, cols) = self.points.dim();
        if rows == 0 || point.len() != cols {
            return None;
        }
        let (row_stride, col_stride) = (self.points.strides()[0], self.points.strides()[1]);
        if cols > 1 && point.strides()[0] != col_stride {
            return None;
        }
        let size = std::mem::size_of::<F>() as isize;
        let offset = (point.as_ptr() as isize).wrapping_sub(self.points.as_ptr() as isize);
        if row_stride == 0 || offset % (row_stride * size) != 0 {
            return None;
        }
        let row = offset / (row_stride * size);
        (0..rows as isize)
            .contains(&row)
            .then_some(row as usize)
            .filter(|&r| std::ptr::eq(self.points.row(r).as_ptr(), point.as_ptr()))
    }
}

impl<F: linfa::Float, D: Distance<F>> NearestNeighbourIndex<F> for PrecomputedIndex<'_, F, D> {
    fn k_nearest(
        &self,
        point: ArrayView1<'_, F>,
        k: usize,
    ) -> Result<Vec<(ArrayView1<'_, F>, usize)>, NnError> {
        // DBSCAN never asks; answer as a linear scan would.
        if point.len() != self.points.ncols() {
            return Err(NnError::WrongDimension);
        }
        let mut all: Vec<(F, usize)> = self
            .points
            .outer_iter()
            .enumerate()
            .map(|(i, p)| (self.dist_fn.rdistance(point.view(), p), i))
            .collect();
        all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        Ok(all
            .into_iter()
            .take(k)
            .map(|(_, i)| (self.points.row(i), i))
            .collect())
    }

    fn within_range(
        &self,
        point: ArrayView1<'_, F>,
        range: F,
    ) -> Result<Vec<(ArrayView1<'_, F>, usize)>, NnError> {
        if point.len() != self.points.ncols() {
            return Err(NnError::WrongDimension);
        }
        if let (Some(nb), Some(i), true) =
            (&self.neighbourhoods, self.row_of(&point), range == self.eps)
        {
            return Ok(nb
                .of(i)
                .iter()
                .map(|&j| (self.points.row(j as usize), j as usize))
                .collect());
        }
        let rrange = self.dist_fn.dist_to_rdist(range);
        Ok(self
            .points
            .outer_iter()
            .enumerate()
            .filter(|(_, p)| self.dist_fn.rdistance(point.view(), p.view()) < rrange)
            .map(|(i, p)| (p, i))
            .collect())
    }
}

/// linfa's cluster memberships as scikit-learn's labels: the cluster id, `-1` for noise.
pub fn sklearn_labels(memberships: &Array1<Option<usize>>) -> Array1<i64> {
    memberships.mapv(|m| m.map_or(-1, |c| c as i64))
}

/// DBSCAN labels of the rows of `x` (scikit-learn's: `-1` for noise), by
/// linfa's `Dbscan` over the neighbourhoods of `x`'s rows, given by their
/// upper halves (`upper`, from [`region_queries()`]).
#[offload(split = Broadcast, unsplittable)]
pub fn dbscan_labels(x: &Array2<f64>, upper: &Neighbourhoods, params: DbscanParams) -> Array1<i64> {
    let index = Precomputed::new(upper.symmetrized(), params.eps);
    let valid = Dbscan::params_with(params.min_samples, L2Dist, index)
        .tolerance(params.eps)
        .check()
        .expect("DbscanParams holds linfa-valid parameters");
    sklearn_labels(&valid.transform(x))
}

/// DBSCAN of the rows of a lazy matrix: scikit-learn's
/// `DBSCAN(eps, min_samples).fit(x).labels_`, lazily (see the module docs).
/// A NaN or infinity in `x` makes `evaluate` return `Error::Call` whose source
/// is a [`DbscanError::NonFinite`].
pub fn dbscan<'a>(
    x: &crate::ndarray::Array2<'a, f64>,
    params: DbscanParams,
) -> Lazy<'a, Array1<i64>> {
    let x = x.as_lazy();
    let numbers = row_numbers(x);
    let upper = region_queries(x, &numbers, x, params);
    dbscan_labels(x, &upper, params)
}

/// DBSCAN on plain arrays, eagerly.
pub mod eager {
    use super::*;

    /// scikit-learn's `DBSCAN(eps, min_samples).fit(x).labels_` by linfa's
    /// `Dbscan` as a user calls it (its default k-d tree), after checking the
    /// data for NaN and infinities.
    pub fn dbscan<S: Data<Elem = f64>>(
        x: &ArrayBase<S, Ix2>,
        params: DbscanParams,
    ) -> Result<Array1<i64>, DbscanError> {
        check_finite(x)?;
        let valid = Dbscan::params(params.min_samples)
            .tolerance(params.eps)
            .check()
            .expect("DbscanParams holds linfa-valid parameters");
        Ok(sklearn_labels(&valid.transform(x)))
    }

    /// The same with linfa's linear search and its neighbours in index order:
    /// the labels [`super::dbscan`] gives, bit for bit.
    pub fn dbscan_linear<S: Data<Elem = f64>>(
        x: &ArrayBase<S, Ix2>,
        params: DbscanParams,
    ) -> Result<Array1<i64>, DbscanError> {
        check_finite(x)?;
        let valid = Dbscan::params_with(params.min_samples, L2Dist, linfa_nn::LinearSearch)
            .tolerance(params.eps)
            .check()
            .expect("DbscanParams holds linfa-valid parameters");
        Ok(sklearn_labels(&valid.transform(x)))
    }
}
