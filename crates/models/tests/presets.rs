//! The presets, as graphs: their layers, sizes, paths and derived unit groups are those of the
//! papers' networks.

use burn::prelude::*;
use coppice_models::*;

fn device() -> Device {
    Device::flex()
}

fn image(channels: usize, side: usize) -> InputShape {
    InputShape { channels, height: side, width: side }
}

fn build(architecture: Architecture) -> Network {
    architecture.init(&device()).expect("a preset builds")
}

fn shapes(net: &Network) -> Vec<(String, Vec<usize>)> {
    float_params(net).into_iter().map(|p| (p.path, p.shape)).collect()
}

fn lenet300() -> Network {
    build(presets::mlp(image(1, 28), &[300, 100], 10))
}

fn lenet5() -> Network {
    build(presets::lenet5(image(1, 28), [20, 50, 500], 10))
}

/// 1x8x8 inputs, conv 2 | pool | conv 3 | pool (2x2 left) | fc 5 | fc 4: small enough to count
/// by hand.
fn tiny_vgg() -> Architecture {
    presets::vgg(image(1, 8), &[vec![2], vec![3]], 5, 4)
}

fn resnet20(channels: usize, side: usize) -> Network {
    build(presets::resnet(image(channels, side), 20, &presets::RESNET_WIDTHS, 10).unwrap())
}

/// Every described path exists with its shape, and every slice cuts a dimension of the group's
/// size: what surgery relies on.
fn assert_described_paths_exist(net: &Network) {
    let params = shapes(net);
    let shape_of = |path: &str| {
        params.iter().find(|(p, _)| p == path).map(|(_, s)| s.clone()).unwrap_or_else(|| panic!("no tensor {path}"))
    };
    for layer in net.prunable_layers() {
        assert_eq!(shape_of(&layer.weight_path), layer.weight_shape, "{}", layer.weight_path);
        if let Some(bias) = &layer.bias_path {
            assert_eq!(shape_of(bias), [layer.bias_len]);
        }
    }
    for group in net.unit_groups() {
        for slice in group.slices() {
            assert_eq!(shape_of(&slice.path)[slice.dim], group.units * slice.block, "{}", slice.path);
        }
    }
}

#[test]
fn lenet300_layers_paths_and_sizes() {
    let net = lenet300();
    let layers = net.prunable_layers();
    let names: Vec<_> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["fc1", "fc2", "fc3"]);
    assert_eq!(layers[0].weight_shape, [784, 300]);
    assert_eq!(layers[2].weight_shape, [100, 10]);
    assert_described_paths_exist(&net);
    assert_eq!(net.num_params(), 266_610);
    let costs = net.layer_costs();
    assert_eq!(costs.iter().map(|c| c.params).sum::<usize>(), 266_610);
    assert_eq!(costs.iter().map(|c| c.flops).sum::<usize>(), 784 * 300 + 300 * 100 + 100 * 10);
}

#[test]
fn lenet300_unit_groups_couple_columns_bias_and_next_rows() {
    let groups = lenet300().unit_groups();
    assert_eq!(groups.len(), 2, "the output layer has no removable units");
    let g = &groups[0];
    assert_eq!((g.layer.as_str(), g.units, g.consumers[0].layer.as_str()), ("fc1", 300, "fc2"));
    assert_eq!(g.producer[0], TensorSlice { path: "fc1.weight".into(), dim: 1, block: 1 });
    assert_eq!(g.producer[1], TensorSlice { path: "fc1.bias".into(), dim: 0, block: 1 });
    assert_eq!(g.consumers[0].slice, TensorSlice { path: "fc2.weight".into(), dim: 0, block: 1 });
    assert_eq!((g.between.as_slice(), g.folds), ([UnitOp::Relu].as_slice(), true));
    assert_eq!(groups[1].units, 100);
}

#[test]
fn lenet5_matches_caffe_sizes_and_flops() {
    let net = lenet5();
    let costs = net.layer_costs();
    let params: Vec<_> = costs.iter().map(|c| c.params).collect();
    assert_eq!(params, [520, 25_050, 400_500, 5_010]);
    assert_eq!(net.num_params(), 431_080);
    // conv1: 24x24 outputs, conv2: 8x8 outputs.
    assert_eq!(costs[0].flops, 500 * 576);
    assert_eq!(costs[1].flops, 25_000 * 64);
    let logits = net.forward(Tensor::zeros([3, 1, 28, 28], &device()));
    assert_eq!(logits.dims(), [3, 10]);
}

