//! The quantization stage of the round driver: quantize, evaluate, retrain with the codes held,
//! evaluate, record.

use std::time::Instant;

use coppice_models::{Network, Prunable};
use coppice_train::{Callback, Callbacks, TrainConfig, TrainSetup, fit};

use super::{QuantizeConfig, WeightSharing};
use crate::PruneError;
use crate::mask::MaskSet;
use crate::records::{History, RoundRecord};
use crate::report::sparsity_report;
use crate::rounds::{RoundObserver, Rounds};

/// Quantizes `net` (the network after the last pruning round, `round - 1`) and retrains it;
/// its record, round `round`, goes to `history` and `observer`.
pub(crate) fn quantize_stage(
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
        let setup = TrainSetup {
            config: TrainConfig {
                epochs: config.retrain_epochs,
                lr: pruning.lr * config.retrain_lr_scale,
                lr_min: pruning.lr_min * config.retrain_lr_scale,
                ..pruning.clone()
            },
            device: device.clone(),
            artifact_dir: rounds.retrain.artifact_dir.join("quantize"),
            seed: rounds.retrain.seed.wrapping_add(round as u64),
            progress: rounds.retrain.progress,
            label: "quantize".into(),
            parallel: rounds.retrain.parallel.clone(),
        };
        let callbacks: Vec<Box<dyn Callback>> = vec![Box::new(masks), Box::new(sharing)];
        let trained = fit(
            net,
            rounds.train.clone(),
            rounds.valid.clone(),
            rounds.batcher.clone(),
            &setup,
            &Callbacks::new(callbacks),
        )?;
        net = trained.net;
        epochs = trained.epochs;
    }
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
    });
    observer.on_round(history, &net)?;
    Ok(net)
}
