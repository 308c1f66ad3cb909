//! Weight pruning on a tiny model and synthetic data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use burn::prelude::*;
use coppice_data::{ImageBatcher, ImageDataset, Normalization};
use coppice_models::{InputShape, Network, Prunable, presets};
use coppice_prune::*;
use coppice_train::{Callback, Callbacks, OptimizerKind, TrainConfig, TrainSetup, fit};

mod common;
use common::{quiet_setup, seeded, synthetic_rounds, synthetic_split};

fn tiny_net() -> Network {
    let device = Device::flex();
    seeded(&device, 3, || {
        presets::mlp(InputShape { channels: 1, height: 6, width: 6 }, &[24, 12], 4).init(&device).unwrap()
    })
}

fn setup(tag: &str, epochs: usize, optimizer: OptimizerKind) -> TrainSetup {
    quiet_setup(tag, TrainConfig { epochs, batch_size: 16, lr: 0.02, optimizer, ..TrainConfig::default() }, 5)
}

fn rounds(tag: &str, epochs: usize, optimizer: OptimizerKind, rewind: Rewind) -> Rounds {
    Rounds { rewind, ..synthetic_rounds(setup(tag, epochs, optimizer)) }
}

fn pruner(allocation: Allocation, schedule: Schedule) -> WeightPruner {
    let config = WeightPruning { criterion: Criterion::Magnitude, allocation, schedule, include_bias: false, seed: 1 };
    WeightPruner::new(config, Device::flex())
}

fn per_layer(target: f64, overrides: &[(&str, f64)]) -> Allocation {
    Allocation::Layer {
        target,
        overrides: overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
    }
}

fn zero_positions(net: &Network, path: &str) -> Vec<usize> {
    values_of(net, path).unwrap().iter().enumerate().filter(|(_, v)| **v == 0.0).map(|(i, _)| i).collect()
}

#[test]
fn masks_hold_exactly_through_retraining_with_sgd_momentum_and_adam() {
    for optimizer in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        let mut strategy = pruner(per_layer(0.5, &[]), Schedule::OneShot);
        let net = tiny_net();
        let pruned = strategy.prune(&net, 1, 0).unwrap();
        let before = zero_positions(&pruned, "fc1.weight");
        assert_eq!(before.len(), 36 * 24 / 2);
        let pruned_values = values_of(&pruned, "fc1.weight").unwrap();
        let outcome = run_rounds(
            pruned,
            &mut strategy,
            &rounds("hold", 2, optimizer, Rewind::None),
            None,
            &mut |_: &RoundRecord, _: &Network| {},
        )
        .unwrap();
        // The round pruned again (a no-op at the same target) and retrained 2 epochs with a
        // fresh optimizer whose momentum would have moved any unmasked weight.
        let after = zero_positions(&outcome.net, "fc1.weight");
        assert_eq!(before, after, "{optimizer:?}: the same weights are exactly zero");
        let live = values_of(&outcome.net, "fc1.weight").unwrap();
        assert_eq!(live.iter().filter(|v| **v != 0.0).count(), 36 * 24 / 2, "{optimizer:?}: the others stay");
        let moved =
            live.iter().zip(&pruned_values).filter(|(after, before)| **before != 0.0 && after != before).count();
        assert!(moved * 10 >= 36 * 24 / 2 * 9, "{optimizer:?}: the others train: {moved} of {} moved", 36 * 24 / 2);
    }
}

