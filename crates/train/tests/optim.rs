//! The optimizer with pruning masks folded into its update, stepped by hand on a tiny MLP, against
//! burn's own SGD and Adam.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use coppice_models::{Classifier, InputShape, Network, ParamEditor, edit_param, edit_params, float_params, presets};
use coppice_train::{OptimizerKind, TrainConfig, UpdateMasks, optimizer};

const WEIGHT: &str = "fc1.weight";

fn configs() -> Vec<TrainConfig> {
    let sgd = TrainConfig { lr: 0.1, momentum: 0.9, weight_decay: 1e-3, ..TrainConfig::default() };
    vec![
        sgd.clone(),
        TrainConfig { nesterov: true, ..sgd.clone() },
        TrainConfig { momentum: 0.0, ..sgd.clone() },
        TrainConfig { optimizer: OptimizerKind::Adam, lr: 0.01, ..sgd },
    ]
}

fn net(device: &Device) -> Network {
    presets::mlp(InputShape { channels: 1, height: 3, width: 4 }, &[8], 3).init(device).unwrap()
}

fn device() -> Device {
    Device::flex().autodiff()
}

/// `steps` steps on fixed batches, the network moving through each as in training. The batches
/// come from a formula, not the device's generator, which tests running in parallel share.
fn train(mut net: Network, optim: &mut ModuleOptimizer, lr: f64, steps: usize) -> Network {
    let device = device();
    for step in 0..steps {
        let pixels: Vec<f32> = (0..16 * 12).map(|i| ((i * 7 + step * 13) % 23) as f32 / 11.0 - 1.0).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [16, 1, 3, 4]), &device);
        let labels: Vec<i64> = (0..16).map(|i| ((i + step) % 3) as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [16]), &device);
        let logits = net.forward(images);
        let loss = CrossEntropyLossConfig::new().init(&device).forward(logits, targets);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(lr, net, grads);
    }
    net
}

/// burn's optimizer with the settings of `config`, as coppice configures it.
fn burns_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Sgd => {
            let momentum = (config.momentum > 0.0).then_some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: config.nesterov,
            });
            SgdConfig::new().with_momentum(momentum).with_weight_decay(decay).init()
        }
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
    }
}

/// Five steps from `start` with coppice's optimizer built for it.
fn train_fresh(start: &Network, config: &TrainConfig, masks: Option<&UpdateMasks>) -> Network {
    let mut optim = optimizer(config, start, masks);
    train(start.clone(), &mut optim, config.lr, 5)
}

/// Five steps from `start` with burn's optimizer.
fn train_with_burn(start: &Network, config: &TrainConfig) -> Network {
    train(start.clone(), &mut burns_optimizer(config), config.lr, 5)
}

fn values(net: &Network) -> Vec<(String, Vec<f32>)> {
    float_params(net).into_iter().map(|p| (p.path, p.values.into_data().try_to_vec::<f32>().unwrap())).collect()
}

fn weight(net: &Network) -> Vec<f32> {
    values(net).into_iter().find(|(path, _)| path == WEIGHT).unwrap().1
}

/// Every other entry of the first layer's weight pruned: zeroed, and masked from now on.
fn prune_half(net: Network, masks: &UpdateMasks) -> Network {
    let len = weight(&net).len();
    let factors: Vec<f32> = (0..len).map(|i| (i % 2) as f32).collect();
    let factors = Tensor::<1>::from_data(TensorData::new(factors, [len]), &Device::flex());
    masks.set(WEIGHT, factors.clone());
    struct Zero(Tensor<1>);
    impl ParamEditor for Zero {
        fn edit<const D: usize>(
            &mut self,
            path: &str,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            if path != WEIGHT {
                return param;
            }
            edit_param(param, |w| {
                let shape = w.shape();
                w * self.0.clone().reshape(shape)
            })
        }
    }
    edit_params(net, &mut Zero(factors))
}

