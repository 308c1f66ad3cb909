//! The one driver of every pruning method: round 0, then prune, retrain, evaluate and record
//! each round, backing off where the method judges a try too costly, and telling an observer
//! about each record as soon as it exists, so that a run can be written out and resumed.

use std::time::Instant;

use crate::PruneError;
use crate::mask::MaskSet;
use crate::quantize::{QuantizeConfig, WeightSharing, to_half_precision};
use crate::records::{History, LayerAttempt, RoundRecord};
use crate::report::sparsity_report;
use crate::scratch::{Scratch, ScratchRecord};
use crate::strategy::{Retraining, Strategy};
use coppice_data::{ImageBatcher, ImageDataset};
use coppice_models::{Network, Prunable};
use coppice_train::{Callback, Callbacks, Evaluation, TrainConfig, TrainOutcome, TrainSetup, evaluate, fit};

/// What the rounds train and evaluate on, and how each round retrains.
pub struct Rounds {
    /// Training of each round: its epochs (0 prunes and evaluates only), rate and seed; each
    /// retraining gets a folder under `artifact_dir` of its own.
    pub retrain: TrainSetup,
    pub train: ImageDataset,
    pub valid: ImageDataset,
    pub test: ImageDataset,
    pub batcher: ImageBatcher,
    /// What the survivors of each round's pruning start their retraining from.
    pub rewind: Rewind,
    /// Quantization after the last round, as a round of its own.
    pub quantize: Option<QuantizeConfig>,
    /// The pruned architecture trained from scratch after the last round, as a round of its own.
    pub scratch: Option<Scratch>,
}

/// Where a round's surviving weights start their retraining.
pub enum Rewind {
    /// Where pruning left them.
    None,
    /// At this network's values: the initial weights (lottery tickets).
    Init(Network),
    /// At fresh random values, drawn as this network's were, from a seed of their own each
    /// round: the lottery-ticket experiment's control (Frankle & Carbin's random
    /// reinitialization).
    Random { like: Network, seed: u64 },
}

impl Rounds {
    /// The rounds' training setup with `config`, in `folder` under their training folder,
    /// shuffling from `seed`: what every round and stage trains with.
    fn setup(&self, config: TrainConfig, folder: &str, seed: u64, label: String) -> TrainSetup {
        TrainSetup {
            config,
            device: self.retrain.device.clone(),
            artifact_dir: self.retrain.artifact_dir.join(folder),
            seed,
            progress: self.retrain.progress,
            label,
            parallel: self.retrain.parallel.clone(),
        }
    }

    fn retrain_setup(&self, retraining: Retraining) -> TrainSetup {
        let seed = self.retrain.seed.wrapping_add(retraining.seed_offset);
        self.setup(self.retrain.config.clone(), &retraining.folder, seed, retraining.label)
    }

    /// Trains `net` on the rounds' training split, validating on theirs.
    fn fit(
        &self,
        net: Network,
        setup: &TrainSetup,
        callbacks: Vec<Box<dyn Callback>>,
    ) -> Result<TrainOutcome, PruneError> {
        Ok(fit(net, self.train.clone(), self.valid.clone(), self.batcher.clone(), setup, &Callbacks::new(callbacks))?)
    }

    fn evaluate(&self, net: &Network, split: &ImageDataset) -> Result<Evaluation, PruneError> {
        let batch = self.retrain.config.eval_batch_size;
        Ok(evaluate(net, split.clone(), self.batcher.clone(), batch, &self.retrain.device)?)
    }
}

/// What an interrupted run completed, and its network before round 1.
pub struct Completed {
    pub history: History,
    pub dense: Network,
}

pub struct RoundsOutcome {
    pub net: Network,
    pub history: History,
}

/// Sees each record as soon as it exists, so that a caller can write it out before the next
/// round; an error stops the rounds.
pub trait RoundObserver {
    /// A round ended (round 0 first); `net` is the network after it, the last record its own.
    fn on_round(&mut self, history: &History, net: &Network) -> Result<(), PruneError>;

