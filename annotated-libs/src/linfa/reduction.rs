//! Dimensionality reduction: linfa-reduction's `Pca` and a truncated SVD
//! (scikit-learn's `TruncatedSVD`) from the Gram matrix's top eigenpairs.
//! The PCA fit reads its data whole; the truncated SVD's sums its Gram
//! matrix over row batches, then solves once; transforms split their data by
//! rows, the fitted model broadcast to every batch.

use bach_runtime::{offload, Broadcast, IntoArg, Lazy, NdArraySplit, SplitKind, SplitType};
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use ndarray::{Array1, Array2, Axis};

use super::error::{check_apply, check_finite, check_fit, LinfaError};
use super::top_eigen::top_eigenpairs;

/// Checks `components` against `min(samples, features)`, as scikit-learn does.
fn check_components(
    model: &'static str,
    components: usize,
    x: &Array2<f64>,
) -> Result<(), LinfaError> {
    let limit = x.nrows().min(x.ncols());
    if components == 0 || components > limit {
        return Err(LinfaError::BadComponents {
            model,
            components,
            limit,
        });
    }
    Ok(())
}

const PCA: &str = "PCA";

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// A fitted principal component analysis: linfa's `Pca` (mean, components,
/// singular values), the number of features, and scikit-learn's explained
/// variance ratio (linfa's own divides by the variance of the kept
/// components only, so its ratios always sum to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    pca: linfa_reduction::Pca<f64>,
    features: usize,
    explained_variance_ratio: Array1<f64>,
}

impl Pca {
    /// Fits `components` principal components of `x` (rows are samples):
    /// linfa's `Pca::params(components).fit`.
    pub fn fit(x: &Array2<f64>, components: usize) -> Result<Pca, LinfaError> {
        check_fit(PCA, x)?;
        check_components(PCA, components, x)?;
        // linfa's LOBPCG solver panics on some data (a NaN reaching its sort);
        // the input is finite here, so a panic is the solver's failure.
        let fit = std::panic::catch_unwind(|| {
            linfa_reduction::Pca::params(components).fit(&DatasetBase::from(x.view()))
        });
        let pca = fit.map_err(|panic| LinfaError::SolverFailed {
            model: PCA,
            message: panic_message(panic.as_ref()),
        })??;
        verify_pca(&pca, x)?;
        // scikit-learn: explained_variance_ = S^2 / (n - 1), divided by the
        // total variance (ddof = 1) of the data. One sample has no variance.
        let n = x.nrows() as f64;
        let ddof = if x.nrows() > 1 { n - 1.0 } else { 1.0 };
        let total: f64 = x.var_axis(Axis(0), 0.0).sum() * n / ddof;
        let explained_variance_ratio = pca.singular_values().mapv(|s| {
            if total > 0.0 {
                s * s / ddof / total
            } else {
                0.0
            }
        });
        Ok(Pca {
            pca,
            features: x.ncols(),
            explained_variance_ratio,
        })
    }

    /// `(x - mean) . components^T`: linfa's `predict`.
    pub fn transform(&self, x: &Array2<f64>) -> Result<Array2<f64>, LinfaError> {
        check_apply(PCA, self.features, x)?;
        Ok(self.pca.predict(x))
    }

    /// The components, one per row (`components x features`).
    pub fn components(&self) -> &Array2<f64> {
        self.pca.components()
    }

    /// The features' means over the fitting data.
    pub fn mean(&self) -> &Array1<f64> {
        self.pca.mean()
    }

    /// The singular values of the centred fitting data, largest first.
    pub fn singular_values(&self) -> &Array1<f64> {
        self.pca.singular_values()
    }

    /// Each component's share of the fitting data's total variance
    /// (scikit-learn's `explained_variance_ratio_`).
    pub fn explained_variance_ratio(&self) -> &Array1<f64> {
        &self.explained_variance_ratio
    }

    /// The number of features it was fitted on.
    pub fn features(&self) -> usize {
        self.features
    }

    /// linfa's fitted model.
    pub fn linfa(&self) -> &linfa_reduction::Pca<f64> {
        &self.pca
    }
}

