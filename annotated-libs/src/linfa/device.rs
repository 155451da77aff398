//! The ML steps of the linfa module on a device: Gram matrices, the top eigenpairs of a
//! Gram matrix (what a truncated SVD or a PCA needs), the standard scaler's and the PCA's
//! fits, the three models' transforms, and the k-nearest-neighbour vote, each over
//! `&dyn Device` and row-major `f64` device buffers, so that hand-written GPU code (the
//! benchmarks' gpu modes) and an annotation's `gpu_fn` can both call them.
//!
//! | step | device work | the CPU model it equals |
//! |---|---|---|
//! | [`gram_on`] | one [`Gemm`]: `X^T X` (`+ G` to accumulate row blocks) | [`Gram::of`](super::reduction::Gram::of) |
//! | [`top_components_on`] | one [`SymmetricEigen`] | [`TruncatedSvd::from_gram`](super::reduction::TruncatedSvd::from_gram) |
//! | [`standard_scaler_fit_on`] | `column_moments_f64` | [`StandardScaler::fit`] |
//! | [`pca_fit_on`] | moments, `center_f64`, a Gram [`Gemm`], a [`SymmetricEigen`] | [`Pca::fit`](super::reduction::Pca::fit) (up to sign) |
//! | [`transform_on`] | `center_scale_f64`, `center_f64`, a [`Gemm`] by `components^T` | the models' `transform` |
//! | [`knn_predict_on`] | `knn_predict_f64` | [`KNeighborsClassifier::predict`] |
//! | [`truncated_svd_on`] | the Gram matrix over paged row blocks, the solve, the transform block by block | [`TruncatedSvd::fit`](super::reduction::TruncatedSvd::fit) and `transform` |
//!
//! Shapes: a [`MatrixView`] is `rows x cols`, row-major with contiguous rows, anywhere in a
//! buffer (a block of rows of a bigger matrix is one); a [`DeviceMatrix`] owns its buffer.
//! Results are written into matrices the caller allocated (`rows x cols` as each function
//! says) or returned as host values when they are small (models, labels).
//!
//! **Equality with the CPU.** Every launch carries a host stand-in (its
//! [`reference`](bach_runtime::Launch::reference)) that computes what the kernel computes
//! with the CPU model's own code (ndarray's `mean_axis`/`var_axis`, linfa's scaling, the
//! vote); the simulated device runs it, so results there are the CPU's bit for bit, except
//! the PCA's components, which come from the Gram matrix's eigenvectors
//! ([`super::top_eigen`], and cuSOLVER on a GPU) rather than linfa's LOBPCG (they agree to
//! about 1e-13 on the Wine data) and are normalised in sign (largest entry positive) as
//! the truncated SVD's are. The kernels (`kernels/linfa.cu`, `kernels/knn.cu`) perform the
//! same operations in the same order without fused multiply-adds (the host C++ tests
//! check them against the stand-ins), and matrix products are cuBLAS's: on a GPU, Gram
//! matrices and projections differ from the CPU's in rounding only.
//!
//! The k-nearest-neighbour kernel orders neighbours by (distance, training row). linfa's
//! k-d tree finds the same `k` rows unless several rows tie exactly at the k-th distance;
//! there its pick depends on the tree, so predictions may differ on such exact ties (tests
//! use data without them).
//!
//! Input checks are the CPU models' ([`super::error`]): the host data is checked before it
//! is uploaded ([`DeviceMatrix::upload_checked`]); device data is trusted to be finite.

pub mod gpu_fns;

use bach_runtime::{
    DType, Device, DeviceBuffer, Gemm, KernelArg, KernelSource, Launch, LaunchShape, MatrixRef,
    Queue, SymmetricEigen,
};
use ndarray::{Array1, Array2, ArrayBase, Axis, Data, Ix2};

use super::error::{check_finite, LinfaError};
use super::nn::KNeighborsClassifier;
use super::preprocessing::StandardScaler;
use super::reduction::{Pca, TruncatedSvd};
use super::top_eigen::top_eigenpairs;

/// The CUDA source of the linfa kernels (`common.cuh`, `kernels/linfa.cu`, `kernels/knn.cu`).
pub const LINFA_KERNELS: KernelSource = KernelSource {
    name: "linfa.cu",
    code: concat!(
        include_str!("../../kernels/common.cuh"),
        include_str!("../../kernels/linfa.cu"),
        include_str!("../../kernels/knn.cu")
    ),
};

/// The most neighbours [`knn_predict_on`] votes with (`BACH_KNN_MAX_K` in `knn.cu`: each
/// thread keeps its nearest rows in registers).
pub const KNN_MAX_K: usize = 64;

const PCA: &str = "PCA";
const TSVD: &str = "TruncatedSVD";
const SCALER: &str = "StandardScaler";
const KNN: &str = "KNeighborsClassifier";

/// Why a device step failed.
#[derive(Debug)]
pub enum DeviceLinfaError {
    /// The input is invalid, as for the CPU model.
    Input(LinfaError),
    /// More neighbours than the device vote supports ([`KNN_MAX_K`]).
    TooManyNeighbours {
        /// The neighbours asked for.
        k: usize,
        /// [`KNN_MAX_K`].
        max: usize,
    },
    /// The device failed: too little memory (`Error::DeviceOutOfMemory`), a launch, a
    /// transfer, a missing device library.
    Device(bach_runtime::Error),
}

impl std::fmt::Display for DeviceLinfaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceLinfaError::Input(e) => write!(f, "{e}"),
            DeviceLinfaError::TooManyNeighbours { k, max } => write!(
                f,
                "{KNN}: n_neighbors = {k}, but the device vote supports at most {max}"
            ),
            DeviceLinfaError::Device(e) => write!(f, "linfa on a device: {e}"),
        }
    }
}

