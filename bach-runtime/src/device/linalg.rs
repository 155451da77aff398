//! Dense linear algebra on a device: a matrix product ([`Gemm`], cuBLAS's `gemm` on a GPU)
//! and a symmetric eigensolver ([`SymmetricEigen`], cuSOLVER's `syevd`), enqueued with
//! [`Device::gemm_on`](super::Device::gemm_on) and
//! [`Device::symmetric_eigen_on`](super::Device::symmetric_eigen_on).
//!
//! Matrices are **row-major** in device buffers, as ndarray's standard layout: element
//! `(i, j)` of a [`MatrixRef`] lies at byte `offset + (i * ld + j) * size`, so a block of rows
//! of a bigger matrix (or a matrix at some offset in a buffer) is a [`MatrixRef`] too. Every
//! device runs the same checks ([`Gemm::check`], [`SymmetricEigen::check`]) before it
//! enqueues anything: a bad dimension, leading dimension, offset or buffer range is an
//! `Error::Device` naming it, never a panic.
//!
//! The simulated device multiplies on the host with ndarray's `general_mat_mul` (bit for bit
//! what `a.dot(&b)` gives on the same operands) and runs an eigensolver's
//! [`reference`](SymmetricEigen::reference). The CUDA device calls cuBLAS and cuSOLVER
//! (loaded at run time; their absence is a typed error); that code has not run on a GPU yet.

use super::codec::DType;
use super::{DeviceBuffer, HostFn};
use crate::error::{Error, Result};

/// A row-major matrix in a device buffer: element `(i, j)` at byte
/// `offset + (i * ld + j) * size` for the element size of the operation's [`DType`]. Its
/// rows and columns are given by the operation using it.
#[derive(Debug, Clone, Copy)]
pub struct MatrixRef<'b> {
    /// The buffer holding the matrix.
    pub buffer: &'b DeviceBuffer,
    /// Byte offset of element `(0, 0)` (a multiple of the element size).
    pub offset: usize,
    /// Leading dimension: elements from one row to the next (at least the columns).
    pub ld: usize,
}

impl<'b> MatrixRef<'b> {
    /// A matrix at the start of `buffer` whose rows are `ld` elements apart.
    pub fn new(buffer: &'b DeviceBuffer, ld: usize) -> Self {
        MatrixRef {
            buffer,
            offset: 0,
            ld,
        }
    }

    /// The same matrix starting `offset` bytes into the buffer.
    pub fn at(self, offset: usize) -> Self {
        MatrixRef { offset, ..self }
    }

    /// Bytes `start..end` of the buffer that a `rows x cols` matrix of `size`-byte elements
    /// occupies (from its first element to one past its last; empty for no elements), after
    /// checking the leading dimension, the offset's alignment and the buffer's length.
    fn span(
        &self,
        what: &str,
        rows: usize,
        cols: usize,
        size: usize,
    ) -> Result<std::ops::Range<usize>> {
        if self.ld < cols.max(1) {
            return Err(Error::Device(format!(
                "{what}: leading dimension {} is less than its {cols} columns",
                self.ld
            )));
        }
        if !self.offset.is_multiple_of(size) {
            return Err(Error::Device(format!(
                "{what}: byte offset {} is not a multiple of the {size}-byte element",
                self.offset
            )));
        }
        if rows == 0 || cols == 0 {
            return Ok(self.offset..self.offset);
        }
        let elements = (rows - 1)
            .checked_mul(self.ld)
            .and_then(|e| e.checked_add(cols));
        let end = elements
            .and_then(|e| e.checked_mul(size))
            .and_then(|b| b.checked_add(self.offset));
        match end {
            Some(end) if end <= self.buffer.len() => Ok(self.offset..end),
            _ => Err(Error::Device(format!(
                "{what}: {rows} x {cols} elements of {size} bytes with leading dimension {} at \
                 byte offset {} overrun a {}-byte buffer",
                self.ld,
                self.offset,
                self.buffer.len()
            ))),
        }
    }
}

/// The element size of a linear-algebra dtype (`f32` or `f64`), else an error.
fn float_size(what: &str, dtype: DType) -> Result<usize> {
    match dtype {
        DType::F32 | DType::F64 => Ok(dtype.size()),
        other => Err(Error::Device(format!(
            "{what}: only f32 and f64 are supported, not {other:?}"
        ))),
    }
}

