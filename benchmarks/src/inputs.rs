//! Seeded random inputs, generated in parallel outside the timed region.
//!
//! Element `i` of input stream `k` is a pure function of `(seed, k, i)`: the
//! SplitMix64 generator seeded for stream `k`, jumped to position `i`. So the
//! data do not depend on the number of threads or on how the range is chunked,
//! and 5 x 2^26 values take well under a second on two cores. The values
//! follow the same distributions as `anchors/numpy_workloads.py` (which uses
//! NumPy's PCG64, so the individual numbers differ).

use ndarray::Array1;
use rayon::prelude::*;

/// One input array of a workload: `uniform(low, high)`, like NumPy's
/// `rng.uniform(low, high, n)` (`low` inclusive, `high` exclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    /// The argument's name in the workload (for messages).
    pub name: &'static str,
    /// Smallest value.
    pub low: f64,
    /// Bound above all values.
    pub high: f64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Steele, Lea, Flood 2014).
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 16;

/// `n` values uniform in `low..high` for input stream `stream` of `seed`.
pub fn uniform(n: usize, low: f64, high: f64, seed: u64, stream: u64) -> Array1<f64> {
    let key = mix64(seed ^ mix64(stream.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)));
    let scale = high - low;
    let mut out: Vec<f64> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = (c * CHUNK) as u64;
            for (j, slot) in chunk.iter_mut().enumerate() {
                let state = key.wrapping_add((base + j as u64 + 1).wrapping_mul(GOLDEN_GAMMA));
                // 53 random bits -> [0, 1), as NumPy's random_standard_uniform.
                let u = (mix64(state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                slot.write(low + scale * u);
            }
        });
    // SAFETY: the chunks above tile 0..n and wrote every element.
    unsafe { out.set_len(n) };
    Array1::from_vec(out)
}

/// The inputs of a workload for `n` elements: stream `k` for `specs[k]`.
pub fn generate(specs: &[InputSpec], n: usize, seed: u64) -> Vec<Array1<f64>> {
    specs
        .iter()
        .enumerate()
        .map(|(k, s)| uniform(n, s.low, s.high, seed, k as u64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_in_range_and_independent_of_chunking() {
        let a = uniform(3 * CHUNK + 5, -1.5, 1.5, 42, 0);
        let b = uniform(3 * CHUNK + 5, -1.5, 1.5, 42, 0);
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| (-1.5..1.5).contains(&x)));
        // A prefix is the same data: values depend on the index only.
        let short = uniform(100, -1.5, 1.5, 42, 0);
        assert_eq!(short, a.slice(ndarray::s![..100]));
        // Other streams and seeds differ.
        assert_ne!(short, uniform(100, -1.5, 1.5, 42, 1));
        assert_ne!(short, uniform(100, -1.5, 1.5, 43, 0));
    }

    #[test]
    fn roughly_uniform() {
        let a = uniform(1 << 16, 1.0, 100.0, 7, 3);
        let mean = a.sum() / a.len() as f64;
        assert!((mean - 50.5).abs() < 0.5, "mean {mean}");
        let below = a.iter().filter(|&&x| x < 25.75).count() as f64 / a.len() as f64;
        assert!((below - 0.25).abs() < 0.01, "quartile {below}");
    }
}