impl std::error::Error for DeviceLinfaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeviceLinfaError::Input(e) => Some(e),
            DeviceLinfaError::TooManyNeighbours { .. } => None,
            DeviceLinfaError::Device(e) => Some(e),
        }
    }
}

impl From<LinfaError> for DeviceLinfaError {
    fn from(e: LinfaError) -> Self {
        DeviceLinfaError::Input(e)
    }
}

impl From<bach_runtime::Error> for DeviceLinfaError {
    fn from(e: bach_runtime::Error) -> Self {
        DeviceLinfaError::Device(e)
    }
}

/// The result of a device step.
pub type Result<T> = std::result::Result<T, DeviceLinfaError>;

// ---- matrices on a device ------------------------------------------------------------------

/// `rows x cols` `f64`s, row-major with contiguous rows, starting `offset` bytes into a
/// device buffer: a whole [`DeviceMatrix`], or a block of its rows.
#[derive(Debug, Clone, Copy)]
pub struct MatrixView<'b> {
    /// The buffer.
    pub buffer: &'b DeviceBuffer,
    /// Byte offset of the first element (a multiple of 8).
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns (the distance between rows, in elements).
    pub cols: usize,
}

impl<'b> MatrixView<'b> {
    /// As an operand of a [`Gemm`].
    fn operand(&self) -> MatrixRef<'b> {
        MatrixRef::new(self.buffer, self.cols.max(1)).at(self.offset)
    }

    /// Its elements' bytes within a launch's host copy of the whole buffer.
    fn bytes<'h>(&self, buffer: &'h [u8]) -> &'h [u8] {
        &buffer[self.offset..self.offset + self.rows * self.cols * 8]
    }

    /// An error unless it lies within its buffer.
    fn check(&self, what: &str) -> bach_runtime::Result<()> {
        let end = self
            .rows
            .checked_mul(self.cols)
            .and_then(|e| e.checked_mul(8))
            .and_then(|b| b.checked_add(self.offset));
        match end {
            Some(end) if end <= self.buffer.len() && self.offset.is_multiple_of(8) => Ok(()),
            _ => Err(bach_runtime::Error::Device(format!(
                "{what}: {} x {} f64s at byte offset {} do not fit a {}-byte buffer",
                self.rows,
                self.cols,
                self.offset,
                self.buffer.len()
            ))),
        }
    }
}

/// A row-major `rows x cols` matrix of `f64` in its own device buffer.
#[derive(Debug)]
pub struct DeviceMatrix {
    buffer: DeviceBuffer,
    rows: usize,
    cols: usize,
}

impl DeviceMatrix {
    /// A matrix of uninitialised contents (zeros on the simulated device).
    pub fn alloc(dev: &dyn Device, rows: usize, cols: usize) -> bach_runtime::Result<Self> {
        let bytes = rows
            .checked_mul(cols)
            .and_then(|e| e.checked_mul(8))
            .ok_or(bach_runtime::Error::DeviceOutOfMemory {
                requested: usize::MAX,
                free: dev.free_memory(),
            })?;
        Ok(DeviceMatrix {
            buffer: dev.alloc(bytes)?,
            rows,
            cols,
        })
    }

    /// A copy of `x` on the device (on the compute queue).
    pub fn upload<S: Data<Elem = f64>>(
        dev: &dyn Device,
        x: &ArrayBase<S, Ix2>,
    ) -> bach_runtime::Result<Self> {
        let m = DeviceMatrix::alloc(dev, x.nrows(), x.ncols())?;
        let x = x.as_standard_layout();
        let values = x.as_slice().expect("standard layout");
        dev.upload(&f64_bytes(values), &m.buffer)?;
        Ok(m)
    }

    /// [`upload`](Self::upload) after the CPU model's check: every value finite
    /// (`LinfaError::NotFinite` of `model` naming the first offender).
    pub fn upload_checked<S: Data<Elem = f64>>(
        dev: &dyn Device,
        model: &'static str,
        x: &ArrayBase<S, Ix2>,
    ) -> Result<Self> {
        check_finite(model, x)?;
        Ok(DeviceMatrix::upload(dev, x)?)
    }

