//! Training-time augmentation, `[data.augment]`: a random crop from the image padded with black
//! (He et al.'s CIFAR recipe) and a random horizontal flip. The draw for a sample is a function of
//! (seed, epoch, sample index) alone, so a resumed training sees the same images as an
//! uninterrupted one whatever order or thread the data loader fetches them in.

use serde::{Deserialize, Serialize};

use crate::split::SplitMix64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Pixels of black padding on each side; the image is then cropped back to its size at a
    /// random offset. 0: no crop.
    pub crop: usize,
    /// Mirror left to right with probability one half.
    pub flip: bool,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        *self == Augment::default()
    }

    /// Augments `pixels`, one `[channels, height, width]` image, in place.
    pub fn apply(&self, pixels: &mut [u8], [channels, height, width]: [usize; 3], seed: u64, epoch: u64, index: u64) {
        if self.is_none() {
            return;
        }
        // Mixing each part through the generator keeps nearby (epoch, index) pairs unrelated.
        let mut rng = SplitMix64::new(SplitMix64::new(SplitMix64::new(seed).next_u64() ^ epoch).next_u64() ^ index);
        let span = 2 * self.crop as u64 + 1;
        let dy = rng.below(span) as isize - self.crop as isize;
        let dx = rng.below(span) as isize - self.crop as isize;
        let flip = self.flip && rng.below(2) == 1;
        if dy == 0 && dx == 0 && !flip {
            return;
        }
        let source = pixels.to_vec();
        let (h, w) = (height as isize, width as isize);
        for c in 0..channels {
            let plane = &source[c * height * width..(c + 1) * height * width];
            let out = &mut pixels[c * height * width..(c + 1) * height * width];
            for y in 0..h {
                for x in 0..w {
                    let sx = if flip { w - 1 - x } else { x } + dx;
                    let sy = y + dy;
                    let inside = (0..h).contains(&sy) && (0..w).contains(&sx);
                    out[(y * w + x) as usize] = if inside { plane[(sy * w + sx) as usize] } else { 0 };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_shift_within_the_padding_and_flips_mirror() {
        let shape = [1, 3, 4];
        let image: Vec<u8> = (1..=12).collect();
        let flip = Augment { crop: 0, flip: true };
        let (mut flipped, mut kept) = (0, 0);
        for index in 0..64 {
            let mut pixels = image.clone();
            flip.apply(&mut pixels, shape, 7, 1, index);
            if pixels == image {
                kept += 1;
            } else {
                assert_eq!(pixels, [4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9]);
                flipped += 1;
            }
        }
        assert!(flipped > 16 && kept > 16, "about half flip: {flipped} of 64");

        let crop = Augment { crop: 1, flip: false };
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..200 {
            let mut pixels = image.clone();
            crop.apply(&mut pixels, shape, 7, 3, index);
            // Every kept pixel is the original shifted by at most one row and one column.
            let zeros = pixels.iter().filter(|&&p| p == 0).count();
            assert!([0, 3, 4, 6].contains(&zeros), "{pixels:?}");
            seen.insert(pixels);
        }
        assert_eq!(seen.len(), 9, "all nine offsets of a 1-pixel padding occur");
    }

    #[test]
    fn draws_depend_on_seed_epoch_and_index_only() {
        let augment = Augment { crop: 2, flip: true };
        let image: Vec<u8> = (0..2 * 5 * 5).map(|i| i as u8 + 1).collect();
        let draw = |seed, epoch, index| {
            let mut pixels = image.clone();
            augment.apply(&mut pixels, [2, 5, 5], seed, epoch, index);
            pixels
        };
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        let differ = |f: &dyn Fn(u64) -> Vec<u8>| (0..20).filter(|&k| f(k) != f(k + 1)).count() > 10;
        assert!(differ(&|k| draw(k, 2, 3)), "seed");
        assert!(differ(&|k| draw(1, k, 3)), "epoch");
        assert!(differ(&|k| draw(1, 2, k)), "index");
        assert_eq!(
            draw(1, 2, 3)[..25].iter().filter(|&&p| p == 0).count(),
            draw(1, 2, 3)[25..].iter().filter(|&&p| p == 0).count(),
            "channels move together"
        );
    }
}