    /// A judging method's try ended, accepted or not; the last attempt is its own.
    fn on_attempt(&mut self, history: &History, candidate: &Network) -> Result<(), PruneError> {
        let _ = (history, candidate);
        Ok(())
    }
}

/// A closure sees each round's record.
impl<F: FnMut(&RoundRecord, &Network)> RoundObserver for F {
    fn on_round(&mut self, history: &History, net: &Network) -> Result<(), PruneError> {
        self(history.rounds.last().expect("a round was recorded"), net);
        Ok(())
    }
}

/// Round 0, then every round of `strategy`: prune, retrain, evaluate, record; then, with
/// `rounds.quantize`, the quantization stage as one more record, or with `rounds.scratch` the
/// train-from-scratch control. With
/// `completed`, `net` is the network after its last round, and the rounds go on from the
/// next; the tries of a round that was not accepted yet are made again.
pub fn run_rounds(
    mut net: Network,
    strategy: &mut dyn Strategy,
    rounds: &Rounds,
    completed: Option<Completed>,
    observer: &mut dyn RoundObserver,
) -> Result<RoundsOutcome, PruneError> {
    let judges = strategy.judges();
    let valid_accuracy = |n: &Network| rounds.evaluate(n, &rounds.valid).map(|e| e.accuracy);
    let (mut history, dense_valid) = match completed {
        Some(Completed { mut history, dense }) => {
            strategy.resume(&dense, &net, &history.rounds);
            let last_accepted = history.attempts.iter().rposition(|a| a.accepted);
            history.attempts.truncate(last_accepted.map_or(0, |last| last + 1));
            let dense_valid = if judges { Some(valid_accuracy(&dense)?) } else { None };
            (history, dense_valid)
        }
        None => {
            let dense_valid = if judges { Some(valid_accuracy(&net)?) } else { None };
            let dense = RoundRecord {
                round: 0,
                target: Some(0.0),
                sparsity: sparsity_report(&net),
                test: rounds.evaluate(&net, &rounds.test)?,
                pruned: None,
                seconds: 0.0,
                epochs: Vec::new(),
                quantized: None,
                scratch: None,
            };
            let history = History { rounds: vec![dense], attempts: Vec::new() };
            observer.on_round(&history, &net)?;
            (history, dense_valid)
        }
    };
    for round in history.rounds.len()..=strategy.rounds() {
        for attempt in 0.. {
            let started = Instant::now();
            let mut candidate = strategy.prune(&net, round, attempt)?;
            let pruned = Some(rounds.evaluate(&candidate, &rounds.test)?);
            match &rounds.rewind {
                Rewind::None => {}
                Rewind::Init(initial) => candidate = strategy.rewind(candidate, initial),
                Rewind::Random { like, seed } => {
                    let device = &rounds.retrain.device;
                    device.seed(seed.wrapping_add(0x5eed_0000).wrapping_add((round * 1000 + attempt) as u64));
                    let fresh = like
                        .architecture()
                        .init(device)
                        .map_err(|e| PruneError::Invalid(format!("rewind: cannot rebuild the network: {e}")))?;
                    candidate = strategy.rewind(candidate, &fresh);
                }
            }
            let mut epochs = Vec::new();
            if rounds.retrain.config.epochs > 0 {
                let setup = rounds.retrain_setup(strategy.retraining(round, attempt));
                let callbacks = strategy.callbacks(&candidate);
                let trained = rounds.fit(candidate, &setup, callbacks)?;
                candidate = trained.net;
                epochs = trained.epochs;
            }
            let judged = match dense_valid {
                Some(dense_valid) => {
                    let valid = valid_accuracy(&candidate)?;
                    Some((valid, strategy.accepts(dense_valid, valid, attempt)))
                }
                None => None,
            };
            let accepted = judged.is_none_or(|(_, accepted)| accepted);
            let test = rounds.evaluate(&candidate, &rounds.test)?;
            let sparsity = sparsity_report(&candidate);
            let seconds = started.elapsed().as_secs_f64();
            if let Some((valid_accuracy, accepted)) = judged {
                history.attempts.push(LayerAttempt {
                    layer: strategy.round_name(round),
                    attempt,
                    target: strategy.target().unwrap_or(0.0),
                    valid_accuracy,
                    accepted,
                    sparsity: sparsity.clone(),
                    test,
                    seconds,
                    epochs: epochs.clone(),
                });
                observer.on_attempt(&history, &candidate)?;
            }
            if accepted {
                let target = strategy.target();
                history.rounds.push(RoundRecord {
                    round,
                    target,
                    sparsity,
                    test,
                    pruned,
                    seconds,
                    epochs,
                    quantized: None,
                    scratch: None,
                });
                net = candidate;
                observer.on_round(&history, &net)?;
                break;
            }
        }
    }
    let last = strategy.rounds();
    if let Some(config) = &rounds.quantize
        && history.rounds.len() == last + 1
    {
        net = quantize_stage(net, config, last + 1, strategy.target(), rounds, &mut history, observer)?;
    }
    if let Some(scratch) = &rounds.scratch
        && history.rounds.len() == last + 1
    {
        net = scratch_stage(&net, scratch, last + 1, strategy.target(), rounds, &mut history, observer)?;
    }
    Ok(RoundsOutcome { net, history })
}

