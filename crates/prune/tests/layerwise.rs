//! Layer-wise pruning on a tiny model: order, back-off, freezing.

use std::collections::BTreeMap;

use burn::prelude::*;
use coppice_models::{InputShape, Network, Prunable, presets};
use coppice_prune::*;
use coppice_train::TrainConfig;

mod common;
use common::{quiet_setup, synthetic_rounds};

fn rounds(tag: &str) -> Rounds {
    synthetic_rounds(quiet_setup(tag, TrainConfig { epochs: 1, batch_size: 16, lr: 0.02, ..TrainConfig::default() }, 3))
}

fn net() -> Network {
    presets::mlp(InputShape { channels: 1, height: 6, width: 6 }, &[16, 8], 4).init(&Device::flex()).unwrap()
}

/// Every try as it ends, with the network it left, and the records after the first layer.
#[derive(Default)]
struct Walk {
    tries: Vec<(LayerAttempt, Network)>,
    after_first: Option<(History, Network)>,
}

impl RoundObserver for Walk {
    fn on_round(&mut self, history: &History, net: &Network) -> Result<(), PruneError> {
        if history.rounds.len() == 2 {
            self.after_first = Some((history.clone(), net.deep_clone()));
        }
        Ok(())
    }

    fn on_attempt(&mut self, history: &History, candidate: &Network) -> Result<(), PruneError> {
        self.tries.push((history.attempts.last().unwrap().clone(), candidate.deep_clone()));
        Ok(())
    }
}

/// The layer-wise walk over `net` through the one driver.
fn walk(net: Network, config: &LayerWise, rounds: &Rounds, completed: Option<Completed>) -> (RoundsOutcome, Walk) {
    let mut strategy = LayerWisePruner::new(config.clone(), &net, vec![], Device::flex());
    let mut seen = Walk::default();
    let outcome = run_rounds(net, &mut strategy, rounds, completed, &mut seen).unwrap();
    (outcome, seen)
}

fn config(granularity: Granularity, max_drop: f64, freeze_pruned: bool) -> LayerWise {
    LayerWise {
        granularity,
        unit_criterion: Criterion::L1,
        targets: BTreeMap::from([("fc1".into(), 0.8), ("fc2".into(), 0.5), ("fc3".into(), 0.5)]),
        freeze_pruned,
        max_drop,
        max_retries: 2,
        seed: 1,
    }
}

#[test]
fn layers_go_in_forward_order_one_accepted_round_each() {
    let (out, seen) = walk(net(), &config(Granularity::Weight, 1.0, false), &rounds("order"), None);
    let layers: Vec<&str> = seen.tries.iter().map(|(a, _)| a.layer.as_str()).collect();
    assert_eq!(layers, ["fc1", "fc2", "fc3"]);
    assert!(out.history.attempts.iter().all(|a| a.accepted));
    let report = sparsity_report(&out.net);
    let sparsity: Vec<f64> = report.layers.iter().map(|l| (l.sparsity * 100.0).round() / 100.0).collect();
    assert_eq!(sparsity, [0.8, 0.5, 0.5], "each layer at its target, the earlier ones kept");
}

#[test]
fn a_layer_that_drops_too_far_backs_off_by_halving_its_step() {
    // No accuracy can satisfy a negative allowance: every try backs off until the last.
    let mut config = config(Granularity::Weight, -1.0, false);
    config.targets = BTreeMap::from([("fc1".into(), 0.8)]);
    let (out, _) = walk(net(), &config, &rounds("backoff"), None);
    let attempts = &out.history.attempts;
    let tries: Vec<(f64, bool)> = attempts.iter().map(|a| (a.target, a.accepted)).collect();
    assert_eq!(tries, [(0.8, false), (0.4, false), (0.2, true)], "halved twice, then kept after max_retries");
    let fc1 = &attempts[2].sparsity.layers[0];
    assert!(
        (fc1.sparsity - 0.2).abs() < 1.0 / fc1.weights as f64 + 1e-12,
        "each retry starts from the layer's state before it"
    );
}

#[test]
fn frozen_layers_keep_their_values_while_later_layers_retrain() {
    for granularity in [Granularity::Weight, Granularity::Unit] {
        let (_, seen) = walk(net(), &config(granularity, 1.0, true), &rounds("freeze"), None);
        let snapshots: Vec<(String, Vec<f32>)> =
            seen.tries.iter().map(|(a, n)| (a.layer.clone(), values_of(n, "fc1.weight").unwrap())).collect();
        let after_fc1 = &snapshots[0].1;
        for (layer, values) in &snapshots[1..] {
            assert_eq!(values, after_fc1, "{granularity:?}: fc1 unchanged while {layer} retrained");
        }
    }
}

/// What `coppice run --resume` relies on for layer-wise runs: started again from the network
/// after the first accepted layer and the tries so far, the walk goes on at the next layer and
/// ends where the uninterrupted walk ends.
#[test]
fn resuming_after_the_first_layer_ends_where_an_uninterrupted_walk_ends() {
    for granularity in [Granularity::Weight, Granularity::Unit] {
        let config = config(granularity, 1.0, true);
        let dense = net();
        let (whole, seen) = walk(dense.deep_clone(), &config, &rounds("resume-whole"), None);
        let (history, net_after_first) = seen.after_first.unwrap();
        let completed = Completed { history, dense };
        let (resumed, later) = walk(net_after_first, &config, &rounds("resume-rest"), Some(completed));
        let later: Vec<String> = later.tries.iter().map(|(a, _)| a.layer.clone()).collect();
        // Unit pruning never prunes the output layer, so its walk is fc1, fc2.
        let rest = &layer_order(&whole.net, granularity)[1..];
        assert_eq!(later, rest, "{granularity:?}: the first layer is not pruned again");
        assert_eq!(resumed.history.attempts.len(), whole.history.attempts.len());
        assert_eq!(resumed.net.architecture(), whole.net.architecture());
        for layer in whole.net.prunable_layers() {
            assert_eq!(
                values_of(&whole.net, &layer.weight_path),
                values_of(&resumed.net, &layer.weight_path),
                "{granularity:?}: {}",
                layer.name
            );
        }
    }
}
