//! The few largest eigenpairs of a symmetric matrix, for the truncated SVD
//! of a Gram matrix.
//!
//! linfa-linalg's `Eigh` computes every eigenvector, which for a 512 x 512
//! Gram matrix takes seconds in its pure-Rust QR iteration (its
//! tridiagonalisation and `Q` alone take most of a second), and its LOBPCG
//! solver breaks down on blob data. This module takes the path LAPACK takes
//! for a few eigenpairs (`dsytrd` + `dstebz` + `dstein` + `dormtr`):
//! Householder tridiagonalisation `A = Q T Q^T` over plain row slices, the
//! eigenvalues of `T` by bisection on Sturm counts (to full precision), its
//! eigenvectors by inverse iteration, then `Q y` by applying the reflectors.

use ndarray::{Array1, Array2};

use super::error::LinfaError;

/// The `k` largest eigenvalues of the symmetric matrix `a`, largest first,
/// and their unit eigenvectors as the columns of an `n x k` matrix. `a`
/// with a NaN or an infinity is [`LinfaError::Overflow`] of `model`.
pub fn top_eigenpairs(
    model: &'static str,
    a: Array2<f64>,
    k: usize,
) -> Result<(Vec<f64>, Array2<f64>), LinfaError> {
    if a.iter().any(|v| !v.is_finite()) {
        return Err(LinfaError::Overflow {
            model,
            what: "the Gram matrix",
        });
    }
    let n = a.nrows();
    if a.ncols() != n {
        return Err(linfa_linalg::LinalgError::NotSquare {
            rows: n,
            cols: a.ncols(),
        }
        .into());
    }
    let k = k.min(n);
    let tri = Tridiagonal::of(a);
    let mut values = Vec::with_capacity(k);
    let mut vectors = Array2::zeros((n, k));
    let mut found: Vec<Array1<f64>> = Vec::with_capacity(k);
    for j in 0..k {
        // The j-th largest is the (n - 1 - j)-th smallest.
        let lambda = kth_smallest(&tri.d, &tri.e, n - 1 - j);
        let y = inverse_iteration(&tri.d, &tri.e, lambda, &found);
        vectors.column_mut(j).assign(&tri.apply_q(y.clone()));
        values.push(lambda);
        found.push(y);
    }
    Ok((values, vectors))
}

/// `A = Q T Q^T` for a symmetric `A`: `T`'s diagonal `d` and off-diagonal
/// `e`, and `Q = H_0 H_1 ... H_{n-3}` as its Householder reflectors
/// `H_k = I - beta_k v_k v_k^T` (acting on entries `k + 1..`).
struct Tridiagonal {
    d: Array1<f64>,
    e: Array1<f64>,
    reflectors: Vec<(f64, Vec<f64>)>,
}

impl Tridiagonal {
    /// Golub and Van Loan, algorithm 8.3.1, on the full symmetric matrix.
    fn of(a: Array2<f64>) -> Tridiagonal {
        let n = a.nrows();
        let mut a = a.as_standard_layout().into_owned();
        let m = a.as_slice_mut().expect("standard layout");
        let mut e = Array1::zeros(n.saturating_sub(1));
        let mut reflectors = Vec::with_capacity(n.saturating_sub(2));
        let mut p = vec![0.0; n];
        for k in 0..n.saturating_sub(2) {
            let len = n - k - 1;
            // x = A[k + 1.., k]
            let x: Vec<f64> = (k + 1..n).map(|i| m[i * n + k]).collect();
            let sigma: f64 = x[1..].iter().map(|v| v * v).sum();
            if sigma == 0.0 {
                e[k] = x[0];
                reflectors.push((0.0, Vec::new()));
                continue;
            }
            let mu = (x[0] * x[0] + sigma).sqrt();
            let v0 = if x[0] <= 0.0 {
                x[0] - mu
            } else {
                -sigma / (x[0] + mu)
            };
            let beta = 2.0 * v0 * v0 / (sigma + v0 * v0);
            let mut v = x;
            v[0] = 1.0;
            for vi in &mut v[1..] {
                *vi /= v0;
            }
            e[k] = mu;
            // p = beta A' v, w = p - (beta / 2)(p . v) v, A' -= v w^T + w v^T.
            let p = &mut p[..len];
            for (i, pi) in p.iter_mut().enumerate() {
                let row = &m[(k + 1 + i) * n + k + 1..(k + 2 + i) * n];
                *pi = beta * row.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
            }
            let pv: f64 = p.iter().zip(&v).map(|(a, b)| a * b).sum();
            let half = 0.5 * beta * pv;
            for (pi, vi) in p.iter_mut().zip(&v) {
                *pi -= half * vi;
            }
            for i in 0..len {
                let (vi, wi) = (v[i], p[i]);
                let row = &mut m[(k + 1 + i) * n + k + 1..(k + 2 + i) * n];
                for ((r, &vj), &wj) in row.iter_mut().zip(&v).zip(p.iter()) {
                    *r -= vi * wj + wi * vj;
                }
            }
            reflectors.push((beta, v));
        }
        if n >= 2 {
            e[n - 2] = m[(n - 1) * n + n - 2];
        }
        let d = Array1::from_shape_fn(n, |i| m[i * n + i]);
        Tridiagonal { d, e, reflectors }
    }

