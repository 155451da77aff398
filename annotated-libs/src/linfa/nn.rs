//! A k-nearest-neighbour classifier over linfa-nn (linfa has none): the
//! training points are the model; `predict` finds each row's `k` nearest
//! training points with linfa-nn's k-d tree (Euclidean distance) and
//! takes the majority label, a tie going to the smallest label, as
//! scikit-learn's `KNeighborsClassifier(weights="uniform")` does.

use bach_runtime::{offload, Broadcast, IntoArg, Lazy, NdArraySplit};
use linfa_nn::distance::L2Dist;
use linfa_nn::{KdTree, NearestNeighbour};
use ndarray::{Array1, Array2};

use super::error::{check_apply, check_fit, LinfaError};

const MODEL: &str = "KNeighborsClassifier";

/// A fitted k-nearest-neighbour classifier: its training points, their
/// labels and `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct KNeighborsClassifier {
    points: Array2<f64>,
    labels: Array1<usize>,
    k: usize,
    /// The distinct labels, ascending.
    classes: Vec<usize>,
    /// Each training point's label as an index into `classes`.
    class_of: Vec<usize>,
}

impl KNeighborsClassifier {
    /// Keeps the training points `x` (rows are samples) with their `labels`,
    /// after checking them; `k` is at least 1 and at most the samples.
    pub fn fit(
        x: &Array2<f64>,
        labels: &Array1<usize>,
        k: usize,
    ) -> Result<KNeighborsClassifier, LinfaError> {
        check_fit(MODEL, x)?;
        if labels.len() != x.nrows() {
            return Err(LinfaError::LabelMismatch {
                model: MODEL,
                samples: x.nrows(),
                labels: labels.len(),
            });
        }
        if k == 0 || k > x.nrows() {
            return Err(LinfaError::BadNeighbours {
                model: MODEL,
                k,
                samples: x.nrows(),
            });
        }
        let mut classes: Vec<usize> = labels.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let class_of = labels
            .iter()
            .map(|l| {
                classes
                    .binary_search(l)
                    .expect("a label of the training set")
            })
            .collect();
        Ok(KNeighborsClassifier {
            points: x.clone(),
            labels: labels.clone(),
            k,
            classes,
            class_of,
        })
    }

    /// The majority label of each row's `k` nearest training points.
    pub fn predict(&self, x: &Array2<f64>) -> Result<Array1<usize>, LinfaError> {
        check_apply(MODEL, self.points.ncols(), x)?;
        let index = KdTree::new().from_batch(&self.points, L2Dist)?;
        let mut votes = vec![0usize; self.classes.len()];
        let mut predicted = Array1::zeros(x.nrows());
        for (row, out) in x.rows().into_iter().zip(predicted.iter_mut()) {
            votes.iter_mut().for_each(|v| *v = 0);
            for (_, i) in index.k_nearest(row, self.k)? {
                votes[self.class_of[i]] += 1;
            }
            // The first largest count: the smallest label among ties.
            let mut best = 0;
            for (class, &count) in votes.iter().enumerate() {
                if count > votes[best] {
                    best = class;
                }
            }
            *out = self.classes[best];
        }
        Ok(predicted)
    }

    /// The training points.
    pub fn points(&self) -> &Array2<f64> {
        &self.points
    }

    /// The training labels.
    pub fn labels(&self) -> &Array1<usize> {
        &self.labels
    }

    /// The number of neighbours that vote.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The distinct training labels, ascending.
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

    /// Each training point's label as an index into [`classes`](Self::classes).
    pub fn class_of(&self) -> &[usize] {
        &self.class_of
    }
}

/// [`KNeighborsClassifier::fit`], offloaded: reads the training data whole.
#[offload(split(x = Broadcast, labels = Broadcast), wraps = KNeighborsClassifier::fit)]
pub fn knn_fit(
    x: &Array2<f64>,
    labels: &Array1<usize>,
    k: usize,
) -> Result<KNeighborsClassifier, LinfaError>;

/// [`KNeighborsClassifier::predict`], offloaded: `x` split by rows, the
/// model (with its training points) broadcast to every batch.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = KNeighborsClassifier::predict, cost = 500, gpu_fn = super::device::gpu_fns::knn_predict)]
pub fn knn_predict(
    this: &KNeighborsClassifier,
    x: &Array2<f64>,
) -> Result<Array1<usize>, LinfaError>;

/// `knn.predict(&x)` on a lazy classifier.
pub trait LazyKNeighborsClassifier<'a> {
    /// [`knn_predict()`] with this model.
    fn predict(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array1<usize>>;
}

impl<'a> LazyKNeighborsClassifier<'a> for Lazy<'a, KNeighborsClassifier> {
    fn predict(&self, x: impl IntoArg<'a, Array2<f64>>) -> Lazy<'a, Array1<usize>> {
        super::register_device_codecs();
        knn_predict(self, x)
    }
}
