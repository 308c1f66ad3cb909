//! Neuron and filter pruning: surgery equivalence, criteria, rounds.

use burn::module::Param;
use burn::prelude::*;
use coppice_data::{ImageBatch, ImageBatcher, ImageDataset, Normalization, synthetic_images};
use coppice_models::{Classifier, InputShape, Network, Prunable, UnitGroup, edit_param, presets};
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

fn lenet() -> Network {
    seeded(&device(), 4, || {
        presets::lenet5(InputShape { channels: 1, height: 16, width: 16 }, [4, 6, 8], 3).init(&device()).unwrap()
    })
}

fn images(batch: usize, channels: usize, side: usize) -> Tensor<4> {
    let distribution = burn::tensor::Distribution::Normal(0.0, 1.0);
    seeded(&device(), 9, || Tensor::random([batch, channels, side, side], distribution, &device()))
}

fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// Zeroes unit `k`'s incoming weights (the producer's slice), as a masked unit would be.
fn zero_incoming(net: Network, group: &UnitGroup, units: &[usize]) -> Network {
    let slice = group.producer[0].clone();
    let mut editor = ZeroUnits { path: slice.path, dim: slice.dim, units: units.to_vec() };
    coppice_models::edit_params(net, &mut editor)
}

struct ZeroUnits {
    path: String,
    dim: usize,
    units: Vec<usize>,
}

impl coppice_models::ParamEditor for ZeroUnits {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if path != self.path {
            return param;
        }
        edit_param(param, |t| {
            let dims = t.dims();
            let device = t.device();
            let mut t = t;
            for &k in &self.units {
                let ranges: [std::ops::Range<usize>; D] =
                    std::array::from_fn(|d| if d == self.dim { k..k + 1 } else { 0..dims[d] });
                let mut zero_dims = dims;
                zero_dims[self.dim] = 1;
                t = t.slice_assign(ranges, Tensor::zeros(zero_dims, &device));
            }
            t
        })
    }
}

fn keep_all_but(units: usize, removed: &[usize]) -> Vec<bool> {
    (0..units).map(|k| !removed.contains(&k)).collect()
}

/// Removing units whose incoming weights are zero changes nothing: their constant output is
/// folded into the consumer's bias.
fn assert_cut_is_equivalent(net: Network, group_index: usize, removed: &[usize], input: Tensor<4>) {
    let group = net.unit_groups()[group_index].clone();
    let masked = zero_incoming(net, &group, removed);
    let expected = masked.forward(input.clone());
    let cut = cut_units(masked, &[UnitCut { keep: keep_all_but(group.units, removed), group: group.clone() }]).unwrap();
    let after = &cut.unit_groups()[group_index];
    assert_eq!(after.units, group.units - removed.len(), "{} lost its units", group.layer);
    let diff = max_diff(expected, cut.forward(input));
    assert!(diff < 1e-5, "{}: outputs moved by {diff}", group.layer);
}

#[test]
fn linear_to_linear_removal_is_exact() {
    assert_cut_is_equivalent(mlp(), 0, &[0, 5, 11], images(5, 1, 6));
    assert_cut_is_equivalent(mlp(), 1, &[3], images(5, 1, 6));
}

#[test]
fn conv_to_conv_removal_is_exact() {
    assert_cut_is_equivalent(lenet(), 0, &[1, 2], images(3, 1, 16));
}

#[test]
fn conv_to_flatten_to_linear_removal_is_exact() {
    assert_cut_is_equivalent(lenet(), 1, &[0, 4], images(3, 1, 16));
    assert_cut_is_equivalent(lenet(), 2, &[7], images(3, 1, 16));
}

#[test]
fn removing_units_with_zero_outgoing_weights_changes_nothing() {
    let net = mlp();
    let group = net.unit_groups()[0].clone();
    let input = images(4, 1, 6);
    // Zero the consumer rows of units 2 and 3 (their outgoing weights).
    let mut editor =
        ZeroUnits { path: group.consumers[0].slice.path.clone(), dim: group.consumers[0].slice.dim, units: vec![2, 3] };
    let zeroed = coppice_models::edit_params(net, &mut editor);
    let before = zeroed.forward(input.clone());
    let cut = cut_units(zeroed, &[UnitCut { keep: keep_all_but(12, &[2, 3]), group }]).unwrap();
    // The producer bias still feeds the fold, but through zero weights: nothing changes.
    assert!(max_diff(before, cut.forward(input)) < 1e-5);
}

