//! The control of Liu et al. (ICLR 2019), "Rethinking the Value of Network Pruning": the
//! architecture that structured pruning found, trained from a fresh initialization instead of
//! fine-tuned from the pruned weights. The driver ([`run_rounds`](crate::run_rounds)) runs it
//! once after the last round, as a record of its own, so that the same run holds the fine-tuned
//! network (the last round) and the one trained from scratch (the stage), at the same seed.
//! The stage itself runs in `rounds.rs`, beside the quantization stage.

use coppice_train::TrainConfig;
use serde::{Deserialize, Serialize};

/// How long the pruned architecture trains from scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScratchBudget {
    /// Scratch-E: the dense network's epochs.
    Epochs,
    /// Scratch-B: the dense network's computation: its epochs times the dense network's FLOPs
    /// per sample over the pruned one's, rounded up.
    Compute,
}

/// The stage's settings: its budget, and the dense training it matches (rate, schedule,
/// optimizer and epochs).
#[derive(Clone, Debug)]
pub struct Scratch {
    pub budget: ScratchBudget,
    pub dense: TrainConfig,
}

/// What the stage records besides its accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScratchRecord {
    pub budget: ScratchBudget,
    pub epochs: usize,
}

impl Scratch {
    /// The epochs of this budget for an architecture of `pruned_flops` per sample, where the
    /// dense one had `dense_flops`.
    pub fn epochs(&self, dense_flops: usize, pruned_flops: usize) -> usize {
        match self.budget {
            ScratchBudget::Epochs => self.dense.epochs,
            ScratchBudget::Compute => {
                let ratio = dense_flops as f64 / pruned_flops.max(1) as f64;
                (self.dense.epochs as f64 * ratio.max(1.0) - 1e-9).ceil() as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_b_matches_the_dense_computation_and_scratch_e_its_epochs() {
        let dense = TrainConfig { epochs: 10, ..TrainConfig::default() };
        let b = Scratch { budget: ScratchBudget::Compute, dense: dense.clone() };
        assert_eq!(b.epochs(1000, 400), 25, "2.5 times fewer FLOPs, 2.5 times the epochs");
        assert_eq!(b.epochs(1000, 300), 34, "rounded up");
        assert_eq!(b.epochs(1000, 1000), 10);
        assert_eq!(Scratch { budget: ScratchBudget::Epochs, dense }.epochs(1000, 400), 10);
    }
}
