//! The one error type of the linfa module, and the input checks every fit,
//! transform and predict runs first.
//!
//! linfa panics on some bad inputs (a transform with the wrong number of
//! features broadcasts and panics; a NaN in nearest-neighbour queries panics
//! in its ordered-float wrapper) and silently returns garbage on others (NaN
//! in a fit). scikit-learn raises `ValueError` for all of them, so the checks
//! here run before linfa sees the data, and every refusal is a typed value.

use ndarray::{ArrayBase, Data, Ix2};

/// Why a fit, transform or predict of the linfa module refused its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinfaError {
    /// A fit on no rows.
    #[error("{model}: cannot fit on 0 samples")]
    NoSamples {
        /// The model being fitted.
        model: &'static str,
    },
    /// A fit on rows with no features.
    #[error("{model}: cannot fit on 0 features")]
    NoFeatures {
        /// The model being fitted.
        model: &'static str,
    },
    /// A NaN or an infinity in the data (scikit-learn: "Input X contains NaN").
    #[error("{model}: input contains {value} at row {row}, column {column}")]
    NotFinite {
        /// The model fitted or applied.
        model: &'static str,
        /// The offending value.
        value: f64,
        /// Its row, within the rows the call saw.
        row: usize,
        /// Its column.
        column: usize,
    },
    /// Finite data whose products overflow `f64` (values near 1e154 and up).
    #[error("{model}: {what} overflowed f64 (the data's values are too large)")]
    Overflow {
        /// The model being fitted.
        model: &'static str,
        /// What overflowed.
        what: &'static str,
    },
    /// Zero components, or more than the features (or samples) allow.
    #[error("{model}: n_components = {components} must be between 1 and {limit}")]
    BadComponents {
        /// The model being fitted.
        model: &'static str,
        /// The number asked for.
        components: usize,
        /// The largest number allowed (`min(samples, features)`).
        limit: usize,
    },
    /// Data with another number of features than the model was fitted on.
    #[error("{model}: X has {got} features, but the model was fitted on {expected}")]
    FeatureMismatch {
        /// The model applied.
        model: &'static str,
        /// The features of the fitting data.
        expected: usize,
        /// The features of the data given.
        got: usize,
    },
    /// Training points and labels of different lengths.
    #[error("{model}: {samples} samples but {labels} labels")]
    LabelMismatch {
        /// The model being fitted.
        model: &'static str,
        /// Rows of the training points.
        samples: usize,
        /// Length of the labels.
        labels: usize,
    },
    /// A neighbour count of zero, or more than the training points.
    #[error("{model}: n_neighbors = {k} must be between 1 and the {samples} training samples")]
    BadNeighbours {
        /// The model being fitted.
        model: &'static str,
        /// The number asked for.
        k: usize,
        /// The training points.
        samples: usize,
    },
    /// linfa's solver failed on finite data (linfa-linalg's LOBPCG panics
    /// when its iteration breaks down); the message is the solver's.
    #[error("{model}: the solver failed: {message}")]
    SolverFailed {
        /// The model being fitted.
        model: &'static str,
        /// What the solver said.
        message: String,
    },
    /// An error of linfa-reduction (PCA).
    #[error(transparent)]
    Reduction(#[from] linfa_reduction::ReductionError),
    /// An error of linfa-linalg (a matrix of the wrong shape).
    #[error(transparent)]
    Linalg(#[from] linfa_linalg::LinalgError),
    /// An error of linfa-preprocessing (the scaler).
    #[error(transparent)]
    Preprocessing(#[from] linfa_preprocessing::PreprocessingError),
    /// An error of linfa-nn (building the index, a query).
    #[error(transparent)]
    NearestNeighbours(#[from] linfa_nn::NnError),
    /// An error of linfa-nn building its index.
    #[error(transparent)]
    NearestNeighboursBuild(#[from] linfa_nn::BuildError),
}

/// Checks that every value of `x` is finite.
pub fn check_finite<S: Data<Elem = f64>>(
    model: &'static str,
    x: &ArrayBase<S, Ix2>,
) -> Result<(), LinfaError> {
    for (row, values) in x.rows().into_iter().enumerate() {
        if let Some((column, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(LinfaError::NotFinite {
                model,
                value,
                row,
                column,
            });
        }
    }
    Ok(())
}

/// Checks fitting data: at least one row and one feature, all finite.
pub fn check_fit<S: Data<Elem = f64>>(
    model: &'static str,
    x: &ArrayBase<S, Ix2>,
) -> Result<(), LinfaError> {
    if x.nrows() == 0 {
        return Err(LinfaError::NoSamples { model });
    }
    if x.ncols() == 0 {
        return Err(LinfaError::NoFeatures { model });
    }
    check_finite(model, x)
}

/// Checks data a model fitted on `expected` features is applied to: the
/// same number of features, all finite.
pub fn check_apply<S: Data<Elem = f64>>(
    model: &'static str,
    expected: usize,
    x: &ArrayBase<S, Ix2>,
) -> Result<(), LinfaError> {
    if x.ncols() != expected {
        return Err(LinfaError::FeatureMismatch {
            model,
            expected,
            got: x.ncols(),
        });
    }
    check_finite(model, x)
}