#[test]
fn lenet5_groups_cross_the_flatten_in_blocks_of_pixels() {
    let net = lenet5();
    let groups = net.unit_groups();
    let layers: Vec<_> = groups.iter().map(|g| (g.layer.as_str(), g.units)).collect();
    assert_eq!(layers, [("conv1", 20), ("conv2", 50), ("fc1", 500)]);
    assert_eq!(groups[0].producer[0], TensorSlice { path: "conv1.weight".into(), dim: 0, block: 1 });
    assert_eq!(groups[0].consumers[0].slice, TensorSlice { path: "conv2.weight".into(), dim: 1, block: 1 });
    assert_eq!(groups[1].consumers[0].slice, TensorSlice { path: "fc1.weight".into(), dim: 0, block: 16 });
    // The block really is channel k's pixels: 50 channels x 16 = fc1's 800 inputs.
    assert_eq!(groups[1].units * groups[1].consumers[0].slice.block, 800);
    assert_described_paths_exist(&net);
}

#[test]
fn architectures_are_read_back_from_tensors_and_round_trip_through_json() {
    let architectures = [
        presets::mlp(image(1, 28), &[150, 50], 10),
        presets::lenet5(image(1, 32), [10, 50, 500], 10),
        presets::vgg(image(1, 28), &[vec![3, 5], vec![7], vec![2, 2, 9]], 11, 3),
        presets::resnet(image(3, 32), 20, &presets::RESNET_WIDTHS, 10).unwrap(),
    ];
    for architecture in architectures {
        let net = build(architecture.clone());
        assert_eq!(net.architecture(), architecture);
        let text = serde_json::to_string(&architecture).unwrap();
        assert_eq!(serde_json::from_str::<Architecture>(&text).unwrap(), architecture);
    }
}

#[test]
fn sizes_from_graphs_count_the_parameters_built() {
    let architectures = [
        presets::mlp(image(1, 28), &[300, 100], 10),
        presets::lenet5(image(1, 28), [20, 50, 500], 10),
        presets::vgg(image(1, 28), &[vec![32, 32], vec![64, 64], vec![128, 128]], 256, 10),
        presets::resnet(image(1, 28), 20, &presets::RESNET_WIDTHS, 10).unwrap(),
    ];
    for architecture in architectures {
        let net = build(architecture.clone());
        let params: usize = float_params(&net).iter().map(|p| p.shape.iter().product::<usize>()).sum();
        let size = architecture.resolve().unwrap().size();
        assert_eq!(size.parameters, params as u128, "{architecture:?}");
        assert!(size.activations_per_sample > architecture.input().pixels() as u128);
    }
}

#[test]
fn vgg_counts_match_a_hand_count_and_layers_are_numbered_over_stages() {
    let net = build(tiny_vgg());
    // conv1 2*1*9+2, conv2 3*2*9+3, fc1 (3*2*2)*5+5, fc2 5*4+4.
    let costs = net.layer_costs();
    assert_eq!(costs.iter().map(|c| c.params).collect::<Vec<_>>(), [20, 57, 65, 24]);
    // burn counts BatchNorm's running statistics too: 4 tensors per channel, 5 channels.
    assert_eq!(net.num_params(), 166 + 4 * 5);
    // conv1 works on 8x8, conv2 on 4x4.
    assert_eq!(costs.iter().map(|c| c.flops).collect::<Vec<_>>(), [18 * 64, 54 * 16, 60, 20]);
    let names: Vec<String> = net.prunable_layers().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["conv1", "conv2", "fc1", "fc2"]);
    assert_described_paths_exist(&net);
}

#[test]
fn vgg_groups_carry_batchnorm_slices_and_cross_the_flatten_in_blocks_of_pixels() {
    let groups = build(tiny_vgg()).unit_groups();
    let pairs: Vec<_> = groups
        .iter()
        .map(|g| (g.layer.as_str(), g.units, g.consumers[0].layer.as_str(), g.consumers[0].kind))
        .collect();
    assert_eq!(
        pairs,
        [
            ("conv1", 2, "conv2", LayerKind::Conv2d),
            ("conv2", 3, "fc1", LayerKind::Linear),
            ("fc1", 5, "fc2", LayerKind::Linear)
        ]
    );
    let slice = |path: &str, dim: usize| TensorSlice { path: path.into(), dim, block: 1 };
    let g = &groups[0];
    let bn = ["gamma", "beta", "running_mean", "running_var"].map(|t| slice(&format!("bn1.{t}"), 0));
    assert_eq!(g.producer, [vec![slice("conv1.weight", 0), slice("conv1.bias", 0)], bn.to_vec()].concat());
    assert_eq!(g.between, [UnitOp::BatchNorm { module: "bn1".into(), epsilon: 1e-5 }, UnitOp::Relu]);
    assert_eq!(g.consumers[0].slice, slice("conv2.weight", 1));
    assert_eq!(g.consumers[0].bias.as_deref(), Some("conv2.bias"));
    // 8x8 pooled twice is 2x2: channel k owns fc1 rows 4k .. 4k+4.
    assert_eq!(groups[1].consumers[0].slice, TensorSlice { path: "fc1.weight".into(), dim: 0, block: 4 });
    assert_eq!(groups[2].between, [UnitOp::Relu]);
}