/// Checks linfa's singular values against the exact top eigenvalues of the
/// centred data's Gram matrix ([`top_eigenpairs`], features x features).
/// linfa's LOBPCG solver returns wrong values, silently, when the block
/// it iterates is too large for the problem (few features, several
/// components); that is an error here, never a result.
fn verify_pca(pca: &linfa_reduction::Pca<f64>, x: &Array2<f64>) -> Result<(), LinfaError> {
    let centred = x - pca.mean();
    let gram = centred.t().dot(&centred);
    let k = pca.singular_values().len();
    let (exact, _) = top_eigenpairs(PCA, gram, k)?;
    let largest = exact.first().copied().unwrap_or(0.0).max(f64::MIN_POSITIVE);
    for (c, (&s, &l)) in pca.singular_values().iter().zip(&exact).enumerate() {
        // linfa floors singular values at 1e-8.
        let got = if s <= 1e-8 { 0.0 } else { s * s };
        // LOBPCG stops at a residual of 1e-5: its values are off by about
        // that much relative; a broken solve is off by far more.
        if (got - l.max(0.0)).abs() > 1e-3 * largest {
            return Err(LinfaError::SolverFailed {
                model: PCA,
                message: format!(
                    "component {c}: squared singular value {got} where the data's is {l} \
                     (linfa's LOBPCG did not converge)"
                ),
            });
        }
    }
    Ok(())
}

/// [`Pca::fit`], offloaded: the fit reads `x` whole.
#[offload(split(x = Broadcast), wraps = Pca::fit)]
pub fn pca_fit(x: &Array2<f64>, components: usize) -> Result<Pca, LinfaError>;

/// [`Pca::transform`], offloaded: `x` split by rows, the model broadcast.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = Pca::transform, cost = 5, gpu_fn = super::device::gpu_fns::pca_transform)]
pub fn pca_transform(this: &Pca, x: &Array2<f64>) -> Result<Array2<f64>, LinfaError>;

/// `pca.transform(&x)` on a lazy PCA.
pub trait LazyPca<'a> {
    /// [`pca_transform()`] with this model.
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>>;
}

impl<'a> LazyPca<'a> for Lazy<'a, Pca> {
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>> {
        super::register_device_codecs();
        pca_transform(self, x)
    }
}

const TSVD: &str = "TruncatedSVD";

/// `X^T X` of some rows of `X`, with their count: what a truncated SVD
/// needs of its data. The Gram matrices of row batches add up to the whole
/// one, so it is computed batch by batch ([`GramSum`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    /// `X^T X` (`features x features`; `0 x 0` for no rows).
    pub xtx: Array2<f64>,
    /// The rows summed over.
    pub rows: usize,
}

impl Gram {
    /// The Gram matrix of `x` (rows are samples), refusing NaN and infinities.
    pub fn of(x: &Array2<f64>) -> Result<Gram, LinfaError> {
        check_finite(TSVD, x)?;
        Ok(Gram {
            xtx: x.t().dot(x),
            rows: x.nrows(),
        })
    }

    /// The Gram matrix of both sets of rows.
    pub fn merge(mut self, other: &Gram) -> Gram {
        if other.rows == 0 {
            return self;
        }
        if self.rows == 0 {
            return other.clone();
        }
        self.xtx += &other.xtx;
        self.rows += other.rows;
        self
    }
}

/// Sums the [`Gram`] matrices of row batches in row order.
#[derive(Debug, Clone, Copy, Default)]
pub struct GramSum;

impl SplitType<Gram> for GramSum {
    const KIND: SplitKind = SplitKind::Reduce;
    fn elements(_: &Gram) -> Option<usize> {
        None
    }
    fn split(value: &Gram, _: std::ops::Range<usize>) -> Gram {
        value.clone()
    }
    fn merge(pieces: Vec<Gram>) -> bach_runtime::Result<Gram> {
        let empty = Gram {
            xtx: Array2::zeros((0, 0)),
            rows: 0,
        };
        Ok(pieces.iter().fold(empty, Gram::merge))
    }
}

/// A fitted truncated SVD (scikit-learn's `TruncatedSVD`: no centring): the
/// largest singular values of the data and their right singular vectors.
///
/// Fitted from the Gram matrix `X^T X`: its top eigenvectors are the right
/// singular vectors and its eigenvalues the squared singular values
/// ([`super::top_eigen`]: LAPACK's path for a few eigenpairs).
/// (linfa-linalg's LOBPCG `TruncatedSvd` panics with "NaN values in array"
/// on blob data whose first singular value dwarfs the rest, which is the
/// TSVD workload's data.)
/// Each component's sign makes its largest-magnitude entry positive, so
/// fits are reproducible across solvers.
#[derive(Debug, Clone, PartialEq)]
pub struct TruncatedSvd {
    components: Array2<f64>,
    singular_values: Array1<f64>,
}