    /// The matrix, copied to the host (after the work on the compute queue).
    pub fn download(&self, dev: &dyn Device) -> bach_runtime::Result<Array2<f64>> {
        let mut bytes = vec![0u8; self.rows * self.cols * 8];
        if !bytes.is_empty() {
            dev.download(&self.buffer, &mut bytes)?;
        }
        Ok(Array2::from_shape_vec((self.rows, self.cols), f64s(&bytes)).expect("rows x cols"))
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The device buffer.
    pub fn buffer(&self) -> &DeviceBuffer {
        &self.buffer
    }

    /// The whole matrix.
    pub fn view(&self) -> MatrixView<'_> {
        MatrixView {
            buffer: &self.buffer,
            offset: 0,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Rows `rows` of the matrix.
    pub fn row_block(&self, rows: std::ops::Range<usize>) -> MatrixView<'_> {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "rows {rows:?} of a {}-row matrix",
            self.rows
        );
        MatrixView {
            buffer: &self.buffer,
            offset: rows.start * self.cols * 8,
            rows: rows.len(),
            cols: self.cols,
        }
    }
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// A device vector of `f64`.
fn upload_vector(dev: &dyn Device, v: &[f64]) -> bach_runtime::Result<DeviceBuffer> {
    let buf = dev.alloc(v.len() * 8)?;
    if !v.is_empty() {
        dev.upload(&f64_bytes(v), &buf)?;
    }
    Ok(buf)
}

fn download_vector(
    dev: &dyn Device,
    buf: &DeviceBuffer,
    len: usize,
) -> bach_runtime::Result<Vec<f64>> {
    let mut bytes = vec![0u8; len * 8];
    if len > 0 {
        let pending = dev.start_download(Queue::Compute, buf, len * 8)?;
        dev.finish_download(pending, &mut bytes)?;
    }
    Ok(f64s(&bytes))
}

/// A 32-bit kernel argument (the kernels index with `int`).
fn int(what: &str, v: usize) -> bach_runtime::Result<i32> {
    i32::try_from(v).map_err(|_| {
        bach_runtime::Error::Device(format!("{what} = {v} exceeds the kernels' 32-bit indices"))
    })
}

/// A host stand-in: input buffers' bytes in, output buffers' bytes out.
type HostStandIn<'b> = dyn Fn(&[&[u8]]) -> bach_runtime::Result<Vec<Vec<u8>>> + Sync + 'b;

fn launch(
    dev: &dyn Device,
    kernel: &str,
    n: usize,
    args: Vec<KernelArg<'_>>,
    reference: &HostStandIn<'_>,
) -> bach_runtime::Result<()> {
    dev.launch(&Launch {
        source: LINFA_KERNELS,
        kernel: kernel.into(),
        n,
        shape: LaunchShape::Elementwise,
        args,
        reference,
    })
}

// ---- Gram matrices and eigenpairs ----------------------------------------------------------

/// The Gram matrix `X^T X` of the `rows x d` block `x`, into the `d x d` matrix `gram`:
/// overwriting it, or with `accumulate` added to it (so the Gram matrix of row blocks is
/// summed on the device). One [`Gemm`] on the compute queue; with all rows in one block and
/// `accumulate` false, the simulated device's result is `x.t().dot(&x)` bit for bit.
pub fn gram_on(
    dev: &dyn Device,
    x: MatrixView<'_>,
    gram: &DeviceMatrix,
    accumulate: bool,
) -> bach_runtime::Result<()> {
    x.check("Gram matrix rows")?;
    let d = x.cols;
    if gram.rows != d || gram.cols != d {
        return Err(bach_runtime::Error::Device(format!(
            "the Gram matrix of {d} features is {d} x {d}, not {} x {}",
            gram.rows, gram.cols
        )));
    }
    let a = x.operand();
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            dtype: DType::F64,
            m: d,
            n: d,
            k: x.rows,
            alpha: 1.0,
            a,
            transpose_a: true,
            b: a,
            transpose_b: false,
            beta: if accumulate { 1.0 } else { 0.0 },
            c: MatrixRef::new(&gram.buffer, d.max(1)),
        },
    )
}

/// The top `k` eigenpairs of a Gram matrix, as a truncated SVD keeps them.
#[derive(Debug)]
pub struct TopComponents {
    /// The singular values `sqrt(max(0, eigenvalue))`, largest first.
    pub singular_values: Array1<f64>,
    /// The eigenvectors, one per row (`k x d`), each signed so that its largest-magnitude
    /// entry is positive (as [`TruncatedSvd`] signs them).
    pub components: Array2<f64>,
    /// `components` on the device (what [`transform_on`] multiplies by).
    pub components_on: DeviceMatrix,
}

/// The `k` largest eigenpairs of the `d x d` Gram matrix `gram` of `rows` rows, as
/// [`TruncatedSvd::from_gram`](super::reduction::TruncatedSvd::from_gram) computes them:
/// the same checks (`NoSamples`, `NoFeatures`, `BadComponents` with `k` in
/// `1..=min(rows, d)`, `Overflow` for a non-finite matrix), one [`SymmetricEigen`] whose
/// reference is [`top_eigenpairs`] (so on the simulated device the result equals the CPU's
/// bit for bit; cuSOLVER's on a GPU agrees to its precision, up to sign before the
/// normalisation), and the same sign normalisation.
///
/// Device memory: `d^2 + d` values for the solve's outputs, `k d` for the components
/// (besides `gram`).
pub fn top_components_on(
    dev: &dyn Device,
    gram: &DeviceMatrix,
    rows: usize,
    k: usize,
) -> Result<TopComponents> {
    top_components_of(dev, TSVD, gram, rows, k)
}

