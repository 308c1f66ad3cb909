//! Quantization after pruning (Deep Compression) on a tiny model and synthetic data.

use std::collections::{BTreeMap, BTreeSet};

use burn::prelude::*;
use burn::tensor::f16;
use coppice_models::{InputShape, Network, Prunable, presets};
use coppice_prune::*;
use coppice_train::{Callback, OptimizerKind, TrainConfig};

mod common;
use common::{quiet_setup, seeded, synthetic_rounds};

fn tiny_net() -> Network {
    let device = Device::flex();
    seeded(&device, 3, || {
        presets::mlp(InputShape { channels: 1, height: 6, width: 6 }, &[24, 12], 4).init(&device).unwrap()
    })
}

fn rounds(tag: &str, quantize: QuantizeConfig) -> Rounds {
    let config =
        TrainConfig { epochs: 1, batch_size: 16, lr: 0.02, optimizer: OptimizerKind::Sgd, ..TrainConfig::default() };
    Rounds { quantize: Some(quantize), ..synthetic_rounds(quiet_setup(tag, config, 5)) }
}

fn pruner() -> WeightPruner {
    let allocation = Allocation::Layer { target: 0.6, overrides: BTreeMap::new() };
    let config = WeightPruning {
        criterion: Criterion::Magnitude,
        allocation,
        schedule: Schedule::OneShot,
        include_bias: false,
        seed: 1,
    };
    WeightPruner::new(config, Device::flex())
}

fn weight_paths(net: &Network) -> Vec<String> {
    net.prunable_layers().into_iter().map(|l| l.weight_path).collect()
}

fn distinct_nonzero(values: &[f32]) -> BTreeSet<u32> {
    values.iter().filter(|v| **v != 0.0).map(|v| v.to_bits()).collect()
}

/// Runs one pruning round and the quantization stage; returns the network after pruning (from
/// the observer) and the outcome.
fn prune_and_quantize(tag: &str, quantize: QuantizeConfig) -> (Network, RoundsOutcome) {
    let mut after_pruning = None;
    let outcome =
        run_rounds(tiny_net(), &mut pruner(), &rounds(tag, quantize), None, &mut |r: &RoundRecord, net: &Network| {
            if r.round == 1 {
                after_pruning = Some(net.clone());
            }
        })
        .unwrap();
    (after_pruning.expect("round 1 ran"), outcome)
}

#[test]
fn kmeans_retraining_keeps_every_weight_on_its_codebook_and_every_pruned_weight_zero() {
    let config = QuantizeConfig { fc_bits: 2, retrain_epochs: 2, retrain_lr_scale: 1.0, ..QuantizeConfig::default() };
    let (pruned, outcome) = prune_and_quantize("kmeans", config);
    let record = outcome.history.rounds.last().unwrap();
    assert_eq!(outcome.history.rounds.len(), 3, "round 0, round 1, then the quantization record");
    let quantized = record.quantized.as_ref().expect("the last record is the quantization stage's");
    assert_eq!(quantized.bits.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    assert_eq!(record.epochs.len(), 2, "it retrained");
    let mut moved = false;
    for path in weight_paths(&pruned) {
        let before = values_of(&pruned, &path).unwrap();
        let after = values_of(&outcome.net, &path).unwrap();
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(*b == 0.0, *a == 0.0, "{path}: pruned weights stay exactly zero, kept ones non-zero");
        }
        let shared = distinct_nonzero(&after);
        assert!(shared.len() <= 4, "{path}: {} distinct values for 2 bits", shared.len());
        // Without retraining, the values would be k-means' own on the pruned weights (rounded to
        // half precision, as the stage ends).
        let kept: Vec<f32> = before.iter().copied().filter(|v| *v != 0.0).collect();
        let initial: BTreeSet<u32> =
            kmeans_codebook(&kept, 2).iter().map(|v| f16::from_f32(*v).to_f32().to_bits()).collect();
        moved |= !shared.is_subset(&initial);
    }
    assert!(moved, "retraining moved the shared values");
    // The stage ends in half precision, so that the compressed file stores codebooks and biases
    // in 2 bytes a value and still holds exactly the network the run measured.
    for layer in outcome.net.prunable_layers() {
        for path in std::iter::once(layer.weight_path).chain(layer.bias_path) {
            let values = values_of(&outcome.net, &path).unwrap();
            assert!(values.iter().all(|v| f16::from_f32(*v).to_f32() == *v), "{path} is not in half precision");
            assert!(
                values_of(&pruned, &path).unwrap().iter().any(|v| f16::from_f32(*v).to_f32() != *v),
                "{path} was already in half precision before the stage: the check above proves nothing"
            );
        }
    }
    let before = record.pruned.unwrap().accuracy;
    assert!(
        record.test.accuracy > 0.5,
        "the quantized tiny model beats chance (0.25): {before} -> {}",
        record.test.accuracy
    );
}

