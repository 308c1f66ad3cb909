//! Surgery on networks written as graphs: cutting units gives the logits of the network with
//! those units masked to zero at every producer (weights, bias, BatchNorm's scale and shift),
//! BatchNorm in eval mode, with statistics far from the identity. The groups come from the graph
//! alone: nothing here lists a coupled slice.

use burn::module::Param;
use burn::prelude::*;
use coppice_models::{Architecture, Classifier, InputShape, Network, Node, Op, ParamEditor, Prunable, edit_param};
use coppice_prune::{UnitCut, cut_units};

mod common;
use common::seeded;

fn device() -> Device {
    Device::flex()
}

fn layer(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node { name: name.into(), op, inputs: inputs.iter().map(|s| s.to_string()).collect() }
}

fn conv(filters: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Op {
    Op::Conv { filters, kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2], bias }
}

fn norm() -> Op {
    Op::BatchNorm { epsilon: 1e-5, momentum: 0.1 }
}

/// conv -> BatchNorm -> ReLU -> conv (padded) -> max-pool -> flatten -> linear -> ReLU -> linear.
fn chain() -> Architecture {
    Architecture {
        input: InputShape { channels: 2, height: 8, width: 8 },
        layers: vec![
            layer("c1", conv(5, 3, 1, 0, true), &[]),
            layer("n1", norm(), &[]),
            layer("r1", Op::Relu, &[]),
            layer("c2", conv(4, 3, 1, 1, true), &[]),
            layer("p2", Op::MaxPool { kernel: [2, 2], stride: [2, 2], padding: [0, 0] }, &[]),
            layer("flat", Op::Flatten, &[]),
            layer("fc1", Op::Linear { units: 6, bias: true }, &[]),
            layer("r3", Op::Relu, &[]),
            layer("fc2", Op::Linear { units: 3, bias: true }, &[]),
        ],
    }
}

/// A stem, then a bottleneck (1x1, 3x3 stride 2, 1x1) added to a 1x1 stride-2 projection, an
/// identity block on the sum, global average pooling and a linear classifier.
fn residual() -> Architecture {
    Architecture {
        input: InputShape { channels: 1, height: 8, width: 8 },
        layers: vec![
            layer("stem", conv(4, 3, 1, 1, false), &[]),
            layer("stem_bn", norm(), &[]),
            layer("stem_relu", Op::Relu, &[]),
            layer("b.reduce", conv(3, 1, 1, 0, false), &[]),
            layer("b.reduce_bn", norm(), &[]),
            layer("b.reduce_relu", Op::Relu, &[]),
            layer("b.conv", conv(3, 3, 2, 1, false), &[]),
            layer("b.conv_bn", norm(), &[]),
            layer("b.conv_relu", Op::Relu, &[]),
            layer("b.expand", conv(6, 1, 1, 0, false), &[]),
            layer("b.expand_bn", norm(), &[]),
            layer("b.projection", conv(6, 1, 2, 0, false), &["stem_relu"]),
            layer("b.projection_bn", norm(), &[]),
            layer("b.add", Op::Add, &["b.expand_bn", "b.projection_bn"]),
            layer("b.relu", Op::Relu, &[]),
            layer("i.conv", conv(6, 3, 1, 1, false), &[]),
            layer("i.conv_bn", norm(), &[]),
            layer("i.add", Op::Add, &["i.conv_bn", "b.relu"]),
            layer("i.relu", Op::Relu, &[]),
            layer("pool", Op::GlobalAvgPool, &[]),
            layer("fc", Op::Linear { units: 3, bias: true }, &[]),
        ],
    }
}

/// BatchNorm's scale, shift and statistics drawn away from the identity, so that masking and
/// folding go through them.
struct NormStatistics;

impl ParamEditor for NormStatistics {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (low, high) = match path.rsplit('.').next() {
            Some("gamma") => (0.5, 2.0),
            Some("beta" | "running_mean") => (-0.5, 0.5),
            Some("running_var") => (0.5, 3.0),
            _ => return param,
        };
        edit_param(param, |t| t.random_like(burn::tensor::Distribution::Uniform(low, high)))
    }
}

fn build(architecture: &Architecture) -> Network {
    seeded(&device(), 5, || {
        let net = architecture.init(&device()).unwrap();
        coppice_models::edit_params(net, &mut NormStatistics)
    })
}

/// Zeroes units `k` of every producer slice of a group.
struct Mask<'a> {
    slices: &'a [coppice_models::TensorSlice],
    units: &'a [usize],
}