fn top_components_of(
    dev: &dyn Device,
    model: &'static str,
    gram: &DeviceMatrix,
    rows: usize,
    k: usize,
) -> Result<TopComponents> {
    let d = gram.rows;
    if gram.cols != d {
        return Err(bach_runtime::Error::Device(format!(
            "a Gram matrix is square, not {d} x {}",
            gram.cols
        ))
        .into());
    }
    if rows == 0 {
        return Err(LinfaError::NoSamples { model }.into());
    }
    if d == 0 {
        return Err(LinfaError::NoFeatures { model }.into());
    }
    let limit = rows.min(d);
    if k == 0 || k > limit {
        return Err(LinfaError::BadComponents {
            model,
            components: k,
            limit,
        }
        .into());
    }
    let values = dev.alloc(d * 8)?;
    let vectors = DeviceMatrix::alloc(dev, d, d)?;
    // The CPU's solver: the k largest pairs, written where a full solve puts them (the
    // last k values, ascending; the last k rows); a non-finite matrix gives NaN.
    let reference = |input: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
        let a = Array2::from_shape_vec((d, d), f64s(input[0])).expect("d x d");
        let mut w = vec![0.0; d];
        let mut v = vec![0.0; d * d];
        match top_eigenpairs(model, a, k) {
            Ok((top, vecs)) => {
                for c in 0..k {
                    let j = d - 1 - c;
                    w[j] = top[c];
                    for i in 0..d {
                        v[j * d + i] = vecs[(i, c)];
                    }
                }
            }
            Err(_) => w.iter_mut().for_each(|x| *x = f64::NAN),
        }
        Ok(vec![f64_bytes(&w), f64_bytes(&v)])
    };
    dev.symmetric_eigen_on(
        Queue::Compute,
        &SymmetricEigen {
            dtype: DType::F64,
            n: d,
            matrix: &gram.buffer,
            matrix_offset: 0,
            values: &values,
            values_offset: 0,
            vectors: &vectors.buffer,
            vectors_offset: 0,
            largest: k,
            reference: &reference,
        },
    )?;
    let w = download_vector(dev, &values, d)?;
    // The last k rows only.
    let top_rows = DeviceMatrix::alloc(dev, k, d)?;
    dev.copy_on(
        Queue::Compute,
        &vectors.buffer,
        (d - k) * d * 8,
        &top_rows.buffer,
        0,
        k * d * 8,
    )?;
    let v = top_rows.download(dev)?;
    if w[d - k..].iter().any(|x| !x.is_finite()) || v.iter().any(|x| !x.is_finite()) {
        return Err(LinfaError::Overflow {
            model,
            what: "the Gram matrix",
        }
        .into());
    }
    let mut components = Array2::zeros((k, d));
    let mut singular_values = Array1::zeros(k);
    for c in 0..k {
        let j = k - 1 - c;
        let mut row = components.row_mut(c);
        row.assign(&v.row(j));
        // TruncatedSvd::from_gram's sign: the largest-magnitude entry positive.
        super::reduction::largest_entry_positive(row);
        singular_values[c] = w[d - 1 - c].max(0.0).sqrt();
    }
    let components_on = DeviceMatrix::upload(dev, &components)?;
    Ok(TopComponents {
        singular_values,
        components,
        components_on,
    })
}

// ---- fitted models on a device -------------------------------------------------------------

/// A fitted [`StandardScaler`] on a device: per feature, the mean and the factor
/// (`1 / deviation`, 1 for a constant feature).
#[derive(Debug)]
pub struct DeviceStandardScaler {
    /// The features' means.
    pub means: Array1<f64>,
    /// The factors applied after subtracting the means.
    pub scales: Array1<f64>,
    means_on: DeviceBuffer,
    scales_on: DeviceBuffer,
}

impl DeviceStandardScaler {
    /// A scaler fitted on the CPU, copied to the device.
    pub fn upload(dev: &dyn Device, scaler: &StandardScaler) -> Result<Self> {
        Self::from_parts(dev, scaler.means().clone(), scaler.scales().clone())
    }

    fn from_parts(dev: &dyn Device, means: Array1<f64>, scales: Array1<f64>) -> Result<Self> {
        Ok(DeviceStandardScaler {
            means_on: upload_vector(dev, means.as_slice().expect("a vector"))?,
            scales_on: upload_vector(dev, scales.as_slice().expect("a vector"))?,
            means,
            scales,
        })
    }

    /// The number of features.
    pub fn features(&self) -> usize {
        self.means.len()
    }
}

/// A fitted PCA on a device: mean, components (`k x d`, one per row), singular values and
/// scikit-learn's explained variance ratio, as [`Pca`] has them.
#[derive(Debug)]
pub struct DevicePca {
    /// The features' means over the fitting data.
    pub mean: Array1<f64>,
    /// The components, one per row.
    pub components: Array2<f64>,
    /// The singular values of the centred data, largest first (at least 1e-8, as linfa's).
    pub singular_values: Array1<f64>,
    /// Each component's share of the total variance.
    pub explained_variance_ratio: Array1<f64>,
    mean_on: DeviceBuffer,
    components_on: DeviceMatrix,
}

impl DevicePca {
    /// A PCA fitted on the CPU, copied to the device.
    pub fn upload(dev: &dyn Device, pca: &Pca) -> Result<Self> {
        Ok(DevicePca {
            mean_on: upload_vector(dev, pca.mean().as_slice().expect("a vector"))?,
            components_on: DeviceMatrix::upload(dev, pca.components())?,
            mean: pca.mean().clone(),
            components: pca.components().clone(),
            singular_values: pca.singular_values().clone(),
            explained_variance_ratio: pca.explained_variance_ratio().clone(),
        })
    }

    /// The number of features.
    pub fn features(&self) -> usize {
        self.mean.len()
    }
}

/// A fitted truncated SVD on a device: components (`k x d`) and singular values.
#[derive(Debug)]
pub struct DeviceTruncatedSvd {
    /// The right singular vectors, one per row, signed as [`TruncatedSvd`] signs them.
    pub components: Array2<f64>,
    /// The singular values, largest first.
    pub singular_values: Array1<f64>,
    components_on: DeviceMatrix,
}

impl DeviceTruncatedSvd {
    /// A truncated SVD fitted on the CPU, copied to the device.
    pub fn upload(dev: &dyn Device, svd: &TruncatedSvd) -> Result<Self> {
        Ok(DeviceTruncatedSvd {
            components_on: DeviceMatrix::upload(dev, svd.components())?,
            components: svd.components().clone(),
            singular_values: svd.singular_values().clone(),
        })
    }

    /// The fit from the summed `d x d` Gram matrix of `rows` rows ([`top_components_on`]).
    pub fn from_gram_on(
        dev: &dyn Device,
        gram: &DeviceMatrix,
        rows: usize,
        k: usize,
    ) -> Result<Self> {
        let top = top_components_on(dev, gram, rows, k)?;
        Ok(DeviceTruncatedSvd {
            components: top.components,
            singular_values: top.singular_values,
            components_on: top.components_on,
        })
    }