#[test]
fn per_layer_targets_land_within_one_weight_and_stay_after_retraining() {
    let mut strategy = pruner(per_layer(0.37, &[("fc3", 0.74)]), Schedule::Iterative { rounds: 3 });
    let outcome = run_rounds(
        tiny_net(),
        &mut strategy,
        &rounds("exact", 1, OptimizerKind::Sgd, Rewind::None),
        None,
        &mut |_: &RoundRecord, _: &Network| {},
    )
    .unwrap();
    let last = outcome.history.rounds.last().unwrap();
    for layer in &last.sparsity.layers {
        let target = if layer.name == "fc3" { 0.74 } else { 0.37 };
        let expected = target * layer.weights as f64;
        assert!(
            (layer.zeros as f64 - expected).abs() <= 1.0,
            "{}: {} zeros, target {expected}",
            layer.name,
            layer.zeros
        );
    }
    // Round by round, the cumulative target of the iterative schedule.
    for record in &outcome.history.rounds[1..] {
        let fc1 = &record.sparsity.layers[0];
        let expected = iterative_target(0.37, 3, record.round) * fc1.weights as f64;
        assert!((fc1.zeros as f64 - expected).abs() <= 1.0, "round {}: {} vs {expected}", record.round, fc1.zeros);
    }
    assert_eq!(outcome.history.rounds.len(), 4, "round 0 plus three rounds");
    assert!(last.test.accuracy > 0.5, "the pruned tiny model still beats chance (0.25): {}", last.test.accuracy);
}

#[test]
fn global_magnitude_prunes_to_the_overall_target() {
    let mut strategy = pruner(Allocation::Global(0.8), Schedule::OneShot);
    let net = tiny_net();
    let weights: usize = net.prunable_layers().iter().map(|l| l.weight_count()).sum();
    let pruned = strategy.prune(&net, 1, 0).unwrap();
    let report = sparsity_report(&pruned);
    assert!((report.sparsity * weights as f64 - 0.8 * weights as f64).abs() <= 1.0);
    assert!(report.compression_ratio > 3.0);
}

/// Records fc1's sparsity after every step, behind the pruner in the callback list.
struct Observer {
    seen: Arc<Mutex<Vec<f64>>>,
}

impl Callback for Observer {
    fn after_step(&mut self, net: Network, _step: usize) -> Network {
        self.seen.lock().unwrap().push(sparsity_report(&net).layers[0].sparsity);
        net
    }
}

#[test]
fn agp_raises_sparsity_by_the_formula_during_training() {
    let (start, end, frequency, target) = (4, 36, 4, 0.9);
    let schedule = Schedule::Agp { initial: 0.0, start, end, frequency };
    let strategy = pruner(per_layer(target, &[]), schedule);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let callbacks = Callbacks::new(vec![Box::new(strategy.clone()), Box::new(Observer { seen: seen.clone() })]);
    let (train, test) = synthetic_split();
    let batcher = ImageBatcher::for_set(&train, Normalization::uniform(0.5, 0.5));
    // 320 samples / 16 = 20 steps per epoch, 2 epochs = 40 steps.
    fit(
        tiny_net(),
        ImageDataset::new(train),
        ImageDataset::new(test),
        batcher,
        &setup("agp", 2, OptimizerKind::Sgd),
        &callbacks,
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 40);
    let fc1 = 36.0 * 24.0;
    let mut expected_now = 0.0;
    for (i, &sparsity) in seen.iter().enumerate() {
        let step = i + 1;
        if step >= start && step <= end && (step - start) % frequency == 0 {
            expected_now = (agp_sparsity(0.0, target, start, end - start, step) * fc1).round() / fc1;
        }
        assert!((sparsity - expected_now).abs() < 1e-9, "step {step}: {sparsity} vs {expected_now}");
    }
    assert!((seen[39] - target).abs() < 1.0 / fc1, "the end lands on the target");
    assert!(seen[7] > 0.0 && seen[7] < seen[23], "sparsity rises");
}

#[test]
fn rewinding_resets_survivors_to_their_initial_values() {
    let initial = tiny_net();
    let mut strategy = pruner(per_layer(0.5, &[]), Schedule::OneShot);
    let outcome = run_rounds(
        initial.clone(),
        &mut strategy,
        &rounds("rewind", 0, OptimizerKind::Sgd, Rewind::Init(initial.clone())),
        None,
        &mut |_: &RoundRecord, _: &Network| {},
    )
    .unwrap();
    let start = values_of(&initial, "fc1.weight").unwrap();
    let end = values_of(&outcome.net, "fc1.weight").unwrap();
    let mut zeros = 0;
    for (a, b) in start.iter().zip(&end) {
        if *b == 0.0 {
            zeros += 1;
        } else {
            assert_eq!(a, b);
        }
    }
    assert_eq!(zeros, 36 * 24 / 2);
}

