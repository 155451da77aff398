//! Dense linear algebra on a [`CudaDevice`]: the matrix product through cuBLAS (`Sgemm`,
//! `Dgemm`) and the symmetric eigensolver through cuSOLVER (`Ssyevd`, `Dsyevd`).
//!
//! **Not yet run on a GPU**: this code compiles and follows cuBLAS's and cuSOLVER's
//! documented contracts (read through cudarc 0.17's bindings), but no test has executed it;
//! the simulated device's versions are what the tests check.
//!
//! - Both libraries are loaded at run time, like the driver: each call first checks that its
//!   library loads ([`ensure_cublas`], [`ensure_cusolver`]); a missing library is
//!   `Error::DeviceUnavailable` naming it, never a panic.
//! - Handles are created on first use, one per [`Queue`], each bound to that queue's stream,
//!   and used under a lock (a handle's workspace is not shared between concurrent calls).
//! - Row-major to column-major: a row-major `r x c` matrix with leading dimension `ld` is the
//!   column-major `c x r` matrix with the same `ld`, its transpose. So the row-major
//!   `C = op(A) op(B)` is the column-major `C^T = op(B)^T op(A)^T`: cuBLAS is called with the
//!   operands swapped, `m` and `n` swapped, and each operand's transpose flag as given.
//! - `syevd` overwrites its input with the eigenvectors: the matrix is first copied into the
//!   eigenvector buffer on the queue's stream, and solved there (a symmetric matrix is its own
//!   transpose, so the layouts agree; the lower triangle is read). Column `j` of the
//!   column-major result, the eigenvector of the `j`-th smallest eigenvalue, is row `j` when
//!   read row-major, which is [`SymmetricEigen`]'s layout. The workspace and the status word
//!   come from the device's caching allocator; the host waits for the status word and a
//!   nonzero one is `Error::Device`.

use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::cublas::{result as cublas, sys as cublas_sys, CudaBlas};
use cudarc::cusolver::{sys as cusolver_sys, DnHandle};
use cudarc::driver::result as driver;
use cudarc::driver::CudaStream;

use super::alloc::CudaAlloc;
use super::discovery::{ensure_cublas, ensure_cusolver};
use super::error::gpu_err;
use super::{lock, CudaDevice};
use crate::device::codec::DType;
use crate::device::{Device, Gemm, Queue, SymmetricEigen};
use crate::error::{Error, Result};

/// The cuBLAS and cuSOLVER handles of a device, created on first use, one per queue.
#[derive(Default)]
pub(super) struct LinalgHandles {
    blas: [Mutex<Option<CudaBlas>>; 3],
    solver: [Mutex<Option<DnHandle>>; 3],
}

impl LinalgHandles {
    /// `queue`'s cuBLAS handle (created, bound to `stream`, on first use), locked.
    fn blas(
        &self,
        queue: Queue,
        stream: &Arc<CudaStream>,
    ) -> Result<MutexGuard<'_, Option<CudaBlas>>> {
        let mut slot = lock(&self.blas[queue.index()]);
        if slot.is_none() {
            let handle = CudaBlas::new(stream.clone()).map_err(|e| {
                Error::Device(format!(
                    "creating a cuBLAS handle on the {queue:?} queue: {e}"
                ))
            })?;
            *slot = Some(handle);
        }
        Ok(slot)
    }

    /// `queue`'s cuSOLVER dense handle (created, bound to `stream`, on first use), locked.
    fn solver(
        &self,
        queue: Queue,
        stream: &Arc<CudaStream>,
    ) -> Result<MutexGuard<'_, Option<DnHandle>>> {
        let mut slot = lock(&self.solver[queue.index()]);
        if slot.is_none() {
            let handle = DnHandle::new(stream.clone()).map_err(|e| {
                Error::Device(format!(
                    "creating a cuSOLVER handle on the {queue:?} queue: {e}"
                ))
            })?;
            *slot = Some(handle);
        }
        Ok(slot)
    }
}

fn operation(transpose: bool) -> cublas_sys::cublasOperation_t {
    if transpose {
        cublas_sys::cublasOperation_t::CUBLAS_OP_T
    } else {
        cublas_sys::cublasOperation_t::CUBLAS_OP_N
    }
}

/// A dimension already checked to fit in 32 bits ([`Gemm`] and [`SymmetricEigen`] check them).
fn int(v: usize) -> i32 {
    i32::try_from(v).expect("checked to fit in 32 bits")
}

