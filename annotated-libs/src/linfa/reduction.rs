//! Dimensionality reduction: linfa-reduction's `Pca` and a truncated SVD
//! (scikit-learn's `TruncatedSVD`) over linfa-linalg's LOBPCG solver. Fits
//! read their data whole; transforms split it by rows, the fitted model
//! broadcast to every batch.

use bach_runtime::{offload, Broadcast, IntoArg, Lazy, NdArraySplit};
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use linfa_linalg::lobpcg::TruncatedSvd as Lobpcg;
use linfa_linalg::Order;
use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use super::error::{check_apply, check_fit, LinfaError};

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
        let pca = linfa_reduction::Pca::params(components).fit(&DatasetBase::from(x.view()))?;
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

/// [`Pca::fit`], offloaded: the fit reads `x` whole.
#[offload(split(x = Broadcast), wraps = Pca::fit)]
pub fn pca_fit(x: &Array2<f64>, components: usize) -> Result<Pca, LinfaError>;

/// [`Pca::transform`], offloaded: `x` split by rows, the model broadcast.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = Pca::transform)]
pub fn pca_transform(this: &Pca, x: &Array2<f64>) -> Result<Array2<f64>, LinfaError>;

/// `pca.transform(&x)` on a lazy PCA.
pub trait LazyPca<'a> {
    /// [`pca_transform`] with this model.
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>>;
}

impl<'a> LazyPca<'a> for Lazy<'a, Pca> {
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>> {
        pca_transform(self, x)
    }
}

const TSVD: &str = "TruncatedSVD";

/// The seed of the solver's random starting block: fixed, so that fits are
/// reproducible (linfa's PCA fixes its own the same way).
const TSVD_SEED: u64 = 42;

/// A fitted truncated SVD (scikit-learn's `TruncatedSVD`: no centring): the
/// largest singular values of the data and their right singular vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct TruncatedSvd {
    components: Array2<f64>,
    singular_values: Array1<f64>,
}

impl TruncatedSvd {
    /// The `components` largest singular triplets of `x` (rows are samples),
    /// by linfa-linalg's LOBPCG truncated SVD from a seeded starting block.
    /// Data of lower rank than `components` give only the nonzero ones.
    pub fn fit(x: &Array2<f64>, components: usize) -> Result<TruncatedSvd, LinfaError> {
        check_fit(TSVD, x)?;
        check_components(TSVD, components, x)?;
        let rng = Xoshiro256Plus::seed_from_u64(TSVD_SEED);
        let svd = Lobpcg::new_with_rng(x.clone(), Order::Largest, rng).decompose(components)?;
        let (_, singular_values, components) = svd.values_vectors();
        Ok(TruncatedSvd {
            components,
            singular_values,
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
}

/// [`TruncatedSvd::fit`], offloaded: the fit reads `x` whole.
#[offload(split(x = Broadcast), wraps = TruncatedSvd::fit)]
pub fn truncated_svd_fit(x: &Array2<f64>, components: usize) -> Result<TruncatedSvd, LinfaError>;

/// [`TruncatedSvd::transform`], offloaded: `x` split by rows, the model broadcast.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = TruncatedSvd::transform)]
pub fn truncated_svd_transform(
    this: &TruncatedSvd,
    x: &Array2<f64>,
) -> Result<Array2<f64>, LinfaError>;

/// `svd.transform(&x)` on a lazy truncated SVD.
pub trait LazyTruncatedSvd<'a> {
    /// [`truncated_svd_transform`] with this model.
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>>;
}

impl<'a> LazyTruncatedSvd<'a> for Lazy<'a, TruncatedSvd> {
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>> {
        truncated_svd_transform(self, x)
    }
}