impl ParamEditor for Mask<'_> {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(slice) = self.slices.iter().find(|s| s.path == path) else { return param };
        edit_param(param, |t| {
            let dims = t.dims();
            let mut mask = vec![1.0f32; dims[slice.dim]];
            for &k in self.units {
                mask[k * slice.block..(k + 1) * slice.block].fill(0.0);
            }
            let mut shape = [1; D];
            shape[slice.dim] = dims[slice.dim];
            let device = t.device();
            t * Tensor::<1>::from_data(TensorData::new(mask, [dims[slice.dim]]), &device).reshape(shape)
        })
    }
}

fn images(batch: usize, architecture: &Architecture) -> Tensor<4> {
    let InputShape { channels, height, width } = architecture.input;
    let distribution = burn::tensor::Distribution::Normal(0.0, 1.0);
    seeded(&device(), 9, || Tensor::random([batch, channels, height, width], distribution, &device()))
}

/// Cuts `removed` from group `name` and checks the cut network against the masked one.
fn assert_cut_matches_masked(architecture: &Architecture, name: &str, removed: &[usize]) {
    let net = build(architecture);
    let group = net.unit_groups().into_iter().find(|g| g.layer == name).unwrap_or_else(|| panic!("no group {name}"));
    let masked = coppice_models::edit_params(net, &mut Mask { slices: &group.producer, units: removed });
    let input = images(4, architecture);
    let expected = masked.forward(input.clone());
    let keep: Vec<bool> = (0..group.units).map(|k| !removed.contains(&k)).collect();
    let cut = cut_units(masked.clone(), &[UnitCut { keep, group: group.clone() }]).unwrap();
    let left = cut.unit_groups().into_iter().find(|g| g.layer == name).map_or(0, |g| g.units);
    assert_eq!(left, group.units - removed.len(), "{name}: the units are gone");
    assert!(cut.num_params() < masked.num_params());
    let diff = (expected.clone() - cut.forward(input.clone())).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "{name}: logits moved by {diff}");
    // Masking really changed the network: the check above could fail.
    let moved = (expected - build(architecture).forward(input)).abs().max().into_scalar::<f32>();
    assert!(moved > 1e-4, "{name}: masking {removed:?} changed nothing");
}

#[test]
fn a_plain_chain_and_a_cut_across_flatten_match_the_masked_network() {
    let chain = chain();
    assert_cut_matches_masked(&chain, "c1", &[0, 3]);
    // c2's channels reach fc1 through a pool and the flatten: 2x2 pixels per channel.
    assert_cut_matches_masked(&chain, "c2", &[1, 2]);
    assert_cut_matches_masked(&chain, "fc1", &[0, 4, 5]);
}

#[test]
fn a_sum_of_a_bottleneck_and_its_projection_is_cut_from_every_writer_and_reader() {
    let residual = residual();
    let net = build(&residual);
    let groups: Vec<String> = net.unit_groups().into_iter().map(|g| g.layer).collect();
    // The sum's group is named by its first add, since the adds' names share no prefix.
    assert_eq!(groups, ["stem", "b.reduce", "b.conv", "b.add"]);
    let sum =
        net.unit_groups().into_iter().find(|g| g.producer_weights().count() == 3).expect("one group joins the adds");
    let writers: Vec<&str> = sum.producer_weights().map(|s| s.path.as_str()).collect();
    assert_eq!(writers, ["b.expand.weight", "b.projection.weight", "i.conv.weight"]);
    let readers: Vec<&str> = sum.consumers.iter().map(|c| c.layer.as_str()).collect();
    assert_eq!(readers, ["i.conv", "fc"]);
    assert_cut_matches_masked(&residual, &sum.layer, &[0, 2, 3]);
    // The stem feeds both branches of the bottleneck.
    assert_cut_matches_masked(&residual, "stem", &[1]);
    assert_cut_matches_masked(&residual, "b.conv", &[1, 2]);
}

#[test]
fn a_block_cut_to_one_unit_still_matches() {
    let residual = residual();
    let sum = build(&residual).unit_groups().into_iter().find(|g| g.producer_weights().count() == 3).unwrap();
    assert_cut_matches_masked(&residual, &sum.layer, &[0, 1, 2, 4, 5]);
    assert_cut_matches_masked(&residual, "b.reduce", &[0, 2]);
    assert_cut_matches_masked(&chain(), "c2", &[0, 1, 3]);
}