/// An error unless `value` fits the 32-bit integers cuBLAS and cuSOLVER take.
fn check_i32(what: &str, name: &str, value: usize) -> Result<()> {
    if i32::try_from(value).is_err() {
        return Err(Error::Device(format!(
            "{what}: {name} = {value} exceeds the 32-bit range of the device libraries"
        )));
    }
    Ok(())
}

/// True when two nonempty byte ranges of one buffer overlap.
fn overlaps(
    a: &DeviceBuffer,
    ra: &std::ops::Range<usize>,
    b: &DeviceBuffer,
    rb: &std::ops::Range<usize>,
) -> bool {
    std::ptr::eq(a, b) && !ra.is_empty() && !rb.is_empty() && ra.start < rb.end && rb.start < ra.end
}

/// A matrix product over device buffers, row-major:
/// `C = alpha * op(A) * op(B) + beta * C` with `op(A)` `m x k`, `op(B)` `k x n` and `C`
/// `m x n`. `op(X)` is `X` or, with `transpose_x`, `X^T`: `A` is stored `m x k`
/// (`transpose_a = false`) or `k x m` (`true`), `B` is stored `k x n` or `n x k`.
///
/// As in BLAS, `beta = 0` overwrites `C` without reading it (NaN there does not propagate),
/// and `k = 0` scales `C` by `beta`. `C` must not overlap `A` or `B`. Dimensions and leading
/// dimensions must fit in 32 bits (cuBLAS's `int`). The Gram matrix `X^T X` of a row-major
/// `rows x d` block `X` is `m = n = d`, `k = rows`, `A = B = X` with `transpose_a`.
#[derive(Debug, Clone, Copy)]
pub struct Gemm<'b> {
    /// Element type: `F32` or `F64`.
    pub dtype: DType,
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// The product's factor (rounded to `f32` for `F32`).
    pub alpha: f64,
    /// `A`.
    pub a: MatrixRef<'b>,
    /// Whether `op(A)` is `A^T` (`A` stored `k x m`).
    pub transpose_a: bool,
    /// `B`.
    pub b: MatrixRef<'b>,
    /// Whether `op(B)` is `B^T` (`B` stored `n x k`).
    pub transpose_b: bool,
    /// `C`'s factor (rounded to `f32` for `F32`); 0 ignores `C`'s contents.
    pub beta: f64,
    /// `C`, written.
    pub c: MatrixRef<'b>,
}

/// The byte ranges a [`Gemm`] reads and writes, from [`Gemm::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GemmSpans {
    pub(crate) a: std::ops::Range<usize>,
    pub(crate) b: std::ops::Range<usize>,
    pub(crate) c: std::ops::Range<usize>,
}

