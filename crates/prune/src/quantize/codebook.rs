//! Codebooks: 1-D k-means for weight sharing, and the nearest value of a sorted codebook.

/// Lloyd's iterations stop here at the latest; 1-D clusterings of a layer settle in far fewer.
const MAX_ITERATIONS: usize = 100;

/// Shared values a layer may have: the compressed file indexes them in 16 bits, 0 being the zero.
const MAX_SHARED: usize = (1 << 16) - 1;

/// Up to `2^bits` shared values (65,535 at 16 bits) for `values` (the kept weights of one layer), sorted, by k-means
/// from centroids spread evenly between the smallest and the largest value: Han et al. found
/// this linear initialization best because it keeps centroids on the few large weights, which
/// density-based initializations leave to be pulled towards the many small ones. A cluster that
/// ends empty keeps its initial value (it is never used); none when `values` is empty.
pub fn kmeans_codebook(values: &[f32], bits: u32) -> Vec<f32> {
    let (Some(min), Some(max)) = (values.iter().copied().reduce(f32::min), values.iter().copied().reduce(f32::max))
    else {
        return Vec::new();
    };
    let k = (1usize << bits.min(16)).min(MAX_SHARED);
    let mut centroids: Vec<f32> = if k == 1 || min == max {
        vec![(min + max) / 2.0]
    } else {
        (0..k).map(|j| min + (max - min) * j as f32 / (k - 1) as f32).collect()
    };
    let mut assignment: Vec<usize> = vec![usize::MAX; values.len()];
    for _ in 0..MAX_ITERATIONS {
        let mut changed = false;
        let mut sums = vec![0.0f64; centroids.len()];
        let mut counts = vec![0usize; centroids.len()];
        for (v, a) in values.iter().zip(assignment.iter_mut()) {
            let c = nearest(&centroids, *v);
            changed |= *a != c;
            *a = c;
            sums[c] += *v as f64;
            counts[c] += 1;
        }
        if !changed {
            break;
        }
        for ((c, sum), count) in centroids.iter_mut().zip(&sums).zip(&counts) {
            if *count > 0 {
                *c = (sum / *count as f64) as f32;
            }
        }
        // Means of ordered clusters of a line stay ordered; sorting only guards equal ones.
        centroids.sort_by(f32::total_cmp);
    }
    centroids
}

/// The index of the value of `sorted` nearest to `v` (the lower one on a tie).
pub fn nearest(sorted: &[f32], v: f32) -> usize {
    let above = sorted.partition_point(|c| *c < v);
    match above {
        0 => 0,
        n if n == sorted.len() => n - 1,
        n if (v - sorted[n - 1]) <= (sorted[n] - v) => n - 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clumps_get_their_means() {
        let values = [-1.0, -1.1, -0.9, 2.0, 2.2, 1.8];
        let codebook = kmeans_codebook(&values, 1);
        assert_eq!(codebook.len(), 2);
        assert!((codebook[0] + 1.0).abs() < 1e-6 && (codebook[1] - 2.0).abs() < 1e-6, "{codebook:?}");
    }

    #[test]
    fn nearest_picks_the_closest_value() {
        let sorted = [-1.0, 0.5, 2.0];
        assert_eq!(nearest(&sorted, -5.0), 0);
        assert_eq!(nearest(&sorted, 0.6), 1);
        assert_eq!(nearest(&sorted, 1.9), 2);
        assert_eq!(nearest(&sorted, 9.0), 2);
    }
}
