//! Isotropic Gaussian blobs, scikit-learn's `make_blobs` algorithm, seeded.
//!
//! The steps follow `sklearn.datasets.make_blobs`: centers uniform in
//! `center_box`, the samples split evenly over the centers (the first
//! `n_samples % centers` centers get one more), each sample its center plus
//! normal noise of standard deviation `cluster_std`, then the rows shuffled.
//! The random numbers come from SplitMix64 streams keyed by `(seed, purpose,
//! index)`, so rows are generated in parallel and do not depend on the thread
//! count; the individual numbers differ from NumPy's (another generator), the
//! distributions do not.

use ndarray::{Array1, Array2, Axis};
use rayon::prelude::*;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Steele, Lea, Flood 2014).
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 sequence keyed by `(seed, stream)`.
struct Stream {
    state: u64,
}

impl Stream {
    fn new(seed: u64, stream: u64) -> Self {
        Stream {
            state: mix64(seed ^ mix64(stream.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA))),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` from 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below 2^-40 for the
    /// bounds used here).
    fn below(&mut self, bound: usize) -> usize {
        ((self.next_u64() as u128 * bound as u128) >> 64) as usize
    }

    /// Two independent standard normals (Box-Muller).
    fn normals(&mut self) -> (f64, f64) {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let theta = std::f64::consts::TAU * self.uniform();
        (r * theta.cos(), r * theta.sin())
    }
}

/// Streams of one dataset, by purpose.
const CENTERS_STREAM: u64 = 0;
const SHUFFLE_STREAM: u64 = 1;
/// Row `i`'s noise comes from stream `ROWS_STREAM + i`.
const ROWS_STREAM: u64 = 2;

/// `n_samples` points in `n_features` dimensions around `centers` centers: the
/// points and the index of each point's center, as scikit-learn's
/// `make_blobs(n_samples, n_features, centers=centers, cluster_std, center_box,
/// random_state=seed)` builds them (see the module docs for the generator).
///
/// # Panics
///
/// When `centers` is 0 while `n_samples` is not (no center to draw a sample
/// around), as scikit-learn raises.
pub fn make_blobs(
    n_samples: usize,
    n_features: usize,
    centers: usize,
    cluster_std: f64,
    center_box: (f64, f64),
    seed: u64,
) -> (Array2<f64>, Array1<usize>) {
    assert!(
        centers > 0 || n_samples == 0,
        "make_blobs: {n_samples} samples need at least one center"
    );
    let (low, high) = center_box;
    let mut rng = Stream::new(seed, CENTERS_STREAM);
    let center_points =
        Array2::from_shape_simple_fn((centers, n_features), || low + (high - low) * rng.uniform());

    // The unshuffled labels: n / centers each, the first n % centers one more.
    let per_center = n_samples.checked_div(centers).unwrap_or(0);
    let extra = n_samples.checked_rem(centers).unwrap_or(0);
    let mut labels: Vec<usize> = (0..centers)
        .flat_map(|c| std::iter::repeat_n(c, per_center + usize::from(c < extra)))
        .collect();
    // Fisher-Yates, as NumPy's `shuffle` (of the row order).
    let mut rng = Stream::new(seed, SHUFFLE_STREAM);
    for i in (1..labels.len()).rev() {
        labels.swap(i, rng.below(i + 1));
    }

    let mut x = Array2::zeros((n_samples, n_features));
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(labels.par_iter())
        .enumerate()
        .for_each(|(i, (mut row, &c))| {
            let mut rng = Stream::new(seed, ROWS_STREAM + i as u64);
            let center = center_points.row(c);
            let mut j = 0;
            while j < n_features {
                let (z0, z1) = rng.normals();
                row[j] = center[j] + cluster_std * z0;
                if j + 1 < n_features {
                    row[j + 1] = center[j + 1] + cluster_std * z1;
                }
                j += 2;
            }
        });
    (x, Array1::from_vec(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_labels_and_determinism() {
        let (x, y) = make_blobs(103, 7, 4, 1.0, (-2.0, 2.0), 42);
        assert_eq!(x.dim(), (103, 7));
        assert_eq!(y.len(), 103);
        // 103 = 4 * 25 + 3: the first three centers get 26.
        let counts: Vec<usize> = (0..4)
            .map(|c| y.iter().filter(|&&l| l == c).count())
            .collect();
        assert_eq!(counts, [26, 26, 26, 25]);
        let (x2, y2) = make_blobs(103, 7, 4, 1.0, (-2.0, 2.0), 42);
        assert_eq!((x.clone(), y.clone()), (x2, y2));
        assert_ne!(x, make_blobs(103, 7, 4, 1.0, (-2.0, 2.0), 43).0);
        // Shuffled: the labels are not in blocks.
        assert!(y.windows(2).into_iter().any(|w| w[0] > w[1]));
    }

    #[test]
    fn samples_scatter_around_their_centers() {
        let (x, y) = make_blobs(4000, 3, 2, 0.5, (-10.0, 10.0), 7);
        for c in 0..2 {
            let rows: Vec<usize> = (0..4000).filter(|&i| y[i] == c).collect();
            let pts = x.select(Axis(0), &rows);
            let mean = pts.mean_axis(Axis(0)).unwrap();
            let sd = pts.std_axis(Axis(0), 0.0);
            assert!(mean.iter().all(|m| (-10.5..10.5).contains(m)), "{mean}");
            assert!(sd.iter().all(|s| (s - 0.5).abs() < 0.03), "{sd}");
        }
    }

    #[test]
    fn no_samples() {
        let (x, y) = make_blobs(0, 5, 3, 1.0, (-1.0, 1.0), 1);
        assert_eq!(x.dim(), (0, 5));
        assert!(y.is_empty());
    }
}