#[test]
fn taps_see_each_group_as_its_consumer_does_and_feed_back_what_they_return() {
    // The later stages have no conv: conv2's output reaches fc1 through three pools.
    let net = build(presets::vgg(image(1, 16), &[vec![2, 3], vec![], vec![]], 5, 4));
    let images = Tensor::<4>::random([2, 1, 16, 16], burn::tensor::Distribution::Default, &device());
    let mut seen = Vec::new();
    let tapped = net.forward_tapped(images.clone(), &mut |g, a| {
        seen.push((
            g,
            match &a {
                Activation::Dense(x) => x.dims().to_vec(),
                Activation::Spatial(x) => x.dims().to_vec(),
            },
        ));
        a
    });
    assert_eq!(seen, [(0, vec![2, 2, 16, 16]), (1, vec![2, 3, 2, 2]), (2, vec![2, 5])]);
    assert_eq!(net.unit_groups().len(), seen.len());
    let plain = net.forward(images.clone());
    assert_eq!(tapped.into_data(), plain.into_data());
    // Silencing fc1 leaves fc2's bias alone in the logits.
    let silenced = net.forward_tapped(images, &mut |g, a| match a {
        Activation::Dense(x) if g == 2 => Activation::Dense(x.zeros_like()),
        a => a,
    });
    let bias = float_params(&net).into_iter().find(|p| p.path == "fc2.bias").unwrap().values;
    assert_eq!(silenced.into_data(), bias.unsqueeze::<2>().repeat_dim(0, 2).into_data());
}

#[test]
fn batchnorm_uses_batch_statistics_only_on_autodiff_devices() {
    let running_mean = |net: &Network| {
        float_params(net).into_iter().find(|p| p.path == "bn1.running_mean").unwrap().values.into_data()
    };
    let images = |device: &Device| Tensor::<4>::ones([2, 1, 8, 8], device);
    let net = build(tiny_vgg());
    let initial = running_mean(&net);
    let _ = net.forward(images(&device()));
    assert_eq!(running_mean(&net), initial, "a plain device runs inference mode");

    let device = device().autodiff();
    let net = tiny_vgg().init(&device).unwrap();
    let _ = net.forward(images(&device));
    // burn keeps the newest update per thread and folds it in only at the next update or at
    // valid()/train(); visitors, and so float_params and surgery, read the folded value. Code
    // that reads or cuts running statistics of a network in training must sync it first.
    assert_eq!(running_mean(&net), initial, "the update is still pending");
    assert_ne!(running_mean(&net.valid()), initial, "an autodiff device trains the running statistics");
}

#[test]
fn deep_clones_share_no_running_statistics() {
    let net = build(presets::vgg(image(1, 8), &[vec![2]], 3, 2));
    let copy = net.deep_clone();
    let values = |n: &Network| -> Vec<Vec<f32>> {
        float_params(n).into_iter().map(|p| p.values.into_data().try_to_vec::<f32>().unwrap()).collect()
    };
    assert_eq!(values(&net), values(&copy));
    // Mapping the copy's running variance must not reach the original.
    struct Double;
    impl ParamEditor for Double {
        fn edit<const D: usize>(
            &mut self,
            path: &str,
            p: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            if path.ends_with("running_var") { edit_param(p, |t| t.mul_scalar(2.0)) } else { p }
        }
    }
    let doubled = edit_params(copy, &mut Double);
    assert_ne!(values(&net), values(&doubled));
}