impl Gemm<'_> {
    /// The kernel name a device reports for this product (`gemm_f32`, `gemm_f64`).
    pub fn name(&self) -> String {
        format!("gemm_{}", self.dtype.suffix())
    }

    /// `A`'s stored shape (rows, columns).
    pub fn a_shape(&self) -> (usize, usize) {
        if self.transpose_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }

    /// `B`'s stored shape (rows, columns).
    pub fn b_shape(&self) -> (usize, usize) {
        if self.transpose_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }

    /// The checks every device runs before enqueueing the product: the dtype, 32-bit
    /// dimensions, leading dimensions, aligned offsets, every operand within its buffer, and
    /// `C` overlapping neither `A` nor `B`. Returns the byte ranges of `A`, `B` and `C`.
    pub(crate) fn check(&self) -> Result<GemmSpans> {
        let what = "matrix product";
        let size = float_size(what, self.dtype)?;
        for (name, v) in [
            ("m", self.m),
            ("n", self.n),
            ("k", self.k),
            ("lda", self.a.ld),
            ("ldb", self.b.ld),
            ("ldc", self.c.ld),
        ] {
            check_i32(what, name, v)?;
        }
        let (ar, ac) = self.a_shape();
        let (br, bc) = self.b_shape();
        let a = self.a.span("matrix product operand A", ar, ac, size)?;
        let b = self.b.span("matrix product operand B", br, bc, size)?;
        let c = self
            .c
            .span("matrix product result C", self.m, self.n, size)?;
        if overlaps(self.c.buffer, &c, self.a.buffer, &a)
            || overlaps(self.c.buffer, &c, self.b.buffer, &b)
        {
            return Err(Error::Device(
                "matrix product: the result C overlaps an operand".into(),
            ));
        }
        Ok(GemmSpans { a, b, c })
    }

    /// Multiply-adds of the product (`m n k`), for time models.
    pub fn work(&self) -> f64 {
        self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Eigenvalues and eigenvectors of a symmetric `n x n` matrix in a device buffer:
/// `values` receives the `n` eigenvalues in ascending order, and row `j` of the row-major
/// `n x n` `vectors` the unit eigenvector of `values[j]` (what cuSOLVER's column-major
/// `syevd` output is, read row-major). The matrix is read, not changed; it must not overlap
/// the outputs. Offsets are in bytes, multiples of the element size.
///
/// The caller reads only the `largest` largest eigenpairs (the last `largest` values and
/// rows); a device may compute all of them (cuSOLVER does) and its
/// [`reference`](Self::reference) may compute only those. `n` must fit in 32 bits.
pub struct SymmetricEigen<'b> {
    /// Element type: `F32` or `F64`.
    pub dtype: DType,
    /// Rows and columns of the matrix.
    pub n: usize,
    /// The symmetric matrix, row-major (`n x n`, contiguous rows) from `matrix_offset`.
    pub matrix: &'b DeviceBuffer,
    /// Byte offset of the matrix in its buffer.
    pub matrix_offset: usize,
    /// Receives the `n` eigenvalues, ascending.
    pub values: &'b DeviceBuffer,
    /// Byte offset of the eigenvalues in their buffer.
    pub values_offset: usize,
    /// Receives the eigenvectors, one per row (`n x n`).
    pub vectors: &'b DeviceBuffer,
    /// Byte offset of the eigenvectors in their buffer.
    pub vectors_offset: usize,
    /// The eigenpairs the caller reads: the `largest` largest (at least 1, at most `n`).
    pub largest: usize,
    /// What the solver computes, on the host: the matrix's `n * n` elements' bytes in
    /// (one input), the bytes of `values` (`n` elements) and of `vectors` (`n * n`) out, in
    /// the layout above; entries of eigenpairs other than the `largest` largest may be
    /// anything. Devices that run a solver ignore it; the simulated device runs it in the
    /// solver's place. It is the CPU eigensolver the caller would otherwise use.
    pub reference: &'b HostFn<'b>,
}

impl std::fmt::Debug for SymmetricEigen<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricEigen")
            .field("dtype", &self.dtype)
            .field("n", &self.n)
            .field("largest", &self.largest)
            .finish_non_exhaustive()
    }
}

/// The byte ranges a [`SymmetricEigen`] reads and writes, from [`SymmetricEigen::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EigenSpans {
    pub(crate) matrix: std::ops::Range<usize>,
    pub(crate) values: std::ops::Range<usize>,
    pub(crate) vectors: std::ops::Range<usize>,
}

impl SymmetricEigen<'_> {
    /// The kernel name a device reports for this solve (`syevd_f32`, `syevd_f64`).
    pub fn name(&self) -> String {
        format!("syevd_{}", self.dtype.suffix())
    }

    /// The checks every device runs first: the dtype, `n` within 32 bits, `largest` within
    /// `1..=n` (for `n > 0`), aligned offsets, every range within its buffer, and the matrix
    /// overlapping neither output. Returns the byte ranges of the matrix, values and vectors.
    pub(crate) fn check(&self) -> Result<EigenSpans> {
        let what = "symmetric eigensolver";
        let size = float_size(what, self.dtype)?;
        check_i32(what, "n", self.n)?;
        if self.n > 0 && !(1..=self.n).contains(&self.largest) {
            return Err(Error::Device(format!(
                "{what}: {} largest eigenpairs asked of a {n} x {n} matrix",
                self.largest,
                n = self.n
            )));
        }
        let n = self.n;
        let matrix = MatrixRef {
            buffer: self.matrix,
            offset: self.matrix_offset,
            ld: n,
        }
        .span("eigensolver matrix", n, n, size)?;
        let values = MatrixRef {
            buffer: self.values,
            offset: self.values_offset,
            ld: n,
        }
        .span("eigenvalues", 1.min(n), n, size)?;
        let vectors = MatrixRef {
            buffer: self.vectors,
            offset: self.vectors_offset,
            ld: n,
        }
        .span("eigenvectors", n, n, size)?;
        if overlaps(self.matrix, &matrix, self.values, &values)
            || overlaps(self.matrix, &matrix, self.vectors, &vectors)
            || overlaps(self.values, &values, self.vectors, &vectors)
        {
            return Err(Error::Device(format!(
                "{what}: the matrix, eigenvalues and eigenvectors must not overlap"
            )));
        }
        Ok(EigenSpans {
            matrix,
            values,
            vectors,
        })
    }

    /// Operations of the solve (`n^3`), for time models.
    pub fn work(&self) -> f64 {
        (self.n as f64).powi(3)
    }
}