#[test]
fn random_rewinding_draws_fresh_survivors_like_the_initial_ones_and_the_same_on_a_rerun() {
    let initial = tiny_net();
    let rewound = |tag: &str| {
        let mut strategy = pruner(per_layer(0.5, &[]), Schedule::OneShot);
        let rewind = Rewind::Random { like: initial.clone(), seed: 11 };
        let outcome = run_rounds(
            initial.clone(),
            &mut strategy,
            &rounds(tag, 0, OptimizerKind::Sgd, rewind),
            None,
            &mut |_: &RoundRecord, _: &Network| {},
        )
        .unwrap();
        values_of(&outcome.net, "fc1.weight").unwrap()
    };
    let (start, end) = (values_of(&initial, "fc1.weight").unwrap(), rewound("random"));
    assert_eq!(end, rewound("random-again"), "the round's own seed: a rerun draws the same");
    let survivors: Vec<f32> = end.iter().copied().filter(|v| *v != 0.0).collect();
    assert_eq!(survivors.len(), 36 * 24 / 2, "the mask holds");
    let kept_initial = start.iter().zip(&end).filter(|(a, b)| **b != 0.0 && a == b).count();
    assert_eq!(kept_initial, 0, "no survivor keeps its initial value");
    // Drawn as the initial weights were: the same spread, within sampling error.
    let spread = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    let ratio = spread(&survivors) / spread(&start);
    assert!((0.8..1.25).contains(&ratio), "spread ratio {ratio}");
}

#[test]
fn random_criterion_prunes_the_target_but_not_by_magnitude() {
    let config = WeightPruning {
        criterion: Criterion::Random,
        allocation: per_layer(0.5, &[]),
        schedule: Schedule::OneShot,
        include_bias: true,
        seed: 9,
    };
    let mut strategy = WeightPruner::new(config, Device::flex());
    let net = tiny_net();
    let original = values_of(&net, "fc1.weight").unwrap();
    let pruned = strategy.prune(&net, 1, 0).unwrap();
    let zeros = zero_positions(&pruned, "fc1.weight");
    let biases = zero_positions(&pruned, "fc1.bias");
    assert!(!biases.is_empty(), "include_bias prunes biases too");
    let pruned = (zeros.len() + biases.len()) as f64;
    assert!((pruned - 0.5 * (36.0 * 24.0 + 24.0)).abs() <= 1.0, "{pruned} of {} pruned", 36 * 24 + 24);
    let largest_pruned = zeros.iter().map(|&i| original[i].abs()).fold(0.0f32, f32::max);
    let smallest_kept =
        original.iter().enumerate().filter(|(i, _)| !zeros.contains(i)).map(|(_, v)| v.abs()).fold(f32::MAX, f32::min);
    assert!(largest_pruned > smallest_kept, "random is not magnitude");
}

/// What `coppice run --resume` relies on: the rounds after an interruption, started from the
/// saved network and records, end exactly where an uninterrupted run ends.
#[test]
fn resuming_after_round_one_ends_where_an_uninterrupted_run_ends() {
    for criterion in [Criterion::Magnitude, Criterion::Random] {
        let pruner = || {
            let config = WeightPruning {
                criterion,
                allocation: per_layer(0.6, &[]),
                schedule: Schedule::Iterative { rounds: 3 },
                include_bias: false,
                seed: 1,
            };
            WeightPruner::new(config, Device::flex())
        };
        let mut saved: Vec<(RoundRecord, Network)> = Vec::new();
        let full = run_rounds(
            tiny_net(),
            &mut pruner(),
            &rounds("resume-full", 1, OptimizerKind::Sgd, Rewind::None),
            None,
            &mut |record: &RoundRecord, net: &Network| saved.push((record.clone(), net.deep_clone())),
        )
        .unwrap();
        let completed = Completed {
            history: History { rounds: saved[..2].iter().map(|(r, _)| r.clone()).collect(), attempts: vec![] },
            dense: saved[0].1.deep_clone(),
        };
        let mut later_rounds = Vec::new();
        let resumed = run_rounds(
            saved[1].1.deep_clone(),
            &mut pruner(),
            &rounds("resume-rest", 1, OptimizerKind::Sgd, Rewind::None),
            Some(completed),
            &mut |record: &RoundRecord, _: &Network| later_rounds.push(record.round),
        )
        .unwrap();
        assert_eq!(later_rounds, vec![2, 3], "{criterion:?}: only the rounds left are run");
        assert_eq!(resumed.history.rounds.len(), 4);
        for layer in full.net.prunable_layers() {
            assert_eq!(
                values_of(&full.net, &layer.weight_path),
                values_of(&resumed.net, &layer.weight_path),
                "{criterion:?}: {} differs",
                layer.name
            );
        }
        assert_eq!(full.history.rounds.last().unwrap().test, resumed.history.rounds.last().unwrap().test);
    }
}

