//! `make_blobs`: isotropic Gaussian blobs, as scikit-learn's
//! `sklearn.datasets.make_blobs` makes them.
//!
//! The algorithm is scikit-learn's: centers uniform in `center_box`, the
//! samples split evenly over the centers (the remainder to the first ones),
//! each sample its center plus normal noise of deviation `cluster_std`, then
//! the rows shuffled. The random streams are ours (xoshiro256++, not NumPy's
//! Mersenne Twister), so the numbers differ from scikit-learn's for the same
//! seed; the distribution is the same.
//!
//! Row `j` of the result draws its noise from its own generator, seeded from
//! `(seed, j)`, so the data do not depend on the number of threads: 2^20 rows
//! of 512 features are generated in parallel.

use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

/// SplitMix64's output function: decorrelates the per-row seeds.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n_samples` points in `n_features` dimensions around `centers` centers,
/// and the index of each point's center.
///
/// `centers` is at least 1 (0 is taken as 1). `cluster_std` is the noise's
/// standard deviation; `center_box` the `(low, high)` range each center
/// coordinate is drawn from (scikit-learn's default is `(-10.0, 10.0)`).
/// Equal arguments give equal results.
pub fn make_blobs(
    n_samples: usize,
    n_features: usize,
    centers: usize,
    cluster_std: f64,
    center_box: (f64, f64),
    seed: u64,
) -> (Array2<f64>, Array1<usize>) {
    let centers = centers.max(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix64(seed));
    let (low, high) = center_box;
    let center_coords = Array2::from_shape_fn((centers, n_features), |_| {
        low + (high - low) * rng.gen::<f64>()
    });

    // n_samples // centers each, the first n_samples % centers one more.
    let mut labels: Vec<usize> = (0..centers)
        .flat_map(|c| {
            let count = n_samples / centers + usize::from(c < n_samples % centers);
            std::iter::repeat_n(c, count)
        })
        .collect();
    labels.shuffle(&mut rng);

    let mut x = Array2::<f64>::zeros((n_samples, n_features));
    let row_seed = mix64(seed ^ 0xB10B_5EED);
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(labels.par_iter())
        .enumerate()
        .for_each(|(j, (mut row, &label))| {
            let mut noise = Xoshiro256PlusPlus::seed_from_u64(mix64(row_seed ^ j as u64));
            let center = center_coords.row(label);
            for (v, &c) in row.iter_mut().zip(center.iter()) {
                let z: f64 = noise.sample(StandardNormal);
                *v = c + cluster_std * z;
            }
        });
    (x, Array1::from_vec(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_split_evenly_with_the_remainder_to_the_first_centers() {
        let (x, y) = make_blobs(11, 3, 3, 1.0, (-10.0, 10.0), 7);
        assert_eq!(x.dim(), (11, 3));
        let counts: Vec<usize> = (0..3)
            .map(|c| y.iter().filter(|&&l| l == c).count())
            .collect();
        assert_eq!(counts, vec![4, 4, 3]);
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_other_data() {
        let a = make_blobs(257, 5, 2, 1.0, (-10.0, 10.0), 1);
        let b = make_blobs(257, 5, 2, 1.0, (-10.0, 10.0), 1);
        let c = make_blobs(257, 5, 2, 1.0, (-10.0, 10.0), 2);
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn points_scatter_around_their_center_with_the_given_deviation() {
        // One center: the column means estimate it and lie in the box; the
        // deviation of every column estimates cluster_std.
        let (x, y) = make_blobs(20_000, 4, 1, 2.0, (-10.0, 10.0), 3);
        assert!(y.iter().all(|&l| l == 0));
        let mean = x.mean_axis(Axis(0)).unwrap();
        assert!(mean.iter().all(|m| (-10.1..10.1).contains(m)));
        for s in x.std_axis(Axis(0), 1.0) {
            assert!((s - 2.0).abs() < 0.05, "deviation {s}");
        }
    }

    #[test]
    fn rows_are_shuffled_not_grouped_by_center() {
        let (_, y) = make_blobs(1000, 2, 2, 1.0, (-10.0, 10.0), 5);
        let first_half_zeros = y.iter().take(500).filter(|&&l| l == 0).count();
        assert!((150..350).contains(&first_half_zeros), "{first_half_zeros}");
    }

    #[test]
    fn no_samples_give_empty_arrays() {
        let (x, y) = make_blobs(0, 4, 3, 1.0, (-10.0, 10.0), 0);
        assert_eq!(x.dim(), (0, 4));
        assert!(y.is_empty());
    }
}