/// ResNet-8 on 1x8x8 inputs with stages of 4, 6 and 8 channels: one block per stage.
fn resnet() -> Network {
    let architecture =
        presets::resnet(InputShape { channels: 1, height: 8, width: 8 }, 8, &[4, 6, 8], 3).expect("8 = 6 x 1 + 2");
    seeded(&device(), 4, || architecture.init(&device()).unwrap())
}

/// Cutting a ResNet's channels gives the logits of the uncut network with those channels
/// silenced at every producer (conv filters, BN scale, shift and statistics): for inner groups,
/// whose consumer conv has no bias to absorb a removed channel's constant, and for residual
/// groups, whose channels are sums of several producers.
#[test]
fn resnet_channel_removal_is_exact_for_inner_and_residual_groups() {
    let input = images(3, 1, 8);
    let cases = [
        // Inner channels: stage 1 (identity shortcut), stage 2 (stride 2 and a projection).
        ("layer1.0.conv1", vec![1, 3]),
        ("layer2.0.conv1", vec![0, 2, 5]),
        // Inner channels of stage 3 down to one.
        ("layer3.0.conv1", vec![0, 1, 2, 3, 4, 6, 7]),
        // Residual channels of stage 1: the stem and the block write them, stage 2's conv1 and
        // projection read them. A stage of one block is named by its block.
        ("layer1.0", vec![0, 2]),
        // Stage 2's, written by its projection: the group crosses it.
        ("layer2.0", vec![1, 4]),
        // Stage 3's, read by the classifier, down to one channel.
        ("layer3.0", vec![0, 1, 2, 3, 5, 6, 7]),
    ];
    for (name, removed) in cases {
        let net = resnet();
        let g = net.unit_groups().iter().position(|g| g.layer == name).unwrap_or_else(|| panic!("no group {name}"));
        let group = net.unit_groups()[g].clone();
        let mut silenced = net;
        for slice in &group.producer {
            let mut editor = ZeroUnits { path: slice.path.clone(), dim: slice.dim, units: removed.clone() };
            silenced = coppice_models::edit_params(silenced, &mut editor);
        }
        let expected = silenced.forward(input.clone());
        let keep = keep_all_but(group.units, &removed);
        let cut = cut_units(silenced, &[UnitCut { keep, group: group.clone() }]).unwrap();
        assert_eq!(cut.unit_groups()[g].units, group.units - removed.len());
        let diff = max_diff(expected, cut.forward(input.clone()));
        assert!(diff < 1e-5, "{}: logits moved by {diff}", group.layer);
        let rebuilt = cut.architecture().init(&device()).unwrap();
        assert_eq!(rebuilt.unit_groups()[g].units, group.units - removed.len(), "architecture.json keeps the cut");
    }
}

fn calibration(net_input: (usize, usize), count: usize) -> Vec<ImageBatch> {
    let set = synthetic_images(64, 4, 1, net_input.0, net_input.1, 2);
    let batcher = ImageBatcher::for_set(&set, Normalization::uniform(0.5, 0.5));
    let dataset = ImageDataset::new(set);
    (0..count)
        .map(|b| {
            use burn::data::dataloader::batcher::Batcher;
            use burn::data::dataset::Dataset;
            let items = (b * 16..(b + 1) * 16).map(|i| dataset.get(i).unwrap()).collect();
            batcher.batch(items, &device())
        })
        .collect()
}

fn pruner(
    criterion: Criterion,
    target: f64,
    min_units: usize,
    calibration: Vec<ImageBatch>,
) -> Result<NeuronPruner, PruneError> {
    let config = NeuronPruning {
        criterion,
        allocation: Allocation::Layer { target, overrides: Default::default() },
        schedule: Schedule::OneShot,
        normalize: false,
        min_units,
        seed: 1,
    };
    NeuronPruner::new(config, calibration, device())
}

#[test]
fn every_criterion_ranks_a_planted_dead_unit_last() {
    // Unit 6 of fc1 has no incoming weights and no bias: its activation is always zero.
    let net = mlp();
    let group = net.unit_groups()[0].clone();
    let net = zero_incoming(net, &group, &[6]);
    let mut bias = ZeroUnits { path: "fc1.bias".into(), dim: 0, units: vec![6] };
    let net = coppice_models::edit_params(net, &mut bias);
    for criterion in [Criterion::L1, Criterion::L2, Criterion::Activation, Criterion::Apoz, Criterion::Taylor] {
        let mut p = pruner(criterion, 0.5, 1, calibration((6, 6), 3)).unwrap();
        let scores = p.scores(&net);
        let lowest = scores[0].iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(lowest, 6, "{criterion:?} scores {:?}", scores[0]);
    }
}