    /// The number of features.
    pub fn features(&self) -> usize {
        self.components.ncols()
    }
}

/// The columns' means (`mean_axis(Axis(0))`) and variances (`var_axis(Axis(0), ddof)`) of
/// `x`, computed on the device by `column_moments_f64` and returned to the host.
fn column_moments_on(
    dev: &dyn Device,
    x: MatrixView<'_>,
    ddof: f64,
) -> bach_runtime::Result<(Array1<f64>, Array1<f64>)> {
    x.check("column moments")?;
    let (rows, cols) = (x.rows, x.cols);
    let (means, vars) = (dev.alloc(cols * 8)?, dev.alloc(cols * 8)?);
    let reference = |b: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
        let data = f64s(x.bytes(b[0]));
        let m = Array2::from_shape_vec((rows, cols), data).expect("rows x cols");
        let means = m.mean_axis(Axis(0)).expect("at least one row");
        let vars = m.var_axis(Axis(0), ddof);
        Ok(vec![
            f64_bytes(means.as_slice().expect("a vector")),
            f64_bytes(vars.as_slice().expect("a vector")),
        ])
    };
    launch(
        dev,
        "column_moments_f64",
        cols,
        vec![
            KernelArg::In(x.buffer),
            KernelArg::I32(int("rows", rows)?),
            KernelArg::I32(int("columns", cols)?),
            KernelArg::F64(ddof),
            KernelArg::Out(&means),
            KernelArg::Out(&vars),
        ],
        &reference,
    )?;
    Ok((
        Array1::from(download_vector(dev, &means, cols)?),
        Array1::from(download_vector(dev, &vars, cols)?),
    ))
}

/// [`StandardScaler::fit`] on the device: the `rows x d` training rows `x` (finite, checked
/// when uploaded) give each feature's mean and population deviation (`column_moments_f64`),
/// and the factor `1 / deviation`, or 1 for a deviation within `f64::EPSILON` of 0, as
/// linfa's `LinearScaler::standard()`. Equal to the CPU's fit bit for bit.
pub fn standard_scaler_fit_on(dev: &dyn Device, x: MatrixView<'_>) -> Result<DeviceStandardScaler> {
    if x.rows == 0 {
        return Err(LinfaError::NoSamples { model: SCALER }.into());
    }
    if x.cols == 0 {
        return Err(LinfaError::NoFeatures { model: SCALER }.into());
    }
    let (means, vars) = column_moments_on(dev, x, 0.0)?;
    let scales = vars.mapv(|v| {
        let s = v.sqrt();
        // linfa: `abs_diff_eq!(s, 0)`, within f64::EPSILON.
        if s.abs() <= f64::EPSILON {
            1.0
        } else {
            1.0 / s
        }
    });
    DeviceStandardScaler::from_parts(dev, means, scales)
}

/// [`Pca::fit`] on the device, from the `rows x d` (scaled) training rows `x`: the means
/// and variances (`column_moments_f64`), the centred rows (`center_f64`), their Gram
/// matrix, and its `k` top eigenpairs ([`top_components_on`]'s solve). Singular values are
/// floored at 1e-8 as linfa's; the explained variance ratio is the CPU adapter's
/// (`s^2 / (n - 1)` over the total variance with `ddof = 1`). Checks as the CPU fit:
/// `NoSamples`, `NoFeatures`, `BadComponents` (`k` in `1..=min(rows, d)`).
///
/// The components are the Gram matrix's eigenvectors signed with their largest entry
/// positive; linfa's LOBPCG gives the same vectors up to sign and about 1e-13.
///
/// Device memory: the centred rows (`rows d`), the Gram matrix and the solve (`2 d^2 + d`),
/// the components (`k d`), besides `x`.
pub fn pca_fit_on(dev: &dyn Device, x: MatrixView<'_>, k: usize) -> Result<DevicePca> {
    let (rows, d) = (x.rows, x.cols);
    if rows == 0 {
        return Err(LinfaError::NoSamples { model: PCA }.into());
    }
    if d == 0 {
        return Err(LinfaError::NoFeatures { model: PCA }.into());
    }
    let limit = rows.min(d);
    if k == 0 || k > limit {
        return Err(LinfaError::BadComponents {
            model: PCA,
            components: k,
            limit,
        }
        .into());
    }
    let (mean, vars) = column_moments_on(dev, x, 0.0)?;
    let mean_on = upload_vector(dev, mean.as_slice().expect("a vector"))?;
    let top = {
        let centred = DeviceMatrix::alloc(dev, rows, d)?;
        center_on(dev, x, &mean_on, &centred)?;
        let gram = DeviceMatrix::alloc(dev, d, d)?;
        gram_on(dev, centred.view(), &gram, false)?;
        drop(centred);
        top_components_of(dev, PCA, &gram, rows, k)?
    };
    let singular_values = top.singular_values.mapv(|s| s.max(1e-8));
    // The CPU adapter's ratio: S^2 / (n - 1) over the total variance (ddof = 1).
    let n = rows as f64;
    let ddof = if rows > 1 { n - 1.0 } else { 1.0 };
    let total: f64 = vars.sum() * n / ddof;
    let explained_variance_ratio = singular_values.mapv(|s| {
        if total > 0.0 {
            s * s / ddof / total
        } else {
            0.0
        }
    });
    Ok(DevicePca {
        mean,
        components: top.components,
        singular_values,
        explained_variance_ratio,
        mean_on,
        components_on: top.components_on,
    })
}

