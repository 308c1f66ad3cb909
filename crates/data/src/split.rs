//! Seeded shuffling and train/validation splits. The generator is implemented
//! here so that a seed keeps selecting the same examples whatever version of
//! `rand` other crates pull in.

use crate::images::ImageSet;

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and good enough for shuffling.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` without modulo bias; returns 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Reject the lowest 2^64 mod n values so that the rest split evenly into n buckets.
        let threshold = n.wrapping_neg() % n;
        loop {
            let r = self.next_u64();
            if r >= threshold {
                return r % n;
            }
        }
    }

    /// Uniform in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A permutation of `0..n` determined by `seed` (Fisher-Yates).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut indices: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        indices.swap(i, j);
    }
    indices
}

/// Shuffles `set` with `seed` and moves the last `round(n * valid_fraction)`
/// images into the validation set. The fraction is clamped to `[0, 1]`
/// (NaN counts as 0), so a fraction of 0 yields an empty validation set.
pub fn train_valid_split(set: &ImageSet, valid_fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
    let n = set.len();
    let fraction = if valid_fraction.is_nan() { 0.0 } else { valid_fraction.clamp(0.0, 1.0) };
    let n_valid = ((n as f64 * fraction).round() as usize).min(n);
    let indices = shuffled_indices(n, seed);
    let (train, valid) = indices.split_at(n - n_valid);
    (set.subset(train), set.subset(valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = shuffled_indices(1000, 42);
        assert_eq!(a, shuffled_indices(1000, 42));
        assert_ne!(a, shuffled_indices(1000, 43));
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert!(shuffled_indices(0, 1).is_empty());
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        assert_eq!(rng.below(0), 0);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[rng.below(5) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert!((0..100).all(|_| (0.0..1.0).contains(&rng.next_f64())));
    }

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        // Each image's first pixel holds its index so the halves can be traced back.
        let set = ImageSet {
            images: (0..200).flat_map(|i| [i as u8, 0, 0, 0]).collect(),
            labels: (0..200).map(|i| (i % 4) as u8).collect(),
            channels: 1,
            height: 2,
            width: 2,
            classes: 4,
        };
        let (train, valid) = train_valid_split(&set, 0.25, 9);
        assert_eq!((train.len(), valid.len()), (150, 50));
        assert_eq!((train.clone(), valid.clone()), train_valid_split(&set, 0.25, 9));
        let mut ids: Vec<u8> = train.images.chunks(4).chain(valid.images.chunks(4)).map(|c| c[0]).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..200).map(|i| i as u8).collect::<Vec<_>>());

        let (train, valid) = train_valid_split(&set, 0.0, 9);
        assert_eq!((train.len(), valid.len()), (200, 0));
        assert_eq!(train_valid_split(&set, f64::NAN, 9).1.len(), 0);
    }
}