    /// `Q y`: the reflectors applied last to first.
    fn apply_q(&self, mut y: Array1<f64>) -> Array1<f64> {
        let y_s = y.as_slice_mut().expect("contiguous");
        for (k, (beta, v)) in self.reflectors.iter().enumerate().rev() {
            if *beta == 0.0 {
                continue;
            }
            let tail = &mut y_s[k + 1..];
            let dot: f64 = tail.iter().zip(v).map(|(a, b)| a * b).sum();
            for (t, vi) in tail.iter_mut().zip(v) {
                *t -= beta * dot * vi;
            }
        }
        y
    }
}

/// The number of eigenvalues of the tridiagonal matrix (`d` diagonal, `e`
/// off-diagonal) smaller than `x`: the negative pivots of `T - x I`.
fn count_below(d: &Array1<f64>, e: &Array1<f64>, x: f64) -> usize {
    let tiny = f64::MIN_POSITIVE.sqrt();
    let mut count = 0;
    let mut q = 1.0;
    for i in 0..d.len() {
        let off = if i == 0 { 0.0 } else { e[i - 1] * e[i - 1] / q };
        q = d[i] - x - off;
        if q == 0.0 {
            q = -tiny;
        }
        if q < 0.0 {
            count += 1;
        }
    }
    count
}