#[test]
fn a_shared_value_moves_by_the_sum_of_its_members_steps() {
    let net = tiny_net();
    let config = QuantizeConfig { fc_bits: 1, ..QuantizeConfig::default() };
    let (quantized, mut sharing) = WeightSharing::quantize(net, &config);
    let path = "fc3.weight";
    let before = values_of(&quantized, path).unwrap();
    // An optimizer step of +0.001 on every third weight, nothing on the others.
    let steps: Vec<f32> = before.iter().enumerate().map(|(i, _)| if i % 3 == 0 { 0.001 } else { 0.0 }).collect();
    let stepped = edit(&quantized, path, &before.iter().zip(&steps).map(|(v, s)| v + s).collect::<Vec<_>>());
    let after = values_of(&sharing.after_step(stepped, 1), path).unwrap();
    let values: BTreeSet<u32> = before.iter().map(|v| v.to_bits()).collect();
    for value in values {
        let members: Vec<usize> = (0..before.len()).filter(|&i| before[i].to_bits() == value).collect();
        let expected = f32::from_bits(value) as f64 + members.iter().map(|&i| steps[i] as f64).sum::<f64>();
        for &i in &members {
            assert!((after[i] as f64 - expected).abs() < 1e-5, "weight {i}: {} vs {expected}", after[i]);
        }
    }
}

#[test]
fn linear_quantization_gives_each_output_channel_at_most_its_levels() {
    let config = QuantizeConfig {
        method: QuantizeMethod::Linear,
        fc_bits: 3,
        retrain_epochs: 1,
        retrain_lr_scale: 1.0,
        ..QuantizeConfig::default()
    };
    let (pruned, outcome) = prune_and_quantize("linear", config);
    let fc1 = values_of(&outcome.net, "fc1.weight").unwrap();
    let before = values_of(&pruned, "fc1.weight").unwrap();
    assert!(before.iter().zip(&fc1).all(|(b, a)| (*b == 0.0) == (*a == 0.0)));
    // burn's linear weight is [inputs, outputs]: output channel `c` is every 24th value.
    for c in 0..24 {
        let channel: Vec<f32> = fc1.iter().skip(c).step_by(24).copied().collect();
        assert!(distinct_nonzero(&channel).len() <= 6, "channel {c}: 3 bits are -3..3 without 0");
    }
}

fn edit(net: &Network, path: &str, values: &[f32]) -> Network {
    struct Set<'a>(&'a str, &'a [f32]);
    impl coppice_models::ParamEditor for Set<'_> {
        fn edit<const D: usize>(
            &mut self,
            path: &str,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            if path != self.0 {
                return param;
            }
            coppice_models::edit_param(param, |v| {
                let (dims, device) = (v.dims(), v.device());
                Tensor::from_data(TensorData::new(self.1.to_vec(), dims), &device)
            })
        }
    }
    coppice_models::edit_params(net.clone(), &mut Set(path, values))
}

#[test]
fn a_resumed_run_quantizes_once() {
    let config = QuantizeConfig { fc_bits: 2, retrain_epochs: 1, ..QuantizeConfig::default() };
    let mut saved: Vec<(RoundRecord, Network)> = Vec::new();
    run_rounds(
        tiny_net(),
        &mut pruner(),
        &rounds("resume-a", config.clone()),
        None,
        &mut |r: &RoundRecord, net: &Network| saved.push((r.clone(), net.clone())),
    )
    .unwrap();
    assert_eq!(saved.len(), 3);
    let resume = |done: usize, tag: &str| {
        let completed = Completed {
            history: History { rounds: saved[..done].iter().map(|(r, _)| r.clone()).collect(), attempts: vec![] },
            dense: saved[0].1.clone(),
        };
        let mut seen = Vec::new();
        let outcome = run_rounds(
            saved[done - 1].1.clone(),
            &mut pruner(),
            &rounds(tag, config.clone()),
            Some(completed),
            &mut |r: &RoundRecord, _: &Network| seen.push(r.round),
        )
        .unwrap();
        (outcome, seen)
    };
    // Stopped after the last pruning round: the stage runs, and its record follows.
    let (outcome, seen) = resume(2, "resume-b");
    assert_eq!(seen, vec![2]);
    assert!(outcome.history.rounds[2].quantized.is_some());
    // Stopped after the stage: nothing runs again.
    let (outcome, seen) = resume(3, "resume-c");
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(outcome.history.rounds.len(), 3);
}