impl TruncatedSvd {
    /// The `components` largest singular triplets of `x` (rows are samples).
    pub fn fit(x: &Array2<f64>, components: usize) -> Result<TruncatedSvd, LinfaError> {
        if x.nrows() > 0 && x.ncols() == 0 {
            return Err(LinfaError::NoFeatures { model: TSVD });
        }
        TruncatedSvd::from_gram(&Gram::of(x)?, x.ncols(), components)
    }

    /// The fit from the Gram matrix of all rows of data with `features` features.
    pub fn from_gram(
        gram: &Gram,
        features: usize,
        components: usize,
    ) -> Result<TruncatedSvd, LinfaError> {
        if gram.rows == 0 {
            return Err(LinfaError::NoSamples { model: TSVD });
        }
        if features == 0 {
            return Err(LinfaError::NoFeatures { model: TSVD });
        }
        let limit = gram.rows.min(features);
        if components == 0 || components > limit {
            return Err(LinfaError::BadComponents {
                model: TSVD,
                components,
                limit,
            });
        }
        let (values, vectors) = top_eigenpairs(TSVD, gram.xtx.clone(), components)?;
        let mut v = Array2::zeros((components, features));
        for (c, mut row) in v.rows_mut().into_iter().enumerate() {
            row.assign(&vectors.column(c));
            largest_entry_positive(row);
        }
        Ok(TruncatedSvd {
            components: v,
            singular_values: values.iter().map(|&l| l.max(0.0).sqrt()).collect(),
        })
    }

    /// `x . components^T`: the data in the components' coordinates.
    pub fn transform(&self, x: &Array2<f64>) -> Result<Array2<f64>, LinfaError> {
        check_apply(TSVD, self.components.ncols(), x)?;
        Ok(x.dot(&self.components.t()))
    }

    /// The right singular vectors, one per row (`components x features`).
    pub fn components(&self) -> &Array2<f64> {
        &self.components
    }

    /// The singular values, largest first.
    pub fn singular_values(&self) -> &Array1<f64> {
        &self.singular_values
    }

    /// The number of features it was fitted on.
    pub fn features(&self) -> usize {
        self.components.ncols()
    }

    /// A fitted truncated SVD from its components (one per row) and singular
    /// values (what a device fit produces).
    pub(crate) fn from_parts(
        components: Array2<f64>,
        singular_values: Array1<f64>,
    ) -> TruncatedSvd {
        TruncatedSvd {
            components,
            singular_values,
        }
    }
}

/// [`Gram::of`], offloaded: `x` split by rows, the batches' matrices summed.
#[offload(split = NdArraySplit, ret = GramSum, wraps = Gram::of, gpu_fn = super::device::gpu_fns::gram)]
pub fn gram(x: &Array2<f64>) -> Result<Gram, LinfaError>;

/// [`TruncatedSvd::from_gram`], offloaded: one call on the summed matrix.
#[offload(split(gram = Broadcast), wraps = TruncatedSvd::from_gram)]
pub fn truncated_svd_from_gram(
    gram: &Gram,
    features: usize,
    components: usize,
) -> Result<TruncatedSvd, LinfaError>;

/// [`TruncatedSvd::fit`], lazily: the Gram matrix batch by batch, then the
/// eigensolver once. `features` is the number of columns of `x`.
pub fn truncated_svd_fit<'a>(
    x: impl IntoArg<'a, Array2<f64>>,
    features: usize,
    components: usize,
) -> Lazy<'a, TruncatedSvd> {
    super::register_device_codecs();
    truncated_svd_from_gram(gram(x), features, components)
}

/// [`TruncatedSvd::transform`], offloaded: `x` split by rows, the model broadcast.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = TruncatedSvd::transform, cost = 5, gpu_fn = super::device::gpu_fns::truncated_svd_transform)]
pub fn truncated_svd_transform(
    this: &TruncatedSvd,
    x: &Array2<f64>,
) -> Result<Array2<f64>, LinfaError>;

/// `svd.transform(&x)` on a lazy truncated SVD.
pub trait LazyTruncatedSvd<'a> {
    /// [`truncated_svd_transform()`] with this model.
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>>;
}

impl<'a> LazyTruncatedSvd<'a> for Lazy<'a, TruncatedSvd> {
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>> {
        super::register_device_codecs();
        truncated_svd_transform(self, x)
    }
}

/// Flips a singular vector's sign so that its largest-magnitude entry is
/// positive: fits are then the same whatever solver found the vector.
pub(crate) fn largest_entry_positive(mut row: ndarray::ArrayViewMut1<'_, f64>) {
    let peak = row
        .iter()
        .fold(0.0f64, |m, &x| if x.abs() > m.abs() { x } else { m });
    if peak < 0.0 {
        row.mapv_inplace(|x| -x);
    }
}