// ---- transforms ----------------------------------------------------------------------------

/// A fitted model whose `transform` [`transform_on`] applies.
#[derive(Debug, Clone, Copy)]
pub enum Transform<'m> {
    /// `(x - means) * scales` per feature: `rows x d` out.
    StandardScaler(&'m DeviceStandardScaler),
    /// `(x - mean) . components^T`: `rows x k` out.
    Pca(&'m DevicePca),
    /// `x . components^T`: `rows x k` out.
    TruncatedSvd(&'m DeviceTruncatedSvd),
}

impl Transform<'_> {
    /// The features the model was fitted on.
    pub fn features(&self) -> usize {
        match self {
            Transform::StandardScaler(s) => s.features(),
            Transform::Pca(p) => p.features(),
            Transform::TruncatedSvd(t) => t.features(),
        }
    }

    /// The columns of the result.
    pub fn output_cols(&self) -> usize {
        match self {
            Transform::StandardScaler(s) => s.features(),
            Transform::Pca(p) => p.components.nrows(),
            Transform::TruncatedSvd(t) => t.components.nrows(),
        }
    }

    fn model(&self) -> &'static str {
        match self {
            Transform::StandardScaler(_) => SCALER,
            Transform::Pca(_) => PCA,
            Transform::TruncatedSvd(_) => TSVD,
        }
    }
}

/// `out = (x - offsets) * scales` per column (`center_scale_f64`; linfa's `LinearScaler`
/// transform, bit for bit).
fn center_scale_on(
    dev: &dyn Device,
    x: MatrixView<'_>,
    offsets: &DeviceBuffer,
    scales: &DeviceBuffer,
    out: &DeviceMatrix,
) -> bach_runtime::Result<()> {
    let (rows, cols) = (x.rows, x.cols);
    let reference = |b: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
        let (o, s) = (f64s(&b[1][..cols * 8]), f64s(&b[2][..cols * 8]));
        let mut v = f64s(x.bytes(b[0]));
        for (e, x) in v.iter_mut().enumerate() {
            let j = e % cols;
            *x = (*x - o[j]) * s[j];
        }
        Ok(vec![f64_bytes(&v)])
    };
    launch(
        dev,
        "center_scale_f64",
        rows * cols,
        vec![
            KernelArg::In(x.buffer),
            KernelArg::I32(int("columns", cols)?),
            KernelArg::In(offsets),
            KernelArg::In(scales),
            KernelArg::Out(&out.buffer),
        ],
        &reference,
    )
}

/// `out = x - offsets` per column (`center_f64`; the centring of linfa's PCA transform).
fn center_on(
    dev: &dyn Device,
    x: MatrixView<'_>,
    offsets: &DeviceBuffer,
    out: &DeviceMatrix,
) -> bach_runtime::Result<()> {
    let (rows, cols) = (x.rows, x.cols);
    let reference = |b: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
        let o = f64s(&b[1][..cols * 8]);
        let mut v = f64s(x.bytes(b[0]));
        for (e, x) in v.iter_mut().enumerate() {
            *x -= o[e % cols];
        }
        Ok(vec![f64_bytes(&v)])
    };
    launch(
        dev,
        "center_f64",
        rows * cols,
        vec![
            KernelArg::In(x.buffer),
            KernelArg::I32(int("columns", cols)?),
            KernelArg::In(offsets),
            KernelArg::Out(&out.buffer),
        ],
        &reference,
    )
}

/// `out = x . components^T` (`rows x k`): one [`Gemm`].
fn project_on(
    dev: &dyn Device,
    x: MatrixView<'_>,
    components: &DeviceMatrix,
    out: &DeviceMatrix,
) -> bach_runtime::Result<()> {
    let k = components.rows;
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            dtype: DType::F64,
            m: x.rows,
            n: k,
            k: x.cols,
            alpha: 1.0,
            a: x.operand(),
            transpose_a: false,
            b: MatrixRef::new(&components.buffer, components.cols.max(1)),
            transpose_b: true,
            beta: 0.0,
            c: MatrixRef::new(&out.buffer, k.max(1)),
        },
    )
}

/// The model's `transform` of the `rows x d` rows `x` into `out` (`rows x`
/// [`output_cols`](Transform::output_cols)), on the compute queue:
///
/// - standard scaler: `(x - means) * scales` (`center_scale_f64`);
/// - PCA: `x - mean` (`center_f64`, into a `rows x d` temporary) then `. components^T`
///   (a [`Gemm`]): linfa's `(x - mean).dot(&components.t())`;
/// - truncated SVD: `x . components^T` (a [`Gemm`]).
///
/// On the simulated device the result is the CPU model's bit for bit (for the same model).
/// `FeatureMismatch` when `x` has another number of columns than the model's features.
pub fn transform_on(
    dev: &dyn Device,
    t: Transform<'_>,
    x: MatrixView<'_>,
    out: &DeviceMatrix,
) -> Result<()> {
    if x.cols != t.features() {
        return Err(LinfaError::FeatureMismatch {
            model: t.model(),
            expected: t.features(),
            got: x.cols,
        }
        .into());
    }
    x.check("transform input")?;
    if out.rows != x.rows || out.cols != t.output_cols() {
        return Err(bach_runtime::Error::Device(format!(
            "{} transform of {} rows writes {} x {}, not {} x {}",
            t.model(),
            x.rows,
            x.rows,
            t.output_cols(),
            out.rows,
            out.cols
        ))
        .into());
    }
    if x.rows == 0 {
        return Ok(());
    }
    match t {
        Transform::StandardScaler(s) => center_scale_on(dev, x, &s.means_on, &s.scales_on, out)?,
        Transform::Pca(p) => {
            let centred = DeviceMatrix::alloc(dev, x.rows, x.cols)?;
            center_on(dev, x, &p.mean_on, &centred)?;
            project_on(dev, centred.view(), &p.components_on, out)?;
        }
        Transform::TruncatedSvd(s) => project_on(dev, x, &s.components_on, out)?,
    }
    Ok(())
}