impl CudaDevice {
    /// [`Device::gemm_on`]: cuBLAS's `gemm` on `queue`'s stream (see the module docs).
    pub(super) fn cublas_gemm(&self, queue: Queue, g: &Gemm<'_>) -> Result<()> {
        let spans = g.check()?;
        let (a, b, c) = (
            self.alloc_of(g.a.buffer)?,
            self.alloc_of(g.b.buffer)?,
            self.alloc_of(g.c.buffer)?,
        );
        if g.m > 0 && g.n > 0 {
            ensure_cublas().map_err(Error::DeviceUnavailable)?;
            self.shared.streams.bind()?;
            let stream = &self.shared.streams.streams[queue.index()];
            let blas = self.linalg.blas(queue, stream)?;
            let blas = blas.as_ref().expect("created above");
            let buffers = [a, b, c];
            for alloc in buffers {
                alloc.touch(queue);
            }
            let (pa, pb, pc) = (
                a.ptr + spans.a.start as u64,
                b.ptr + spans.b.start as u64,
                c.ptr + spans.c.start as u64,
            );
            // Column-major C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m).
            let (transa, transb) = (operation(g.transpose_b), operation(g.transpose_a));
            let (m, n, k) = (int(g.n), int(g.m), int(g.k));
            let (lda, ldb, ldc) = (int(g.b.ld), int(g.a.ld), int(g.c.ld));
            // SAFETY: cuBLAS loads (checked above) and the handle is bound to `queue`'s stream
            // of this device's context (bound to the thread). The pointers are the operands'
            // first elements inside live allocations of this device, and `Gemm::check` showed
            // that each column-major operand (`ld` >= its leading extent, every element within
            // its buffer) is valid and that C overlaps neither A nor B. `alpha` and `beta` are
            // host values read during the call (host pointer mode, cuBLAS's default). The
            // stream orders the product after earlier work on `queue`; the caller orders other
            // queues' work with events, and the buffers are marked as used on `queue` below,
            // so their blocks are not reused before the product is done.
            let status = unsafe {
                match g.dtype {
                    DType::F32 => {
                        let (alpha, beta) = (g.alpha as f32, g.beta as f32);
                        cublas::sgemm(
                            *blas.handle(),
                            transa,
                            transb,
                            m,
                            n,
                            k,
                            &alpha,
                            pb as *const f32,
                            lda,
                            pa as *const f32,
                            ldb,
                            &beta,
                            pc as *mut f32,
                            ldc,
                        )
                    }
                    _ => cublas::dgemm(
                        *blas.handle(),
                        transa,
                        transb,
                        m,
                        n,
                        k,
                        &g.alpha,
                        pb as *const f64,
                        lda,
                        pa as *const f64,
                        ldb,
                        &g.beta,
                        pc as *mut f64,
                        ldc,
                    ),
                }
            };
            status.map_err(|e| {
                Error::Device(format!(
                    "cuBLAS {} ({} x {} x {}): {e}",
                    g.name(),
                    g.m,
                    g.n,
                    g.k
                ))
            })?;
            self.shared.alloc.mark_used(queue, &buffers);
        }
        self.update(|s| s.launches += 1);
        Ok(())
    }

