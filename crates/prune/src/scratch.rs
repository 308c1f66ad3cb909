//! The control of Liu et al. (ICLR 2019), "Rethinking the Value of Network Pruning": the
//! architecture that structured pruning found, trained from a fresh initialization instead of
//! fine-tuned from the pruned weights. The driver ([`run_rounds`](crate::run_rounds)) runs it
//! once after the last round, as a record of its own, so that the same run holds the fine-tuned
//! network (the last round) and the one trained from scratch (the stage), at the same seed.

use std::time::Instant;

use coppice_models::Network;
use coppice_train::{Callbacks, TrainConfig, TrainSetup, fit};
use serde::{Deserialize, Serialize};

use crate::PruneError;
use crate::records::{History, RoundRecord};
use crate::report::sparsity_report;
use crate::rounds::{RoundObserver, Rounds};

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

/// Trains `net`'s architecture from fresh weights; its record, round `round`, goes to `history`
/// and `observer`. The weights are drawn from a seed of the stage's own, so that they are
/// neither the dense network's initial weights nor the pruned ones.
pub(crate) fn scratch_stage(
    net: &Network,
    scratch: &Scratch,
    round: usize,
    target: Option<f64>,
    rounds: &Rounds,
    history: &mut History,
    observer: &mut dyn RoundObserver,
) -> Result<Network, PruneError> {
    let started = Instant::now();
    let device = &rounds.retrain.device;
    let seed = rounds.retrain.seed.wrapping_add(0x5c7a_7c40).wrapping_add(round as u64);
    device.seed(seed);
    let fresh = net
        .architecture()
        .init(device)
        .map_err(|e| PruneError::Invalid(format!("scratch: cannot rebuild the pruned network: {e}")))?;
    let dense_flops = history.rounds[0].sparsity.flops_dense;
    let epochs = scratch.epochs(dense_flops, sparsity_report(&fresh).flops_dense);
    let initial = Some(rounds.evaluate(&fresh, &rounds.test)?);
    let setup = TrainSetup {
        config: TrainConfig { epochs, ..scratch.dense.clone() },
        device: device.clone(),
        artifact_dir: rounds.retrain.artifact_dir.join("scratch"),
        seed,
        progress: rounds.retrain.progress,
        label: "scratch".into(),
        parallel: rounds.retrain.parallel.clone(),
    };
    let trained = fit(
        fresh,
        rounds.train.clone(),
        rounds.valid.clone(),
        rounds.batcher.clone(),
        &setup,
        &Callbacks::new(Vec::new()),
    )?;
    let test = rounds.evaluate(&trained.net, &rounds.test)?;
    history.rounds.push(RoundRecord {
        round,
        target,
        sparsity: sparsity_report(&trained.net),
        test,
        pruned: initial,
        seconds: started.elapsed().as_secs_f64(),
        epochs: trained.epochs,
        quantized: None,
        scratch: Some(ScratchRecord { budget: scratch.budget, epochs }),
    });
    observer.on_round(history, &trained.net)?;
    Ok(trained.net)
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
