//! Tiny learnable image sets for fast tests of models and training code.

use crate::images::ImageSet;
use crate::split::SplitMix64;

/// `n` images whose class is given by a fixed random pattern of bright pixels
/// (about a third of all pixels) over a noisy dark background; a tiny MLP or
/// even nearest-class-mean separates them within a few epochs. Labels cycle
/// through the classes, so every class gets `n / classes` or one more image,
/// also in any prefix taken with [`ImageSet::take`]. The same arguments always
/// give the same set.
///
/// `classes` is capped at 256 because labels are u8; with `classes == 0` or
/// zero-sized images the result is empty.
pub fn synthetic_images(n: usize, classes: usize, channels: usize, height: usize, width: usize, seed: u64) -> ImageSet {
    let classes = classes.min(256);
    let pixels = channels * height * width;
    let n = if classes == 0 || pixels == 0 { 0 } else { n };
    let mut rng = SplitMix64::new(seed);
    let prototypes: Vec<Vec<bool>> = (0..classes).map(|_| (0..pixels).map(|_| rng.below(3) == 0).collect()).collect();

    let mut images = Vec::with_capacity(n * pixels);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % classes;
        labels.push(label as u8);
        for &bright in &prototypes[label] {
            let noise = rng.below(64) as u8;
            images.push(if bright { 160 + noise } else { noise });
        }
    }
    ImageSet { images, labels, channels, height, width, classes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_deterministic_and_separable() {
        let set = synthetic_images(103, 10, 1, 6, 6, 5);
        assert_eq!((set.len(), set.images.len(), set.classes), (103, 103 * 36, 10));
        let mut counts = [0usize; 10];
        set.labels.iter().for_each(|&l| counts[usize::from(l)] += 1);
        assert!(counts.iter().all(|&c| c == 10 || c == 11), "{counts:?}");
        assert_eq!(set, synthetic_images(103, 10, 1, 6, 6, 5));
        assert_ne!(set.images, synthetic_images(103, 10, 1, 6, 6, 6).images);

        // Nearest class mean fitted on the first half must classify the second half.
        let half = set.len() / 2;
        let mut means = vec![vec![0f64; 36]; 10];
        let mut seen = [0f64; 10];
        for i in 0..half {
            let l = usize::from(set.labels[i]);
            seen[l] += 1.0;
            for (m, &p) in means[l].iter_mut().zip(set.image(i)) {
                *m += f64::from(p);
            }
        }
        for (m, s) in means.iter_mut().zip(seen) {
            m.iter_mut().for_each(|v| *v /= s);
        }
        let correct = (half..set.len())
            .filter(|&i| {
                let dist =
                    |m: &Vec<f64>| m.iter().zip(set.image(i)).map(|(a, &b)| (a - f64::from(b)).powi(2)).sum::<f64>();
                let best = (0..10).min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])));
                best == Some(usize::from(set.labels[i]))
            })
            .count();
        assert_eq!(correct, set.len() - half);
    }

    #[test]
    fn degenerate_arguments_give_empty_sets() {
        assert!(synthetic_images(10, 0, 1, 4, 4, 1).is_empty());
        assert!(synthetic_images(10, 3, 1, 0, 4, 1).is_empty());
    }
}