/// 2:4 reached in two rounds (1 of 4, then 2 of 4) holds through retraining: in every group of
/// 4 consecutive inputs of every output of every layer, at most 2 weights are non-zero.
#[test]
fn two_of_four_holds_in_every_group_after_retraining() {
    let mut strategy = pruner(Allocation::NofM { n: 2, m: 4 }, Schedule::Iterative { rounds: 2 });
    let mut halfway = None;
    let outcome = run_rounds(
        tiny_net(),
        &mut strategy,
        &rounds("two-of-four", 2, OptimizerKind::Sgd, Rewind::None),
        None,
        &mut |record: &RoundRecord, _: &Network| {
            if record.round == 1 {
                halfway = Some(record.sparsity.sparsity);
            }
        },
    )
    .unwrap();
    assert_eq!(halfway, Some(0.25), "round 1 prunes 1 of every 4");
    for layer in outcome.net.prunable_layers() {
        // burn's Linear weights are [input, output]: input k of output o sits at k * outputs + o.
        let (inputs, outputs) = (layer.weight_shape[0], layer.weight_shape[1]);
        let values = values_of(&outcome.net, &layer.weight_path).unwrap();
        for output in 0..outputs {
            for start in (0..inputs).step_by(4) {
                let group = start..(start + 4).min(inputs);
                let nonzero = group.clone().filter(|k| values[k * outputs + output] != 0.0).count();
                assert!(nonzero <= 2, "{} output {output} inputs {group:?}: {nonzero} non-zero", layer.name);
            }
        }
        let zeros = values.iter().filter(|v| **v == 0.0).count();
        assert_eq!(zeros, values.len() / 2, "{}: half of the weights, and no more", layer.name);
    }
    assert!(outcome.history.rounds[2].test.accuracy > 0.5, "it still learns");
}

#[test]
fn each_round_records_its_pruned_network_before_retraining() {
    let net = tiny_net();
    let setup = rounds("before", 2, OptimizerKind::Sgd, Rewind::None);
    let pruned_alone = pruner(per_layer(0.9, &[]), Schedule::OneShot).prune(&net, 1, 0).unwrap();
    let expected =
        coppice_train::evaluate(&pruned_alone, setup.test.clone(), setup.batcher.clone(), 64, &Device::flex()).unwrap();
    let mut records = Vec::new();
    run_rounds(
        net,
        &mut pruner(per_layer(0.9, &[]), Schedule::OneShot),
        &setup,
        None,
        &mut |record: &RoundRecord, _: &Network| records.push(record.clone()),
    )
    .unwrap();
    assert_eq!(records.len(), 2);
    assert!(records[0].pruned.is_none(), "round 0 prunes nothing");
    let pruned = records[1].pruned.expect("round 1 recorded its pruned network");
    assert_eq!((pruned.accuracy, pruned.samples), (expected.accuracy, expected.samples));
    assert!((pruned.loss - expected.loss).abs() < 1e-6, "{} vs {}", pruned.loss, expected.loss);
    assert_ne!(pruned.loss, records[1].test.loss, "two epochs of retraining came after it");
}
