//! The strategy trait, the one thing a pruning method implements. The driver
//! ([`run_rounds`](crate::run_rounds)) calls it in the same order for every method: score and
//! allocate and apply in [`Strategy::prune`], retrain with [`Strategy::callbacks`], then, for a
//! method that judges its rounds, a verdict; a fourth method is one more file here.

pub mod layerwise;
pub mod neuron;
pub mod weight;

use coppice_models::Network;
use coppice_train::Callback;

use crate::PruneError;
use crate::records::RoundRecord;

/// Where one retraining keeps its checkpoints and how it shows and seeds itself.
pub struct Retraining {
    /// Under the run's training folder.
    pub folder: String,
    /// Added to the run's seed for this retraining's shuffling.
    pub seed_offset: u64,
    pub label: String,
}

pub trait Strategy {
    /// How many rounds the method runs (its schedule's, or one per layer).
    fn rounds(&self) -> usize;

    /// A pruned copy of `net` for `round` (from 1); `attempt` counts the back-offs of a method
    /// that judges its rounds. `net` itself stays as it was, for a try after a back-off.
    fn prune(&mut self, net: &Network, round: usize, attempt: usize) -> Result<Network, PruneError>;

    /// The overall sparsity the last [`Strategy::prune`] aimed at, when it had one.
    fn target(&self) -> Option<f64>;

    /// What runs during the retraining of `pruned`: after every optimizer step and at each
    /// epoch end.
    fn callbacks(&self, pruned: &Network) -> Vec<Box<dyn Callback>>;

    fn retraining(&self, round: usize, attempt: usize) -> Retraining {
        let _ = attempt;
        Retraining {
            folder: format!("round-{round}"),
            seed_offset: round as u64,
            label: format!("round {round}/{}", self.rounds()),
        }
    }

    /// What round `round` works on, in the records of its tries.
    fn round_name(&self, round: usize) -> String {
        format!("round {round}")
    }

    /// `initial`'s values for the surviving weights of `pruned` (lottery-ticket rewinding).
    fn rewind(&self, pruned: Network, initial: &Network) -> Network {
        let _ = initial;
        pruned
    }

    /// Whether the method judges each retrained try on the validation split; one that does not
    /// (the default) accepts every round.
    fn judges(&self) -> bool {
        false
    }

    /// Whether a retrained try at `valid_accuracy` ends its round, held against the network
    /// before round 1 (`dense_valid`); otherwise the method backs off and [`Strategy::prune`]
    /// tries again from the same network.
    fn accepts(&self, dense_valid: f64, valid_accuracy: f64, attempt: usize) -> bool {
        let _ = (dense_valid, valid_accuracy, attempt);
        true
    }

    /// Takes up an interrupted run: `net` is the network after the last completed round,
    /// `dense` the one before round 1, and `records` the rounds so far (round 0 first). What a
    /// method carries between rounds must follow from these, so that a resumed run prunes
    /// exactly as an uninterrupted one.
    fn resume(&mut self, dense: &Network, net: &Network, records: &[RoundRecord]);
}
