//! The one-pass updates give burn's optimizers' results to the bit, and with masks the generic
//! path's (which NdArray runs) to the bit, on tensors small and large enough to be split across
//! cores.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, Optimizer, SgdConfig};
use burn::prelude::*;
use coppice_kernels::{AdamStep, SgdStep, adam_update, sgd_update};

/// Not a multiple of the update's block, and above its threshold for using several cores.
const LARGE: usize = 70_001;

/// Values in (-2, 2) from `seed` alone: the device's generator is shared by the tests that run at
/// the same time.
fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

fn random(len: usize, seed: u64, device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(uniform(len, seed), [len]), device)
}

/// 0 or 1, about 30 % zeros.
fn mask(len: usize, seed: u64, device: &Device) -> Tensor<1> {
    let kept = uniform(len, seed).into_iter().map(|v| if v < -0.8 { 0.0 } else { 1.0 }).collect();
    Tensor::from_data(TensorData::new::<f32, _>(kept, [len]), device)
}

fn sgd_step(lr: f64, momentum: f32, nesterov: bool) -> SgdStep {
    SgdStep { lr, momentum, nesterov, weight_decay: Some(1e-4) }
}

#[test]
fn sgd_matches_burns_sgd_bit_for_bit() {
    let device = Device::flex();
    for (momentum, nesterov) in [(0.9, false), (0.9, true), (0.0, false)] {
        for len in [37, LARGE] {
            let burns = SgdConfig::new()
                .with_momentum((momentum > 0.0).then_some(MomentumConfig { momentum: 0.9, dampening: 0.0, nesterov }))
                .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
                .build();
            let (mut ours, mut theirs) = (random(len, 1, &device), random(len, 1, &device));
            let (mut velocity, mut state) = (None, None);
            for step in 0..4 {
                let grad = random(len, 10 + step, &device);
                let lr = 0.05 / (step + 1) as f64;
                (ours, velocity) =
                    sgd_update(ours, grad.clone(), velocity, None, None, sgd_step(lr, momentum, nesterov));
                (theirs, state) = burns.step(lr, theirs, grad, state);
                assert_eq!(
                    ours.to_data(),
                    theirs.to_data(),
                    "momentum {momentum}, nesterov {nesterov}, {len} values, step {step}"
                );
            }
            assert_eq!(velocity.is_some(), momentum > 0.0);
        }
    }
}

fn adam_step(time: i32) -> AdamStep {
    AdamStep { lr: 0.01, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-5, weight_decay: Some(1e-4), time }
}

#[test]
fn adam_matches_burns_adam_bit_for_bit() {
    let device = Device::flex();
    for len in [37, LARGE] {
        let burns = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(1e-4))).build();
        let (mut ours, mut theirs) = (random(len, 2, &device), random(len, 2, &device));
        let (mut moments, mut state) = (None, None);
        for step in 0..4 {
            let grad = random(len, 20 + step, &device);
            let (param, m1, m2) = adam_update(ours, grad.clone(), moments, None, None, adam_step(step as i32 + 1));
            (ours, moments) = (param, Some((m1, m2)));
            (theirs, state) = burns.step(0.01, theirs, grad, state);
            assert_eq!(ours.to_data(), theirs.to_data(), "{len} values, step {step}");
        }
    }
}

/// The masked updates on Flex (coppice's kernels) and NdArray (burn's operations): the same
/// values, and exactly no change where the mask is 0.
#[allow(deprecated)]
#[test]
fn masked_updates_match_the_generic_path_and_keep_pruned_entries() {
    let devices = [Device::flex(), Device::ndarray()];
    for len in [37, LARGE] {
        let [flex, ndarray] = devices.clone().map(|device| {
            let kept = mask(len, 4, &device);
            let mut sgd_param = random(len, 3, &device);
            let mut adam_param = sgd_param.clone();
            let (mut velocity, mut moments) = (None, None);
            for step in 0..3 {
                let grad = random(len, 30 + step, &device);
                // Pruning comes after the first step: the weights are cut, and the first update
                // under the mask clears the optimizer's state where it is 0.
                if step == 1 {
                    sgd_param = sgd_param * kept.clone();
                    adam_param = adam_param * kept.clone();
                }
                let masks = (step >= 1).then(|| kept.clone());
                let clear = (step == 1).then(|| kept.clone());
                let sgd = sgd_step(0.05, 0.9, true);
                (sgd_param, velocity) =
                    sgd_update(sgd_param, grad.clone(), velocity, masks.clone(), clear.clone(), sgd);
                let (p, m1, m2) = adam_update(adam_param, grad, moments, masks, clear, adam_step(step as i32 + 1));
                (adam_param, moments) = (p, Some((m1, m2)));
            }
            (sgd_param.into_data(), adam_param.into_data(), kept.into_data())
        });
        assert_eq!(flex.0, ndarray.0, "sgd, {len} values");
        assert_eq!(flex.1, ndarray.1, "adam, {len} values");
        let kept = flex.2.to_vec::<f32>().unwrap();
        assert!(kept.contains(&0.0) && kept.contains(&1.0));
        for (param, name) in [(&flex.0, "sgd"), (&flex.1, "adam")] {
            let values = param.to_vec::<f32>().unwrap();
            let moved = values.iter().zip(&kept).filter(|(v, k)| **k == 1.0 && **v != 0.0).count();
            assert!(moved > 0, "{name}: no kept entry is non-zero");
            for i in (0..len).filter(|&i| kept[i] == 0.0) {
                assert_eq!(values[i], 0.0, "{name}: pruned entry {i} moved");
            }
        }
    }
}