    /// [`Device::symmetric_eigen_on`]: cuSOLVER's `syevd` on `queue`'s stream (see the module
    /// docs); waits for the status word.
    pub(super) fn cusolver_syevd(&self, queue: Queue, e: &SymmetricEigen<'_>) -> Result<()> {
        let spans = e.check()?;
        let (matrix, values, vectors) = (
            self.alloc_of(e.matrix)?,
            self.alloc_of(e.values)?,
            self.alloc_of(e.vectors)?,
        );
        if e.n == 0 {
            self.update(|s| s.launches += 1);
            return Ok(());
        }
        ensure_cusolver().map_err(Error::DeviceUnavailable)?;
        self.shared.streams.bind()?;
        let stream = &self.shared.streams.streams[queue.index()];
        let size = e.dtype.size();
        let n = int(e.n);
        let (pm, pw, pa) = (
            matrix.ptr + spans.matrix.start as u64,
            values.ptr + spans.values.start as u64,
            vectors.ptr + spans.vectors.start as u64,
        );
        for alloc in [matrix, values, vectors] {
            alloc.touch(queue);
        }
        // SAFETY: both ranges lie in live allocations of this device and do not overlap
        // (`SymmetricEigen::check`); the stream orders the copy after earlier work on `queue`.
        unsafe { driver::memcpy_dtod_async(pa, pm, spans.matrix.len(), stream.cu_stream()) }
            .map_err(|err| {
                gpu_err(
                    "copying the matrix to solve into the eigenvector buffer",
                    err,
                )
            })?;
        self.shared
            .alloc
            .mark_used(queue, &[matrix, values, vectors]);

        let solver = self.linalg.solver(queue, stream)?;
        let handle = solver.as_ref().expect("created above").cu();
        let jobz = cusolver_sys::cusolverEigMode_t::CUSOLVER_EIG_MODE_VECTOR;
        let uplo = cusolver_sys::cublasFillMode_t::CUBLAS_FILL_MODE_LOWER;
        let mut lwork: i32 = 0;
        // SAFETY: cuSOLVER loads (checked above); the handle is bound to `queue`'s stream of
        // this context. The buffer-size query reads only the dimensions (the pointers are
        // valid device pointers of the right sizes all the same) and writes `lwork`.
        let status = unsafe {
            match e.dtype {
                DType::F32 => cusolver_sys::cusolverDnSsyevd_bufferSize(
                    handle,
                    jobz,
                    uplo,
                    n,
                    pa as *const f32,
                    n,
                    pw as *const f32,
                    &mut lwork,
                ),
                _ => cusolver_sys::cusolverDnDsyevd_bufferSize(
                    handle,
                    jobz,
                    uplo,
                    n,
                    pa as *const f64,
                    n,
                    pw as *const f64,
                    &mut lwork,
                ),
            }
        };
        status.result().map_err(|err| {
            Error::Device(format!("cuSOLVER {}_bufferSize (n = {n}): {err}", e.name()))
        })?;
        let work_elements = usize::try_from(lwork.max(1)).expect("positive");
        let work = self.alloc_on(queue, work_elements * size)?;
        let info = self.alloc_on(queue, std::mem::size_of::<i32>())?;
        let (work_alloc, info_alloc) = (self.alloc_of(&work)?, self.alloc_of(&info)?);
        work_alloc.touch(queue);
        info_alloc.touch(queue);
        // SAFETY: as above; `pa` holds the n x n matrix (column-major, ld = n: symmetric, so
        // its row-major copy), `pw` room for n values, `work` `lwork` elements and `info` one
        // int, all live allocations of this device used on `queue`'s stream, none overlapping.
        let status = unsafe {
            match e.dtype {
                DType::F32 => cusolver_sys::cusolverDnSsyevd(
                    handle,
                    jobz,
                    uplo,
                    n,
                    pa as *mut f32,
                    n,
                    pw as *mut f32,
                    work_alloc.ptr as *mut f32,
                    lwork,
                    info_alloc.ptr as *mut i32,
                ),
                _ => cusolver_sys::cusolverDnDsyevd(
                    handle,
                    jobz,
                    uplo,
                    n,
                    pa as *mut f64,
                    n,
                    pw as *mut f64,
                    work_alloc.ptr as *mut f64,
                    lwork,
                    info_alloc.ptr as *mut i32,
                ),
            }
        };
        let used: [&CudaAlloc; 4] = [values, vectors, work_alloc, info_alloc];
        self.shared.alloc.mark_used(queue, &used);
        drop(solver);
        status
            .result()
            .map_err(|err| Error::Device(format!("cuSOLVER {} (n = {n}): {err}", e.name())))?;
        self.update(|s| s.launches += 1);

        // The status word: 0, or the solver's failure (a negative value names a bad
        // parameter, a positive one the off-diagonal elements that did not converge).
        let mut word = [0u8; 4];
        let pending = self.start_download(queue, &info, 4)?;
        self.finish_download(pending, &mut word)?;
        match i32::from_ne_bytes(word) {
            0 => Ok(()),
            bad if bad < 0 => Err(Error::Device(format!(
                "cuSOLVER {} (n = {n}): parameter {} was invalid",
                e.name(),
                -bad
            ))),
            bad => Err(Error::Device(format!(
                "cuSOLVER {} (n = {n}): {bad} off-diagonal elements did not converge \
                 (a matrix with NaN or infinite entries?)",
                e.name()
            ))),
        }
    }
}
