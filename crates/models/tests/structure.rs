use burn::prelude::*;
use coppice_models::*;

fn device() -> Device {
    Device::flex()
}

fn shapes(net: &Network) -> Vec<(String, Vec<usize>)> {
    float_params(net).into_iter().map(|p| (p.path, p.shape)).collect()
}

#[test]
fn lenet300_layers_paths_and_sizes() {
    let net = Architecture::Mlp(MlpConfig::new()).init(&device());
    let layers = net.prunable_layers();
    let names: Vec<_> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["fc1", "fc2", "fc3"]);
    assert_eq!(layers[0].weight_shape, [784, 300]);
    assert_eq!(layers[2].weight_shape, [100, 10]);
    // Every described path must exist with the described shape.
    let params = shapes(&net);
    for layer in &layers {
        let found = params.iter().find(|(p, _)| *p == layer.weight_path).expect("weight path exists");
        assert_eq!(found.1, layer.weight_shape);
    }
    assert_eq!(net.num_params(), 266_610);
    let costs = net.layer_costs();
    assert_eq!(costs.iter().map(|c| c.params).sum::<usize>(), 266_610);
    assert_eq!(costs.iter().map(|c| c.flops).sum::<usize>(), 784 * 300 + 300 * 100 + 100 * 10);
}

#[test]
fn lenet300_unit_groups_couple_columns_bias_and_next_rows() {
    let net = Architecture::Mlp(MlpConfig::new()).init(&device());
    let groups = net.unit_groups();
    assert_eq!(groups.len(), 2, "the output layer has no removable units");
    let g = &groups[0];
    assert_eq!((g.layer.as_str(), g.units, g.consumers[0].layer.as_str()), ("fc1", 300, "fc2"));
    assert_eq!(g.producer[0], TensorSlice { path: "fc.0.weight".into(), dim: 1, block: 1 });
    assert_eq!(g.producer[1], TensorSlice { path: "fc.0.bias".into(), dim: 0, block: 1 });
    assert_eq!(g.consumers[0].slice, TensorSlice { path: "fc.1.weight".into(), dim: 0, block: 1 });
    assert_eq!(groups[1].units, 100);
}

#[test]
fn lenet5_matches_caffe_sizes_and_flops() {
    let net = Architecture::Lenet5(LeNet5Config::new()).init(&device());
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
    let net = Architecture::Lenet5(LeNet5Config::new()).init(&device());
    let groups = net.unit_groups();
    let layers: Vec<_> = groups.iter().map(|g| (g.layer.as_str(), g.units)).collect();
    assert_eq!(layers, [("conv1", 20), ("conv2", 50), ("fc1", 500)]);
    assert_eq!(groups[0].producer[0], TensorSlice { path: "conv1.weight".into(), dim: 0, block: 1 });
    assert_eq!(groups[0].consumers[0].slice, TensorSlice { path: "conv2.weight".into(), dim: 1, block: 1 });
    assert_eq!(groups[1].consumers[0].slice, TensorSlice { path: "fc1.weight".into(), dim: 0, block: 16 });
    // The block really is channel k's pixels: 50 channels x 16 = fc1's 800 inputs.
    assert_eq!(groups[1].units * groups[1].consumers[0].slice.block, 800);
}

#[test]
fn architecture_is_read_back_from_tensors() {
    let arch = Architecture::Mlp(MlpConfig::new().with_hidden(vec![150, 50]));
    let net = arch.init(&device());
    assert_eq!(net.architecture(), arch);
    let arch = Architecture::Lenet5(LeNet5Config::new().with_conv1(10).with_height(32).with_width(32));
    let net = arch.init(&device());
    assert_eq!(net.architecture(), arch);
    let json = serde_json_roundtrip(&arch);
    assert_eq!(json, arch);
}

fn serde_json_roundtrip(arch: &Architecture) -> Architecture {
    let text = serde_json::to_string(arch).unwrap();
    serde_json::from_str(&text).expect("architecture round-trips through JSON")
}

#[test]
fn count_nonzero_sees_zeroed_weights() {
    let net = Architecture::Mlp(MlpConfig::new().with_inputs(4).with_hidden(vec![3]).with_classes(2)).init(&device());
    let total = net.num_params();
    let Network::Mlp(mut mlp) = net else { unreachable!() };
    mlp.fc[0].weight = mlp.fc[0].weight.clone().map(|w| w.zeros_like());
    let net = Network::Mlp(mlp);
    assert_eq!(count_nonzero(&net), total - 12);
}

/// The size read from a configuration is the size of the network it builds.
#[test]
fn sizes_from_configs_count_the_parameters_built() {
    let device = Device::flex();
    let architectures = [
        Architecture::Mlp(MlpConfig::new()),
        Architecture::Lenet5(LeNet5Config::new()),
        Architecture::Vgg(VggConfig { height: 28, width: 28, channels: 1, ..VggConfig::new() }),
    ];
    for architecture in architectures {
        let net = architecture.init(&device);
        let params: usize = float_params(&net).iter().map(|p| p.shape.iter().product::<usize>()).sum();
        assert_eq!(architecture.size().parameters, params as u128, "{architecture:?}");
        assert!(architecture.size().activations_per_sample > architecture.input().pixels() as u128);
    }
}
