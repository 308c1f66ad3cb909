use burn::prelude::*;
use coppice_models::*;

fn device() -> Device {
    Device::flex()
}

/// 1x8x8 inputs, conv 2 | pool | conv 3 | pool (2x2 left) | fc 5 | fc 4: small enough to count
/// by hand.
fn tiny() -> VggConfig {
    VggConfig::new()
        .with_channels(1)
        .with_height(8)
        .with_width(8)
        .with_stages(vec![vec![2], vec![3]])
        .with_fc(5)
        .with_classes(4)
}

fn build(config: &VggConfig) -> Network {
    Architecture::Vgg(config.clone()).init(&device())
}

fn shapes(net: &Network) -> Vec<(String, Vec<usize>)> {
    float_params(net).into_iter().map(|p| (p.path, p.shape)).collect()
}

#[test]
fn forward_gives_logits_for_cifar_and_mnist_sizes() {
    let cifar = VggConfig::new().with_stages(vec![vec![4, 4], vec![8]]).with_fc(16);
    let logits = build(&cifar).forward(Tensor::zeros([2, 3, 32, 32], &device()));
    assert_eq!(logits.dims(), [2, 10]);
    // 28 -> 14 -> 7 -> 3: the odd size is floored, as the flatten size assumes.
    let mnist = VggConfig::new().with_channels(1).with_height(28).with_width(28).with_stages(vec![
        vec![2],
        vec![4, 4],
        vec![4],
    ]);
    assert_eq!(mnist.feature_hw().unwrap().1, [3, 3]);
    let net = build(&mnist);
    assert_eq!(net.prunable_layers()[4].weight_shape, [4 * 9, 256]);
    assert_eq!(net.forward(Tensor::zeros([2, 1, 28, 28], &device())).dims(), [2, 10]);
}

#[test]
fn feature_hw_refuses_inputs_that_pool_to_nothing() {
    let config = VggConfig::new().with_height(28).with_width(28);
    let four = config.clone().with_stages(vec![vec![2]; 4]);
    assert_eq!(four.feature_hw().unwrap().1, [1, 1]);
    assert_eq!(config.clone().with_stages(vec![vec![2]; 5]).feature_hw(), None);
    assert_eq!(config.with_width(3).with_stages(vec![vec![2]; 2]).feature_hw(), None);
}

#[test]
fn param_count_matches_a_hand_count() {
    let net = build(&tiny());
    // conv1 2*1*9+2, conv2 3*2*9+3, fc1 (3*2*2)*5+5, fc2 5*4+4.
    let costs = net.layer_costs();
    assert_eq!(costs.iter().map(|c| c.params).collect::<Vec<_>>(), [20, 57, 65, 24]);
    // burn counts BatchNorm's running statistics too: 4 tensors per channel, 5 channels.
    assert_eq!(net.num_params(), 166 + 4 * 5);
    // conv1 works on 8x8, conv2 on 4x4.
    assert_eq!(costs.iter().map(|c| c.flops).collect::<Vec<_>>(), [18 * 64, 54 * 16, 60, 20]);
}

#[test]
fn layers_are_numbered_over_all_stages() {
    let net = build(&VggConfig::new().with_stages(vec![vec![4, 5], vec![6]]).with_fc(7));
    let layers = net.prunable_layers();
    let described: Vec<_> =
        layers.iter().map(|l| (l.name.as_str(), l.kind, l.weight_path.as_str(), l.weight_shape.clone())).collect();
    assert_eq!(
        described,
        [
            ("conv1", LayerKind::Conv2d, "conv.0.weight", vec![4, 3, 3, 3]),
            ("conv2", LayerKind::Conv2d, "conv.1.weight", vec![5, 4, 3, 3]),
            ("conv3", LayerKind::Conv2d, "conv.2.weight", vec![6, 5, 3, 3]),
            ("fc1", LayerKind::Linear, "fc1.weight", vec![6 * 8 * 8, 7]),
            ("fc2", LayerKind::Linear, "fc2.weight", vec![7, 10]),
        ]
    );
    assert_eq!(layers[2].bias_path.as_deref(), Some("conv.2.bias"));
    let uses: Vec<_> = layers.iter().map(|l| l.uses_per_weight).collect();
    assert_eq!(uses, [1024, 1024, 256, 1, 1]);
}

#[test]
fn unit_groups_carry_batchnorm_slices_and_cross_the_flatten_in_blocks_of_pixels() {
    let net = build(&tiny());
    let groups = net.unit_groups();
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
    assert_eq!(
        g.producer,
        [
            slice("conv.0.weight", 0),
            slice("conv.0.bias", 0),
            slice("bn.0.gamma", 0),
            slice("bn.0.beta", 0),
            slice("bn.0.running_mean", 0),
            slice("bn.0.running_var", 0),
        ]
    );
    assert_eq!(g.between, [UnitOp::BatchNorm { module: "bn.0".into(), epsilon: 1e-5 }, UnitOp::Relu]);
    assert_eq!(g.consumers[0].slice, slice("conv.1.weight", 1));
    assert_eq!(g.consumers[0].bias.as_deref(), Some("conv.1.bias"));

    let g = &groups[1];
    assert_eq!(g.between[0], UnitOp::BatchNorm { module: "bn.1".into(), epsilon: 1e-5 });
    // 8x8 pooled twice is 2x2: channel k owns fc1 rows 4k .. 4k+4.
    assert_eq!(g.consumers[0].slice, TensorSlice { path: "fc1.weight".into(), dim: 0, block: 4 });
    assert_eq!(g.units * g.consumers[0].slice.block, 12);

    assert_eq!(groups[2].between, [UnitOp::Relu]);
    assert_eq!(groups[2].consumers[0].slice, slice("fc2.weight", 0));
}