/// `C = alpha op(A) op(B) + beta C` on host copies: `a`, `b` and `c` hold the bytes of the
/// operands' spans (from their first element), `c` is overwritten. ndarray's
/// `general_mat_mul`, so the result is bit for bit `op(A).dot(&op(B))` (for `beta = 0`,
/// `alpha = 1`) on the same values.
pub(crate) fn host_gemm(g: &Gemm<'_>, a: &[u8], b: &[u8], c: &mut [u8]) {
    match g.dtype {
        DType::F32 => host_gemm_typed::<f32>(g, a, b, c, g.alpha as f32, g.beta as f32),
        _ => host_gemm_typed::<f64>(g, a, b, c, g.alpha, g.beta),
    }
}

/// The element types of [`host_gemm`], as native-endian bytes.
trait Element: ndarray::LinalgScalar + num_traits::Float {
    const SIZE: usize;
    fn read(bytes: &[u8]) -> Self;
    fn write(self, bytes: &mut [u8]);
}

impl Element for f32 {
    const SIZE: usize = 4;
    fn read(bytes: &[u8]) -> Self {
        f32::from_ne_bytes(bytes.try_into().expect("4 bytes"))
    }
    fn write(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_ne_bytes())
    }
}

impl Element for f64 {
    const SIZE: usize = 8;
    fn read(bytes: &[u8]) -> Self {
        f64::from_ne_bytes(bytes.try_into().expect("8 bytes"))
    }
    fn write(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_ne_bytes())
    }
}

fn decode<T: Element>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read).collect()
}

fn host_gemm_typed<T: Element>(g: &Gemm<'_>, a: &[u8], b: &[u8], c: &mut [u8], alpha: T, beta: T) {
    use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
    if g.m == 0 || g.n == 0 {
        return;
    }
    let mut cv = decode::<T>(c);
    {
        let mut cm = ArrayViewMut2::from_shape((g.m, g.n).strides((g.c.ld, 1)), &mut cv)
            .expect("checked span of C");
        if g.k == 0 {
            // No products: C = beta C (beta = 0 clears it, as BLAS does).
            cm.mapv_inplace(|x| {
                if beta == T::zero() {
                    T::zero()
                } else {
                    beta * x
                }
            });
        } else {
            let (av, bv) = (decode::<T>(a), decode::<T>(b));
            let ((ar, ac), (br, bc)) = (g.a_shape(), g.b_shape());
            let am = ArrayView2::from_shape((ar, ac).strides((g.a.ld, 1)), &av)
                .expect("checked span of A");
            let bm = ArrayView2::from_shape((br, bc).strides((g.b.ld, 1)), &bv)
                .expect("checked span of B");
            let am = if g.transpose_a {
                am.reversed_axes()
            } else {
                am
            };
            let bm = if g.transpose_b {
                bm.reversed_axes()
            } else {
                bm
            };
            ndarray::linalg::general_mat_mul(alpha, &am, &bm, beta, &mut cm);
        }
    }
    for (x, out) in cv.into_iter().zip(c.chunks_exact_mut(T::SIZE)) {
        x.write(out);
    }
}

#[cfg(test)]
#[path = "linalg_tests.rs"]
mod tests;
