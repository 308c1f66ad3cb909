use std::time::Instant;

use coppice_data::{ImageBatcher, ImageDataset};
use coppice_models::Network;
use coppice_train::{Callback, Callbacks, EpochRecord, Evaluation, TrainSetup, evaluate, fit};
use serde::{Deserialize, Serialize};

use crate::PruneError;
use crate::report::{SparsityReport, sparsity_report};

/// A pruning strategy as the round loop sees it; weight, neuron and layer-wise pruning all fit.
pub trait Strategy {
    /// Prunes `net` for `round` (counted from 1).
    fn prune(&mut self, net: Network, round: usize) -> Result<Network, PruneError>;
    /// The overall sparsity the strategy aimed at in `round`, when it has one.
    fn target(&self, round: usize) -> Option<f64>;
    /// What runs during retraining: after every optimizer step and at each epoch end.
    fn callback(&self) -> Box<dyn Callback>;
    /// `initial`'s values for the surviving weights of `pruned` (lottery-ticket rewinding).
    fn rewind(&self, pruned: Network, initial: &Network) -> Network;
    /// Takes up an interrupted run: `net` is the network after the last completed round and
    /// `dense` the one before round 1. What a strategy carries between rounds must follow from
    /// these two, so that a resumed run prunes exactly as an uninterrupted one.
    fn resume(&mut self, dense: &Network, net: &Network);
}

pub struct Rounds {
    pub rounds: usize,
    /// Training of each round: `retrain_epochs` epochs at the scaled learning rate. With 0
    /// epochs the round prunes and evaluates only.
    pub retrain: TrainSetup,
    pub train: ImageDataset,
    pub valid: ImageDataset,
    pub test: ImageDataset,
    pub batcher: ImageBatcher,
    /// The network's initial weights, when each round rewinds the survivors to them.
    pub rewind_to: Option<Network>,
}

impl Rounds {
    /// The retraining of one round (or one layer-wise try): its own checkpoint folder, and a
    /// shuffling seed of its own.
    pub(crate) fn retrain_setup(&self, folder: &str, seed_offset: u64, label: String) -> TrainSetup {
        TrainSetup {
            config: self.retrain.config.clone(),
            device: self.retrain.device.clone(),
            artifact_dir: self.retrain.artifact_dir.join(folder),
            seed: self.retrain.seed.wrapping_add(seed_offset),
            progress: self.retrain.progress,
            label,
        }
    }
}

/// The seed of one round's random draws, so that any round can be redone on its own.
pub(crate) fn round_seed(seed: u64, round: usize) -> u64 {
    seed.wrapping_add((round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundRecord {
    /// 0 is the network before any pruning.
    pub round: usize,
    pub target: Option<f64>,
    pub sparsity: SparsityReport,
    pub test: Evaluation,
    pub seconds: f64,
    /// The retraining epochs of this round.
    pub epochs: Vec<EpochRecord>,
}

/// The rounds an interrupted run completed (round 0 first), and its network before round 1.
pub struct Completed {
    pub records: Vec<RoundRecord>,
    pub dense: Network,
}

pub struct RoundsOutcome {
    pub net: Network,
    pub rounds: Vec<RoundRecord>,
}

/// Prune, retrain, evaluate, record: `rounds.rounds` times, after recording round 0. `on_round`
/// sees each record as soon as it exists, so a caller can write it out before the next round.
/// With `completed`, `net` is the network after its last round, and the loop goes on from the
/// next round.
pub fn run_rounds(
    mut net: Network,
    strategy: &mut dyn Strategy,
    rounds: &Rounds,
    completed: Option<Completed>,
    on_round: &mut dyn FnMut(&RoundRecord, &Network),
) -> Result<RoundsOutcome, PruneError> {
    let eval = |net: &Network| {
        evaluate(
            net,
            rounds.test.clone(),
            rounds.batcher.clone(),
            rounds.retrain.config.eval_batch_size,
            &rounds.retrain.device,
        )
    };
    let mut records = match completed {
        Some(Completed { records, dense }) => {
            strategy.resume(&dense, &net);
            records
        }
        None => {
            let dense = RoundRecord {
                round: 0,
                target: Some(0.0),
                sparsity: sparsity_report(&net),
                test: eval(&net)?,
                seconds: 0.0,
                epochs: Vec::new(),
            };
            on_round(&dense, &net);
            vec![dense]
        }
    };
    let callbacks = Callbacks::new(vec![strategy.callback()]);
    for round in records.len()..=rounds.rounds {
        let started = Instant::now();
        callbacks.on_round_start(round);
        net = strategy.prune(net, round)?;
        if let Some(initial) = &rounds.rewind_to {
            net = strategy.rewind(net, initial);
        }
        let mut epochs = Vec::new();
        if rounds.retrain.config.epochs > 0 {
            let setup = rounds.retrain_setup(
                &format!("round-{round}"),
                round as u64,
                format!("round {round}/{}", rounds.rounds),
            );
            let outcome =
                fit(net, rounds.train.clone(), rounds.valid.clone(), rounds.batcher.clone(), &setup, &callbacks)?;
            net = outcome.net;
            epochs = outcome.epochs;
        }
        callbacks.on_round_end(round);
        let record = RoundRecord {
            round,
            target: strategy.target(round),
            sparsity: sparsity_report(&net),
            test: eval(&net)?,
            seconds: started.elapsed().as_secs_f64(),
            epochs,
        };
        on_round(&record, &net);
        records.push(record);
    }
    Ok(RoundsOutcome { net, rounds: records })
}
