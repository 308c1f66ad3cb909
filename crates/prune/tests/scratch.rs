//! The train-from-scratch control (Liu et al. 2019) on a tiny MLP and synthetic data.

use burn::prelude::*;
use coppice_models::{InputShape, Network, Prunable, presets};
use coppice_prune::*;
use coppice_train::TrainConfig;

mod common;
use common::{quiet_setup, seeded, synthetic_rounds};

fn device() -> Device {
    Device::flex()
}

fn mlp() -> Network {
    seeded(&device(), 4, || {
        presets::mlp(InputShape { channels: 1, height: 6, width: 6 }, &[12, 8], 4).init(&device()).unwrap()
    })
}

fn rounds(budget: ScratchBudget) -> Rounds {
    let dense = TrainConfig { epochs: 2, batch_size: 16, lr: 0.05, ..TrainConfig::default() };
    let retrain = quiet_setup(&format!("scratch-{budget:?}"), TrainConfig { epochs: 1, lr: 0.01, ..dense.clone() }, 3);
    Rounds { scratch: Some(Scratch { budget, dense }), ..synthetic_rounds(retrain) }
}

fn pruner() -> NeuronPruner {
    let config = NeuronPruning {
        criterion: Criterion::L2,
        allocation: Allocation::Global(0.5),
        schedule: Schedule::OneShot,
        normalize: true,
        min_units: 1,
        seed: 1,
    };
    NeuronPruner::new(config, vec![], device()).unwrap()
}

fn weights(net: &Network) -> Vec<f32> {
    net.prunable_layers().iter().flat_map(|l| values_of(net, &l.weight_path).unwrap()).collect()
}

#[test]
fn the_pruned_architecture_trains_from_fresh_weights_for_its_budget_and_resumes_once() {
    for budget in [ScratchBudget::Epochs, ScratchBudget::Compute] {
        let rounds = rounds(budget);
        let mut saved: Vec<(RoundRecord, Network)> = Vec::new();
        let outcome = run_rounds(mlp(), &mut pruner(), &rounds, None, &mut |r: &RoundRecord, net: &Network| {
            saved.push((r.clone(), net.deep_clone()))
        })
        .unwrap();
        let history = &outcome.history.rounds;
        assert_eq!(history.len(), 3, "{budget:?}: round 0, the pruning round, then the control");
        let (fine_tuned, scratch) = (&saved[1].1, &history[2]);
        let record = scratch.scratch.as_ref().expect("the last record is the control's");
        let flops = |r: &RoundRecord| r.sparsity.flops_dense as f64;
        let expected = match budget {
            ScratchBudget::Epochs => 2,
            ScratchBudget::Compute => (2.0 * flops(&history[0]) / flops(&history[1])).ceil() as usize,
        };
        assert_eq!((record.budget, record.epochs, scratch.epochs.len()), (budget, expected, expected));
        assert!(flops(&history[0]) > flops(&history[1]) * 1.5, "half the hidden units are gone");
        assert_eq!(outcome.net.architecture(), fine_tuned.architecture(), "{budget:?}: the pruned architecture");
        let (a, b) = (weights(&outcome.net), weights(fine_tuned));
        assert!(a.iter().zip(&b).filter(|(x, y)| x != y).count() > a.len() * 9 / 10, "fresh weights, not the pruned");
        assert!(scratch.test.accuracy > 0.5, "{budget:?}: it learns: {}", scratch.test.accuracy);

        // Interrupted during the control, the run trains it again from the same draw; after it,
        // nothing runs again.
        for done in [2, 3] {
            let completed = Completed {
                history: History { rounds: saved[..done].iter().map(|(r, _)| r.clone()).collect(), attempts: vec![] },
                dense: saved[0].1.deep_clone(),
            };
            let resumed = run_rounds(
                saved[done - 1].1.deep_clone(),
                &mut pruner(),
                &rounds,
                Some(completed),
                &mut |_: &RoundRecord, _: &Network| {},
            )
            .unwrap();
            assert_eq!(resumed.history.rounds.len(), 3);
            assert_eq!(weights(&resumed.net), a, "{budget:?}: resumed after {done} records");
        }
    }
}
