//! linfa-preprocessing's standard scaler (`LinearScaler::standard()`),
//! scikit-learn's `StandardScaler`: fitted on whole data, applied by rows.

use bach_runtime::{offload, Broadcast, IntoArg, Lazy, NdArraySplit};
use linfa::traits::{Fit, Transformer};
use linfa::DatasetBase;
use linfa_preprocessing::linear_scaling::LinearScaler;
use ndarray::Array2;

use super::error::{check_apply, check_fit, LinfaError};

const MODEL: &str = "StandardScaler";

/// A fitted standard scaler: linfa's `LinearScaler` (the means and the
/// inverse population deviations of the fitting data, a constant feature
/// left unscaled) and the number of features it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct StandardScaler {
    scaler: LinearScaler<f64>,
    features: usize,
}

impl StandardScaler {
    /// Fits on `x` (rows are samples): linfa's `LinearScaler::standard().fit`.
    pub fn fit(x: &Array2<f64>) -> Result<StandardScaler, LinfaError> {
        check_fit(MODEL, x)?;
        let scaler = LinearScaler::standard().fit(&DatasetBase::from(x.view()))?;
        Ok(StandardScaler {
            scaler,
            features: x.ncols(),
        })
    }

    /// `(x - mean) / deviation` per feature: linfa's `transform`.
    pub fn transform(&self, x: &Array2<f64>) -> Result<Array2<f64>, LinfaError> {
        check_apply(MODEL, self.features, x)?;
        Ok(self.scaler.transform(x.to_owned()))
    }

    /// The features' means.
    pub fn means(&self) -> &ndarray::Array1<f64> {
        self.scaler.offsets()
    }

    /// The factors each feature is multiplied by after its mean is
    /// subtracted (`1 / deviation`, or 1 for a constant feature).
    pub fn scales(&self) -> &ndarray::Array1<f64> {
        self.scaler.scales()
    }

    /// The number of features it was fitted on.
    pub fn features(&self) -> usize {
        self.features
    }
}

/// [`StandardScaler::fit`], offloaded: the fit reads `x` whole.
#[offload(split(x = Broadcast), wraps = StandardScaler::fit)]
pub fn standard_scaler_fit(x: &Array2<f64>) -> Result<StandardScaler, LinfaError>;

/// [`StandardScaler::transform`], offloaded: `x` split by rows, the model
/// broadcast to every batch.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = StandardScaler::transform, cost = 2, gpu_fn = super::device::gpu_fns::standard_scaler_transform)]
pub fn standard_scaler_transform(
    this: &StandardScaler,
    x: &Array2<f64>,
) -> Result<Array2<f64>, LinfaError>;

/// `scaler.transform(&x)` on a lazy scaler.
pub trait LazyStandardScaler<'a> {
    /// [`standard_scaler_transform()`] with this scaler.
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>>;
}

impl<'a> LazyStandardScaler<'a> for Lazy<'a, StandardScaler> {
    fn transform(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array2<f64>> {
        super::register_device_codecs();
        standard_scaler_transform(self, x)
    }
}