#[test]
fn resnet20_gives_logits_for_cifar_and_mnist_sizes() {
    let cifar = resnet20(3, 32);
    assert_eq!(cifar.forward(Tensor::zeros([2, 3, 32, 32], &device())).dims(), [2, 10]);
    let mnist = resnet20(1, 28);
    assert_eq!(mnist.forward(Tensor::zeros([2, 1, 28, 28], &device())).dims(), [2, 10]);
    assert!(presets::resnet(image(1, 28), 56, &presets::RESNET_WIDTHS, 10).is_some_and(|a| a.layers.len() > 56 * 3));
    assert!(presets::resnet(image(1, 28), 21, &presets::RESNET_WIDTHS, 10).is_none());
    assert!(presets::resnet(image(1, 28), 2, &presets::RESNET_WIDTHS, 10).is_none());
}

#[test]
fn resnet20_has_the_papers_layers_with_torchvision_names() {
    let net = resnet20(3, 32);
    let layers = net.prunable_layers();
    // Stem, 9 blocks of two convs, projections into stages 2 and 3, classifier.
    assert_eq!(layers.len(), 1 + 18 + 2 + 1);
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(&names[..4], ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]);
    assert!(names.contains(&"layer2.0.downsample.0") && names.contains(&"layer3.0.downsample.0"));
    assert_eq!(names.last(), Some(&"fc"));
    let paths: Vec<String> = float_params(&net).into_iter().map(|p| p.path).collect();
    assert!(paths.contains(&"layer3.2.bn2.running_var".to_string()), "{paths:?}");
    // 3x3 convs: stem 3*16, stage weights; 1x1 projections; fc 64*10 + 10 (convs have no bias).
    let weights: usize = layers.iter().map(|l| l.weight_count()).sum();
    let by_hand = 3 * 16 * 9
        + 6 * 16 * 16 * 9
        + (16 * 32 + 5 * 32 * 32) * 9
        + (32 * 64 + 5 * 64 * 64) * 9
        + 16 * 32
        + 32 * 64
        + 64 * 10;
    assert_eq!(weights, by_hand);
    // A stage-2 conv works on 16x16 pixels, a stage-3 one on 8x8.
    let conv = |name: &str| layers.iter().find(|l| l.name == name).unwrap().uses_per_weight;
    assert_eq!((conv("layer2.1.conv1"), conv("layer3.0.downsample.0")), (256, 64));
    assert_described_paths_exist(&net);
}

#[test]
fn every_block_has_an_inner_group_and_every_stage_a_residual_one() {
    let net = resnet20(1, 28);
    let groups = net.unit_groups();
    assert_eq!(groups.len(), 9 + 3);
    let g = groups.iter().find(|g| g.layer == "layer2.0.conv1").unwrap();
    assert_eq!(g.units, 32);
    assert_eq!(g.between, [UnitOp::BatchNorm { module: "layer2.0.bn1".into(), epsilon: 1e-5 }, UnitOp::Relu]);
    assert_eq!(g.consumers.len(), 1);
    assert_eq!((g.consumers[0].layer.as_str(), g.consumers[0].bias.as_deref()), ("layer2.0.conv2", None));
    assert!(!g.is_coupled() && g.folds);

    // Stage 2's channels: written by the projection and three conv2s (each with its BN), read
    // by the conv1s of blocks 1 and 2 (block 0 reads stage 1) and by stage 3's entry (its conv1
    // and its projection).
    let stage2 = groups.iter().find(|g| g.layer == "layer2").unwrap();
    assert_eq!(stage2.units, 32);
    assert!(stage2.is_coupled() && !stage2.folds);
    let writers: Vec<&str> = stage2.producer_weights().map(|s| s.path.as_str()).collect();
    assert_eq!(
        writers,
        ["layer2.0.conv2.weight", "layer2.0.downsample.0.weight", "layer2.1.conv2.weight", "layer2.2.conv2.weight"]
    );
    assert_eq!(stage2.producer.len(), 4 * 5, "each writer's weight and its BN's four tensors");
    let readers: Vec<&str> = stage2.consumers.iter().map(|c| c.layer.as_str()).collect();
    assert_eq!(readers, ["layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1", "layer3.0.downsample.0"]);
    let stage1 = groups.iter().find(|g| g.layer == "layer1").unwrap();
    let stage1_readers: Vec<&str> = stage1.consumers.iter().map(|c| c.layer.as_str()).collect();
    assert_eq!(
        stage1_readers,
        ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1", "layer2.0.downsample.0"]
    );
    // Stage 1 starts at the stem; stage 3 ends in the classifier, whose [in, out] weight loses rows.
    assert_eq!(stage1.producer[0].path, "conv1.weight");
    let fc = groups.iter().find(|g| g.layer == "layer3").unwrap().consumers.last().unwrap().clone();
    assert_eq!((fc.layer.as_str(), fc.slice.dim), ("fc", 0));
}