// ---- k nearest neighbours ------------------------------------------------------------------

/// A fitted [`KNeighborsClassifier`] on a device: its training points, each point's class
/// (an index into the ascending distinct labels) and `k`.
#[derive(Debug)]
pub struct DeviceKnn {
    points: DeviceMatrix,
    class_of: DeviceBuffer,
    /// Each point's class, on the host (for the stand-in).
    classes_host: Vec<i32>,
    classes: Vec<usize>,
    k: usize,
}

impl DeviceKnn {
    /// The classifier of the training `points` already on the device (`n x d`, finite) with
    /// their `labels`: the checks of [`KNeighborsClassifier::fit`] (`LabelMismatch`,
    /// `BadNeighbours`, and `NoSamples`/`NoFeatures`), and `k` at most [`KNN_MAX_K`].
    pub fn fit_on(
        dev: &dyn Device,
        points: DeviceMatrix,
        labels: &Array1<usize>,
        k: usize,
    ) -> Result<Self> {
        if points.rows == 0 {
            return Err(LinfaError::NoSamples { model: KNN }.into());
        }
        if points.cols == 0 {
            return Err(LinfaError::NoFeatures { model: KNN }.into());
        }
        if labels.len() != points.rows {
            return Err(LinfaError::LabelMismatch {
                model: KNN,
                samples: points.rows,
                labels: labels.len(),
            }
            .into());
        }
        if k == 0 || k > points.rows {
            return Err(LinfaError::BadNeighbours {
                model: KNN,
                k,
                samples: points.rows,
            }
            .into());
        }
        if k > KNN_MAX_K {
            return Err(DeviceLinfaError::TooManyNeighbours { k, max: KNN_MAX_K });
        }
        int("training points", points.rows)?;
        let mut classes: Vec<usize> = labels.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let classes_host: Vec<i32> = labels
            .iter()
            .map(|l| classes.binary_search(l).expect("a training label") as i32)
            .collect();
        let class_of = dev.alloc(classes_host.len() * 4)?;
        dev.upload(&i32_bytes(&classes_host), &class_of)?;
        Ok(DeviceKnn {
            points,
            class_of,
            classes_host,
            classes,
            k,
        })
    }

    /// A classifier fitted on the CPU, copied to the device.
    pub fn upload(dev: &dyn Device, knn: &KNeighborsClassifier) -> Result<Self> {
        let points = DeviceMatrix::upload(dev, knn.points())?;
        DeviceKnn::fit_on(dev, points, knn.labels(), knn.k())
    }

    /// The training points' features.
    pub fn features(&self) -> usize {
        self.points.cols
    }
}

/// The class (index into the ascending distinct labels) of each query row of `queries`
/// (`q x d`) against `train` (`n x d`): the `k` nearest training rows by squared distance
/// summed in feature order (ties by training row), then the largest vote, ties to the
/// smallest class. The host stand-in of `knn_predict_f64`, and what its host C++ build is
/// checked against.
pub fn knn_classes(
    queries: &[f64],
    train: &[f64],
    d: usize,
    k: usize,
    class_of: &[i32],
) -> Vec<i32> {
    let n_train = class_of.len();
    let q = queries.len().checked_div(d).unwrap_or(0);
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    (0..q)
        .map(|i| {
            let row = &queries[i * d..(i + 1) * d];
            best.clear();
            for t in 0..n_train {
                let other = &train[t * d..(t + 1) * d];
                let mut acc = 0.0;
                for (a, b) in row.iter().zip(other) {
                    let diff = a - b;
                    acc += diff * diff;
                }
                if best.len() == k && acc >= best[k - 1].0 {
                    continue;
                }
                let at = best.partition_point(|&(dist, _)| dist <= acc);
                best.insert(at, (acc, t));
                best.truncate(k);
            }
            let mut winner = (0i32, 0usize);
            for &(_, t) in &best {
                let c = class_of[t];
                let count = best.iter().filter(|&&(_, u)| class_of[u] == c).count();
                if count > winner.1 || (count == winner.1 && c < winner.0) {
                    winner = (c, count);
                }
            }
            winner.0
        })
        .collect()
}

/// [`KNeighborsClassifier::predict`] on the device: the label of each row of `x` (`q x d`)
/// by `knn_predict_f64` (one thread per row; see the module docs on exact distance ties).
/// `FeatureMismatch` for another number of features than the training points'.
pub fn knn_predict_on(
    dev: &dyn Device,
    model: &DeviceKnn,
    x: MatrixView<'_>,
) -> Result<Array1<usize>> {
    let q = x.rows;
    let Some(classes) = knn_classes_on(dev, model, x)? else {
        return Ok(Array1::zeros(0));
    };
    let mut bytes = vec![0u8; q * 4];
    dev.download(&classes, &mut bytes)?;
    Ok(i32s(&bytes)
        .into_iter()
        .map(|c| model.classes[c as usize])
        .collect())
}