#[test]
fn every_described_path_exists_with_its_shape() {
    let net = build(&tiny());
    let params = shapes(&net);
    let shape_of = |path: &str| {
        params.iter().find(|(p, _)| p == path).map(|(_, s)| s.clone()).unwrap_or_else(|| panic!("no tensor {path}"))
    };
    for layer in net.prunable_layers() {
        assert_eq!(shape_of(&layer.weight_path), layer.weight_shape, "{}", layer.weight_path);
        assert_eq!(shape_of(layer.bias_path.as_deref().unwrap()), [layer.bias_len]);
    }
    for group in net.unit_groups() {
        for slice in group.slices() {
            assert_eq!(shape_of(&slice.path)[slice.dim], group.units * slice.block, "{}", slice.path);
        }
    }
    // The running statistics are visited as float tensors, so surgery can read and cut them.
    let bn: Vec<_> = params.iter().filter(|(p, _)| p.starts_with("bn.1.")).cloned().collect();
    let expected: Vec<_> =
        ["gamma", "beta", "running_mean", "running_var"].iter().map(|t| (format!("bn.1.{t}"), vec![3])).collect();
    assert_eq!(bn, expected);
}

#[test]
fn architecture_is_read_back_from_tensors() {
    for config in [
        VggConfig::new(),
        tiny(),
        VggConfig::new()
            .with_channels(1)
            .with_height(28)
            .with_width(20)
            .with_stages(vec![vec![3, 5], vec![7], vec![2, 2, 9]])
            .with_fc(11)
            .with_classes(3),
    ] {
        let arch = Architecture::Vgg(config);
        let net = arch.init(&device());
        assert_eq!(net.architecture(), arch);
        let text = serde_json::to_string(&arch).unwrap();
        assert!(text.contains(r#""kind":"vgg""#), "{text}");
        assert_eq!(serde_json::from_str::<Architecture>(&text).unwrap(), arch);
    }
}

#[test]
fn taps_see_each_group_as_its_consumer_does_and_feed_back_what_they_return() {
    // The later stages have no conv: conv2's output reaches fc1 through three pools.
    let config = tiny().with_stages(vec![vec![2, 3], vec![], vec![]]).with_height(16).with_width(16);
    let net = build(&config);
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
    let Network::Vgg(vgg) = &net else { unreachable!() };
    let bias = vgg.fc2.bias.as_ref().unwrap().val().unsqueeze::<2>().repeat_dim(0, 2);
    assert_eq!(silenced.into_data(), bias.into_data());
}

#[test]
fn batchnorm_uses_batch_statistics_only_on_autodiff_devices() {
    let running_mean = |net: &Network| {
        float_params(net).into_iter().find(|p| p.path == "bn.0.running_mean").unwrap().values.into_data()
    };
    let images = |device: &Device| Tensor::<4>::ones([2, 1, 8, 8], device);
    let net = build(&tiny());
    let initial = running_mean(&net);
    let _ = net.forward(images(&device()));
    assert_eq!(running_mean(&net), initial, "a plain device runs inference mode");

    let device = device().autodiff();
    let net = Architecture::Vgg(tiny()).init(&device);
    let _ = net.forward(images(&device));
    // burn keeps the newest update per thread and folds it in only at the next update or at
    // valid()/train(); visitors, and so float_params and surgery, read the folded value. Code
    // that reads or cuts running statistics of a network in training must sync it first.
    assert_eq!(running_mean(&net), initial, "the update is still pending");
    assert_ne!(running_mean(&net.valid()), initial, "an autodiff device trains the running statistics");
}

#[test]
fn deep_clones_share_no_running_statistics_and_draw_no_random_numbers() {
    use coppice_models::{Architecture, VggConfig, float_params};
    let device = burn::prelude::Device::flex();
    let config = VggConfig { channels: 1, height: 8, width: 8, stages: vec![vec![2]], fc: 3, classes: 2 };
    let net = Architecture::Vgg(config).init(&device);
    let copy = net.deep_clone();
    let values = |n: &coppice_models::Network| -> Vec<Vec<f32>> {
        float_params(n).into_iter().map(|p| p.values.into_data().try_to_vec::<f32>().unwrap()).collect()
    };
    assert_eq!(values(&net), values(&copy));
    // Mapping the copy's running mean must not reach the original.
    struct Double;
    impl coppice_models::ParamEditor for Double {
        fn edit<const D: usize>(
            &mut self,
            path: &str,
            p: burn::module::Param<burn::prelude::Tensor<D>>,
        ) -> burn::module::Param<burn::prelude::Tensor<D>> {
            if path.ends_with("running_var") { coppice_models::edit_param(p, |t| t.mul_scalar(2.0)) } else { p }
        }
    }
    let doubled = coppice_models::edit_params(copy, &mut Double);
    assert_ne!(values(&net), values(&doubled));
}