/// Quantizes `net` (the network after the last pruning round, `round - 1`) and retrains it;
/// its record, round `round`, goes to `history` and `observer`.
fn quantize_stage(
    net: Network,
    config: &QuantizeConfig,
    round: usize,
    target: Option<f64>,
    rounds: &Rounds,
    history: &mut History,
    observer: &mut dyn RoundObserver,
) -> Result<Network, PruneError> {
    let started = Instant::now();
    let device = &rounds.retrain.device;
    let weights: Vec<String> = net.prunable_layers().into_iter().map(|l| l.weight_path).collect();
    // The optimizer folds these in, so pruned weights get no velocity; the sharing callback
    // writes them as 0 as well.
    let masks = MaskSet::from_zeros(&net, &weights, device);
    let (mut net, sharing) = WeightSharing::quantize(net, config);
    let quantized = sharing.record();
    let pruned = Some(rounds.evaluate(&net, &rounds.test)?);
    let mut epochs = Vec::new();
    if config.retrain_epochs > 0 {
        let pruning = &rounds.retrain.config;
        let retraining = TrainConfig {
            epochs: config.retrain_epochs,
            lr: pruning.lr * config.retrain_lr_scale,
            lr_min: pruning.lr_min * config.retrain_lr_scale,
            ..pruning.clone()
        };
        let setup =
            rounds.setup(retraining, "quantize", rounds.retrain.seed.wrapping_add(round as u64), "quantize".into());
        let trained = rounds.fit(net, &setup, vec![Box::new(masks), Box::new(sharing)])?;
        net = trained.net;
        epochs = trained.epochs;
    }
    let net = to_half_precision(net);
    let test = rounds.evaluate(&net, &rounds.test)?;
    let sparsity = sparsity_report(&net);
    let seconds = started.elapsed().as_secs_f64();
    history.rounds.push(RoundRecord {
        round,
        target,
        sparsity,
        test,
        pruned,
        seconds,
        epochs,
        quantized: Some(quantized),
        scratch: None,
    });
    observer.on_round(history, &net)?;
    Ok(net)
}

/// Trains `net`'s architecture from fresh weights; its record, round `round`, goes to `history`
/// and `observer`. The weights are drawn from a seed of the stage's own, so that they are
/// neither the dense network's initial weights nor the pruned ones.
fn scratch_stage(
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
    let setup = rounds.setup(TrainConfig { epochs, ..scratch.dense.clone() }, "scratch", seed, "scratch".into());
    let trained = rounds.fit(fresh, &setup, Vec::new())?;
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