/// The vote of [`knn_predict_on`], left on the device: each row's class index
/// (`i32`, the rank of its label among the distinct training labels), or
/// `None` for no rows.
pub fn knn_classes_on(
    dev: &dyn Device,
    model: &DeviceKnn,
    x: MatrixView<'_>,
) -> Result<Option<DeviceBuffer>> {
    if x.cols != model.features() {
        return Err(LinfaError::FeatureMismatch {
            model: KNN,
            expected: model.features(),
            got: x.cols,
        }
        .into());
    }
    x.check("nearest-neighbour queries")?;
    let q = x.rows;
    if q == 0 {
        return Ok(None);
    }
    let (d, k, n_train) = (x.cols, model.k, model.points.rows);
    let out = dev.alloc(q * 4)?;
    let reference = |b: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
        let queries = f64s(x.bytes(b[0]));
        let train = f64s(&b[1][..n_train * d * 8]);
        let classes = knn_classes(&queries, &train, d, k, &model.classes_host);
        Ok(vec![i32_bytes(&classes)])
    };
    launch(
        dev,
        "knn_predict_f64",
        q,
        vec![
            KernelArg::In(x.buffer),
            KernelArg::In(&model.points.buffer),
            KernelArg::I32(int("training points", n_train)?),
            KernelArg::I32(int("features", d)?),
            KernelArg::I32(k as i32),
            KernelArg::In(&model.class_of),
            KernelArg::Out(&out),
        ],
        &reference,
    )?;
    Ok(Some(out))
}

// ---- the truncated SVD over paged row blocks ----------------------------------------------

/// Device bytes a truncated SVD of `d` features and `k` components holds besides its row
/// blocks: the Gram matrix, the solve's outputs and a workspace the size of cuSOLVER's
/// `syevd` (`1 + 6 d + 2 d^2` values), and the components twice (`4 d^2 + 7 d + 2 k d + 1`
/// values); `usize::MAX` on overflow.
pub fn tsvd_fixed_bytes(d: usize, k: usize) -> usize {
    d.checked_mul(d)
        .and_then(|dd| dd.checked_mul(4))
        .and_then(|v| v.checked_add(7 * d + 2 * k * d + 1))
        .and_then(|v| v.checked_mul(8))
        .unwrap_or(usize::MAX)
}

/// Rows per block for a truncated SVD of `n` rows of `d` features and `k` components in
/// `free` bytes: all rows when they fit beside [`tsvd_fixed_bytes`], else as many as fit
/// with their transformed rows (`d + k` values a row). `None`: not even one row fits.
pub fn tsvd_block_rows(n: usize, d: usize, k: usize, free: usize) -> Option<usize> {
    let per_row = (d + k).max(1).checked_mul(8)?;
    let rows = free.checked_sub(tsvd_fixed_bytes(d, k))? / per_row;
    match rows {
        0 => None,
        r => Some(r.min(n.max(1))),
    }
}

/// [`TruncatedSvd::fit`](super::reduction::TruncatedSvd::fit) and `transform` of the rows of
/// `x` on the device, paged when they do not fit: row blocks ([`tsvd_block_rows`] of the
/// free memory) are uploaded one at a time and their Gram matrices summed on the device
/// ([`gram_on`] with `accumulate`), the `k` top components are solved for
/// ([`DeviceTruncatedSvd::from_gram_on`]), and the rows are transformed block by block
/// (uploaded again when paged; kept on the device from the Gram pass when all fit). Returns
/// the model and the transformed rows (`n x k`). The input checks are the CPU fit's (every
/// value finite).
///
/// With all rows in one block, the simulated device's results equal the CPU's bit for bit;
/// paged, the Gram matrix is summed block by block (as the annotated `gram` sums batches).
pub fn truncated_svd_on<S: Data<Elem = f64>>(
    dev: &dyn Device,
    x: &ArrayBase<S, Ix2>,
    k: usize,
) -> Result<(DeviceTruncatedSvd, Array2<f64>)> {
    let (n, d) = x.dim();
    if n > 0 && d == 0 {
        return Err(LinfaError::NoFeatures { model: TSVD }.into());
    }
    if n == 0 {
        return Err(LinfaError::NoSamples { model: TSVD }.into());
    }
    // The CPU fit's check, naming the position in the whole matrix.
    check_finite(TSVD, x)?;
    let free = dev.free_memory();
    let rows = tsvd_block_rows(n, d, k, free).ok_or(bach_runtime::Error::DeviceOutOfMemory {
        requested: tsvd_fixed_bytes(d, k).saturating_add((d + k) * 8),
        free,
    })?;
    let blocks: Vec<std::ops::Range<usize>> =
        (0..n).step_by(rows).map(|s| s..(s + rows).min(n)).collect();
    let block = |r: &std::ops::Range<usize>| x.slice(ndarray::s![r.clone(), ..]);

    let gram = DeviceMatrix::alloc(dev, d, d)?;
    let mut resident = None;
    for (i, r) in blocks.iter().enumerate() {
        let xb = DeviceMatrix::upload(dev, &block(r))?;
        gram_on(dev, xb.view(), &gram, i > 0)?;
        if blocks.len() == 1 {
            resident = Some(xb);
        }
    }
    let model = DeviceTruncatedSvd::from_gram_on(dev, &gram, n, k)?;
    drop(gram);

    let mut out = Array2::zeros((n, k));
    for r in &blocks {
        let xb = match resident.take() {
            Some(xb) => xb,
            None => DeviceMatrix::upload(dev, &block(r))?,
        };
        let tb = DeviceMatrix::alloc(dev, r.len(), k)?;
        transform_on(dev, Transform::TruncatedSvd(&model), xb.view(), &tb)?;
        out.slice_mut(ndarray::s![r.clone(), ..])
            .assign(&tb.download(dev)?);
    }
    dev.synchronize()?;
    Ok((model, out))
}
