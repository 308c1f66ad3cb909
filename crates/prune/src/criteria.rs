use coppice_data::SplitMix64;
use serde::{Deserialize, Serialize};

/// How important each weight is; the lowest scores are pruned first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightCriterion {
    /// |w|.
    Magnitude,
    /// Uniform noise: the baseline every criterion should beat.
    Random,
}

impl WeightCriterion {
    /// Scores for `values`; weights already pruned (`keep[i] == false`) score lowest, so that
    /// pruning is cumulative and a pruned weight never comes back.
    pub fn scores(self, values: &[f32], keep: &[bool], rng: &mut SplitMix64) -> Vec<f32> {
        values
            .iter()
            .zip(keep)
            .map(|(&value, &kept)| match (kept, self) {
                (false, _) => f32::NEG_INFINITY,
                (true, WeightCriterion::Magnitude) => value.abs(),
                (true, WeightCriterion::Random) => rng.next_f64() as f32,
            })
            .collect()
    }
}