#[test]
fn data_driven_criteria_need_data_and_floors_must_be_met() {
    assert!(pruner(Criterion::Taylor, 0.5, 1, vec![]).is_err());
    assert!(pruner(Criterion::L1, 0.5, 1, vec![]).is_ok());
    let mut p = pruner(Criterion::L1, 0.5, 13, vec![]).unwrap();
    let err = p.prune_to(mlp(), &|t| t).expect_err("fc1 has 12 units, fewer than 13");
    assert!(err.to_string().contains("min_units"), "{err}");
    // A floor that can be met overrides the allocation.
    let mut p = pruner(Criterion::L1, 0.9, 3, vec![]).unwrap();
    let net = p.prune_to(mlp(), &|t| t).unwrap();
    let units: Vec<usize> = net.unit_groups().iter().map(|g| g.units).collect();
    assert_eq!(units, [3, 3], "90 % of 12 and 8 would leave 1 each; the floor keeps 3");
}

#[test]
fn neuron_rounds_shrink_the_network_and_retrain_it() {
    let config = TrainConfig { epochs: 2, batch_size: 16, lr: 0.02, ..TrainConfig::default() };
    let rounds = synthetic_rounds(quiet_setup("neuron", config, 3));
    let config = NeuronPruning {
        criterion: Criterion::L2,
        allocation: Allocation::Global(0.5),
        schedule: Schedule::Iterative { rounds: 2 },
        normalize: true,
        min_units: 1,
        seed: 1,
    };
    let mut strategy = NeuronPruner::new(config.clone(), vec![], device()).unwrap();
    let mut saved: Vec<(RoundRecord, Network)> = Vec::new();
    let outcome = run_rounds(mlp(), &mut strategy, &rounds, None, &mut |r: &RoundRecord, net: &Network| {
        saved.push((r.clone(), net.deep_clone()))
    })
    .unwrap();
    let units: usize = outcome.net.unit_groups().iter().map(|g| g.units).sum();
    assert_eq!(units, 10, "half of the 20 hidden units are gone");
    assert!(outcome.net.num_params() < mlp().num_params());
    let last = outcome.history.rounds.last().unwrap();
    assert!(last.test.accuracy > 0.5, "the smaller network still learns: {}", last.test.accuracy);

    // Resumed after round 1, round 2 cuts from the original sizes, as it did uninterrupted.
    let completed = Completed {
        history: History { rounds: saved[..2].iter().map(|(r, _)| r.clone()).collect(), attempts: vec![] },
        dense: saved[0].1.deep_clone(),
    };
    let mut fresh = NeuronPruner::new(config, vec![], device()).unwrap();
    let resumed = run_rounds(
        saved[1].1.deep_clone(),
        &mut fresh,
        &rounds,
        Some(completed),
        &mut |_: &RoundRecord, _: &Network| {},
    )
    .unwrap();
    assert_eq!(resumed.net.architecture(), outcome.net.architecture());
    assert_eq!(resumed.history.rounds.last().unwrap().test, last.test);
}

/// Sets every entry of the tensors whose path ends with a given suffix.
struct SetAll(Vec<(&'static str, f32)>);

impl coppice_models::ParamEditor for SetAll {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.0.iter().find(|(suffix, _)| path.ends_with(suffix)) {
            Some((_, value)) => edit_param(param, |t| t.ones_like().mul_scalar(*value)),
            None => param,
        }
    }
}

#[test]
fn conv_to_batchnorm_to_flatten_to_linear_removal_is_exact() {
    let architecture = presets::vgg(InputShape { channels: 1, height: 8, width: 8 }, &[vec![3], vec![4]], 5, 2);
    let net = seeded(&device(), 4, || architecture.init(&device()).unwrap());
    // BatchNorm statistics far from the identity, so the fold has to go through them.
    let mut stats =
        SetAll(vec![("bn2.gamma", 1.7), ("bn2.beta", 0.3), ("bn2.running_mean", -0.4), ("bn2.running_var", 2.5)]);
    let net = coppice_models::edit_params(net, &mut stats);
    let groups = net.unit_groups();
    assert!(matches!(groups[1].between[0], coppice_models::UnitOp::BatchNorm { .. }), "conv2 -> bn -> relu -> fc1");
    assert_cut_is_equivalent(net, 1, &[0, 2], images(3, 1, 8));
}
