use burn::prelude::*;
use coppice_models::*;

fn device() -> Device {
    Device::flex()
}

fn resnet20(channels: usize, side: usize) -> Network {
    let config = ResNetConfig::new().with_channels(channels).with_height(side).with_width(side);
    Architecture::Resnet(config.with_depth(20).unwrap()).init(&device())
}

#[test]
fn resnet20_gives_logits_for_cifar_and_mnist_sizes() {
    let cifar = resnet20(3, 32);
    assert_eq!(cifar.forward(Tensor::zeros([2, 3, 32, 32], &device())).dims(), [2, 10]);
    let mnist = resnet20(1, 28);
    assert_eq!(mnist.forward(Tensor::zeros([2, 1, 28, 28], &device())).dims(), [2, 10]);
    let Architecture::Resnet(config) = mnist.architecture() else { panic!("a resnet") };
    assert_eq!(config.depth(), 20);
    assert_eq!(config.stage_hw(), [[28, 28], [14, 14], [7, 7]]);
}

#[test]
fn resnet20_has_the_papers_layers_with_torchvision_names() {
    let net = resnet20(3, 32);
    let layers = net.prunable_layers();
    // Stem, 9 blocks of two convs, projections into stages 2 and 3, classifier.
    assert_eq!(layers.len(), 1 + 18 + 2 + 1);
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(&names[..4], ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]);
    assert!(names.contains(&"layer2.0.downsample.conv") && names.contains(&"layer3.0.downsample.conv"));
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
    assert_eq!((conv("layer2.1.conv1"), conv("layer3.0.downsample.conv")), (256, 64));
}

#[test]
fn every_block_has_an_inner_group_and_every_stage_a_residual_one() {
    let net = resnet20(1, 28);
    let groups = net.unit_groups();
    assert_eq!(groups.len(), 9 + 3);
    let g = &groups[3];
    assert_eq!((g.layer.as_str(), g.units), ("layer2.0.conv1", 32));
    assert_eq!(g.between, [UnitOp::BatchNorm { module: "layer2.0.bn1".into(), epsilon: 1e-5 }, UnitOp::Relu]);
    assert_eq!(g.consumers.len(), 1);
    assert_eq!((g.consumers[0].layer.as_str(), g.consumers[0].bias.as_deref()), ("layer2.0.conv2", None));
    assert!(!g.is_coupled());

    // Stage 2's channels: written by the projection and three conv2s (each with its BN), read
    // by the conv1s of blocks 1 and 2 (block 0 reads stage 1) and by stage 3's entry (its conv1
    // and its projection).
    let stage2 = &groups[10];
    assert_eq!((stage2.layer.as_str(), stage2.units), ("layer2", 32));
    assert!(stage2.is_coupled() && stage2.between.is_empty());
    let writers: Vec<&str> = stage2.producer_weights().map(|s| s.path.as_str()).collect();
    assert_eq!(
        writers,
        ["layer2.0.downsample.conv.weight", "layer2.0.conv2.weight", "layer2.1.conv2.weight", "layer2.2.conv2.weight"]
    );
    assert_eq!(stage2.producer.len(), 4 * 5, "each writer's weight and its BN's four tensors");
    let readers: Vec<&str> = stage2.consumers.iter().map(|c| c.layer.as_str()).collect();
    assert_eq!(readers, ["layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1", "layer3.0.downsample.conv"]);
    let stage1: Vec<&str> = groups[9].consumers.iter().map(|c| c.layer.as_str()).collect();
    assert_eq!(stage1[..4], ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1"]);
    // Stage 1 starts at the stem; stage 3 ends in the classifier, whose [in, out] weight loses rows.
    assert_eq!(groups[9].producer[0].path, "conv1.weight");
    let fc = groups[11].consumers.last().unwrap();
    assert_eq!((fc.layer.as_str(), fc.slice.dim), ("fc", 0));
}

#[test]
fn only_depths_of_six_n_plus_two_build() {
    assert!(ResNetConfig::new().with_depth(56).is_some_and(|c| c.inner[1].len() == 9));
    assert!(ResNetConfig::new().with_depth(21).is_none());
    assert!(ResNetConfig::new().with_depth(2).is_none());
}