/// The `index`-th smallest eigenvalue (from 0), by bisection between the
/// Gershgorin bounds until the interval stops shrinking.
fn kth_smallest(d: &Array1<f64>, e: &Array1<f64>, index: usize) -> f64 {
    let n = d.len();
    let radius = |i: usize| {
        (if i > 0 { e[i - 1].abs() } else { 0.0 }) + (if i + 1 < n { e[i].abs() } else { 0.0 })
    };
    let mut lo = (0..n)
        .map(|i| d[i] - radius(i))
        .fold(f64::INFINITY, f64::min);
    let mut hi = (0..n)
        .map(|i| d[i] + radius(i))
        .fold(f64::NEG_INFINITY, f64::max);
    // Each step halves the interval: from the widest finite one to one ulp
    // takes about 2100 steps; the bound only guards against a NaN bound.
    for _ in 0..4096 {
        let mid = 0.5 * (lo + hi);
        if !(mid > lo && mid < hi) {
            return mid;
        }
        if count_below(d, e, mid) > index {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A unit eigenvector of the tridiagonal matrix for the eigenvalue `lambda`:
/// a few steps of inverse iteration, orthogonal to the vectors `found`
/// before (which keeps close eigenvalues' vectors apart).
fn inverse_iteration(
    d: &Array1<f64>,
    e: &Array1<f64>,
    lambda: f64,
    found: &[Array1<f64>],
) -> Array1<f64> {
    let n = d.len();
    let norm = d
        .iter()
        .chain(e.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    // Shifted off the eigenvalue by a few ulps of the matrix, so the solve is finite.
    let shift = lambda + 4.0 * f64::EPSILON * norm;
    let lu = TridiagonalLu::new(d, e, shift, norm);
    // A fixed start with every component nonzero.
    let mut y = Array1::from_shape_fn(n, |i| 1.0 + ((i * 7919) % 97) as f64 / 97.0);
    for _ in 0..4 {
        for f in found {
            let p = f.dot(&y);
            y.scaled_add(-p, f);
        }
        let length = y.dot(&y).sqrt();
        y /= length;
        y = lu.solve(y);
    }
    for f in found {
        let p = f.dot(&y);
        y.scaled_add(-p, f);
    }
    let length = y.dot(&y).sqrt();
    y / length
}

/// `T - s I` factored by Gaussian elimination with partial pivoting (LAPACK
/// `dlagtf`): `U` has two superdiagonals; tiny pivots become `eps * |T|`.
struct TridiagonalLu {
    u0: Vec<f64>,
    u1: Vec<f64>,
    u2: Vec<f64>,
    l: Vec<f64>,
    swapped: Vec<bool>,
}

impl TridiagonalLu {
    fn new(d: &Array1<f64>, e: &Array1<f64>, s: f64, norm: f64) -> TridiagonalLu {
        let n = d.len();
        let tiny = f64::EPSILON * norm;
        let (mut u0, mut u1, mut u2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let (mut l, mut swapped) = (vec![0.0; n], vec![false; n]);
        // The current row: (diagonal, superdiagonal) still to eliminate below.
        let mut diag = d[0] - s;
        let mut sup = if n > 1 { e[0] } else { 0.0 };
        for i in 0..n {
            if i + 1 == n {
                u0[i] = if diag.abs() < tiny { tiny } else { diag };
                break;
            }
            let sub = e[i];
            let next_diag = d[i + 1] - s;
            let next_sup = if i + 2 < n { e[i + 1] } else { 0.0 };
            if diag.abs() >= sub.abs() {
                let pivot = if diag.abs() < tiny { tiny } else { diag };
                let m = sub / pivot;
                u0[i] = pivot;
                u1[i] = sup;
                u2[i] = 0.0;
                l[i] = m;
                diag = next_diag - m * sup;
                sup = next_sup;
            } else {
                // Swap rows i and i + 1.
                let m = diag / sub;
                u0[i] = sub;
                u1[i] = next_diag;
                u2[i] = next_sup;
                l[i] = m;
                swapped[i] = true;
                diag = sup - m * next_diag;
                sup = -m * next_sup;
            }
        }
        TridiagonalLu {
            u0,
            u1,
            u2,
            l,
            swapped,
        }
    }

    /// `(T - s I)^{-1} b`.
    fn solve(&self, mut b: Array1<f64>) -> Array1<f64> {
        let n = b.len();
        for i in 0..n.saturating_sub(1) {
            if self.swapped[i] {
                b.swap(i, i + 1);
            }
            b[i + 1] -= self.l[i] * b[i];
        }
        for i in (0..n).rev() {
            let mut v = b[i];
            if i + 1 < n {
                v -= self.u1[i] * b[i + 1];
            }
            if i + 2 < n {
                v -= self.u2[i] * b[i + 2];
            }
            b[i] = v / self.u0[i];
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa_linalg::eigh::Eigh;

    fn check(a: Array2<f64>, k: usize) {
        let (values, vectors) = top_eigenpairs("test", a.clone(), k).unwrap();
        let (all, _) = a.eigh().unwrap();
        let mut all = all.to_vec();
        all.sort_by(|x, y| y.total_cmp(x));
        let scale = all.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
        for j in 0..k {
            assert!(
                (values[j] - all[j]).abs() <= 1e-12 * scale,
                "{values:?} vs {all:?}"
            );
            let v = vectors.column(j);
            let residual = a.dot(&v) - values[j] * &v;
            assert!(
                residual.dot(&residual).sqrt() <= 1e-9 * scale,
                "residual of {j}"
            );
            assert!((v.dot(&v) - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn the_largest_eigenpairs_match_a_full_decomposition() {
        let mut s = 99u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let x = Array2::from_shape_fn((200, 40), |(_, j)| next() + if j < 3 { 2.0 } else { 0.0 });
        check(x.t().dot(&x), 3);
        // Diagonal, with a repeated eigenvalue.
        let mut a = Array2::zeros((5, 5));
        for (i, v) in [1.0, 5.0, 5.0, 2.0, -3.0].into_iter().enumerate() {
            a[[i, i]] = v;
        }
        check(a, 3);
        check(Array2::from_elem((1, 1), 4.0), 1);
    }

    #[test]
    fn a_matrix_with_infinities_is_an_error_not_a_hang() {
        let mut a = Array2::<f64>::eye(3);
        a[[1, 1]] = f64::INFINITY;
        assert!(matches!(
            top_eigenpairs("test", a, 1),
            Err(LinfaError::Overflow { model: "test", .. })
        ));
    }
}