#[test]
fn without_masks_the_update_is_burns_bit_for_bit() {
    for config in configs() {
        let start = net(&device());
        let burns = train_with_burn(&start, &config);
        assert_eq!(values(&burns), values(&train_fresh(&start, &config, None)), "{config:?}");
        let ours = train_fresh(&start, &config, Some(&UpdateMasks::default()));
        assert_eq!(values(&burns), values(&ours), "{config:?}");
    }
}

#[test]
fn an_all_ones_mask_changes_nothing() {
    for config in configs() {
        let start = net(&device());
        let burns = train_with_burn(&start, &config);
        let masks = UpdateMasks::default();
        masks.set(WEIGHT, Tensor::ones([weight(&start).len()], &Device::flex()));
        let ours = train_fresh(&start, &config, Some(&masks));
        assert_eq!(values(&burns), values(&ours), "{config:?}");
        assert!(masks.take_unfolded().is_empty(), "the update folded the mask in");
    }
}

#[test]
fn masked_weights_stay_exactly_zero_and_the_rest_train() {
    for config in configs() {
        let masks = UpdateMasks::default();
        let start = prune_half(net(&device()), &masks);
        let mut optim = optimizer(&config, &start, Some(&masks));
        let trained = train(start.clone(), &mut optim, config.lr, 8);
        assert!(masks.take_unfolded().is_empty(), "{config:?}: no mask left for after the step");
        let (before, after) = (weight(&start), weight(&trained));
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            if i % 2 == 0 {
                assert_eq!(*a, 0.0, "{config:?}: pruned entry {i}");
            } else {
                assert_ne!(a, b, "{config:?}: kept entry {i} trains");
            }
        }
    }
}

/// AGP sets masks in the middle of a training, when momentum or the first moment is already
/// non-zero at the newly pruned entries.
#[test]
fn a_mask_set_mid_training_clears_the_optimizers_state_there() {
    for config in configs() {
        let masks = UpdateMasks::default();
        let start = net(&device());
        let mut optim = optimizer(&config, &start, Some(&masks));
        let warmed = train(start, &mut optim, config.lr, 4);
        let pruned = prune_half(warmed, &masks);
        let trained = train(pruned, &mut optim, config.lr, 4);
        let after = weight(&trained);
        assert!(after.iter().step_by(2).all(|w| *w == 0.0), "{config:?}: {after:?}");
    }
}

/// A parameter the optimizer has no group for (a network other than the one it was built for)
/// is reported, so that its mask is applied after the step.
#[test]
fn a_mask_the_update_could_not_fold_is_reported() {
    let config = TrainConfig::default();
    let masks = UpdateMasks::default();
    let start = prune_half(net(&device()), &masks);
    let mut optim = optimizer(&config, &net(&Device::flex()), Some(&masks));
    train(start, &mut optim, config.lr, 1);
    assert_eq!(masks.take_unfolded(), vec![WEIGHT.to_string()]);
}

/// Checkpoints: SGD's and Adam's state written by coppice's update loads into burn's, and back.
#[test]
fn optimizer_state_is_interchangeable_with_burns() {
    for config in [TrainConfig { lr: 0.1, ..TrainConfig::default() }, configs().pop().unwrap()] {
        check_state_interchange(&config);
    }
}

fn check_state_interchange(config: &TrainConfig) {
    let masks = UpdateMasks::default();
    let start = net(&device());
    let mut ours = optimizer(config, &start, Some(&masks));
    let half = train(start.clone(), &mut ours, config.lr, 3);
    let mut burns = burns_optimizer(config).load_record(ours.to_record());
    let continued_by_burn = train(half.clone(), &mut burns, config.lr, 3);
    let continued_by_ours = train(half.clone(), &mut ours, config.lr, 3);
    assert_eq!(values(&continued_by_burn), values(&continued_by_ours));
    let mut ours_again = optimizer(config, &start, Some(&masks)).load_record(burns.to_record());
    let reference = train(continued_by_burn.clone(), &mut burns, config.lr, 2);
    assert_eq!(values(&train(continued_by_burn, &mut ours_again, config.lr, 2)), values(&reference));
}
