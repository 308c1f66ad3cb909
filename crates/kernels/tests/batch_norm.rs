//! A conv with the BatchNorm after it, a residual and ReLU, in one pass for inference: against
//! burn's own layers, on Flex (the folded kernel), on NdArray (burn's operations) and under
//! autodiff (burn's layers, batch statistics).

use burn::module::RunningState;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use coppice_kernels::conv2d_batch_norm;

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// A norm whose running statistics and affine parameters are all far from their defaults, so
/// that a term left out of the folding shows.
fn trained_norm(channels: usize, device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(channels).init(device);
    norm.running_mean = RunningState::new(random([channels], device));
    norm.running_var = RunningState::new(random([channels], device).abs() + 0.1);
    norm.gamma = norm.gamma.map(|_| random([channels], device));
    norm.beta = norm.beta.map(|_| random([channels], device));
    norm
}

fn layers(conv: &Conv2d, norm: &BatchNorm, x: Tensor<4>, residual: Option<Tensor<4>>, with_relu: bool) -> Tensor<4> {
    let output = norm.forward(conv.forward(x));
    let output = residual.map_or(output.clone(), |r| output + r);
    if with_relu { relu(output) } else { output }
}

fn assert_close(what: &str, ours: Tensor<4>, burns: Tensor<4>, tolerance: f32) {
    assert_eq!(ours.dims(), burns.dims(), "{what}: shape");
    let scale = burns.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = (ours - burns).abs().max().into_scalar::<f32>();
    assert!(diff <= tolerance * scale, "{what}: differs from burn's layers by {diff} (largest value {scale})");
}

fn check(device: &Device, channels: [usize; 2], input: [usize; 4], bias: bool, stride: usize, tolerance: f32) {
    let conv = Conv2dConfig::new(channels, [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_stride([stride, stride])
        .with_bias(bias)
        .init(device);
    let norm = trained_norm(channels[1], device);
    let x = random(input, device);
    for with_relu in [false, true] {
        let plain = conv2d_batch_norm(x.clone(), &conv, &norm, None, with_relu);
        assert_close("without residual", plain.clone(), layers(&conv, &norm, x.clone(), None, with_relu), tolerance);
        let residual = random(plain.dims(), device);
        let ours = conv2d_batch_norm(x.clone(), &conv, &norm, Some(residual.clone()), with_relu);
        assert_close("with residual", ours, layers(&conv, &norm, x.clone(), Some(residual), with_relu), tolerance);
    }
}

#[test]
fn the_folded_pass_matches_burns_layers_on_flex() {
    let device = Device::flex();
    device.seed(3);
    // More filters than channels (im2col), fewer (taps), a bias (VGG's convs), one image, stride 2.
    check(&device, [3, 5], [2, 3, 7, 6], false, 1, 1e-5);
    check(&device, [6, 2], [2, 6, 7, 6], false, 1, 1e-5);
    check(&device, [4, 4], [3, 4, 5, 5], true, 1, 1e-5);
    check(&device, [6, 3], [1, 6, 9, 8], true, 1, 1e-5);
    check(&device, [4, 6], [2, 4, 9, 9], false, 2, 1e-5);
}

#[allow(deprecated)]
#[test]
fn other_backends_and_training_take_burns_own_operations() {
    let device = Device::ndarray();
    device.seed(3);
    check(&device, [4, 3], [2, 4, 6, 6], true, 1, 1e-6);
    let device = Device::flex().autodiff();
    device.seed(3);
    check(&device, [4, 3], [2, 4, 6, 6], true, 1, 2e-6);
}

#[test]
fn relu_keeps_a_nan_so_that_a_diverged_network_shows() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([2, 2], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&device);
    let norm = trained_norm(2, &device);
    let x = random([1, 2, 4, 4], &device).mul_scalar(f32::NAN);
    let output = conv2d_batch_norm(x, &conv, &norm, None, true);
    assert!(output.is_nan().all().into_scalar::<bool>(), "NaN in, NaN out");
}

/// Training mode: the batch's statistics, one kernel with the residual and ReLU, against burn's
/// layer followed by burn's add and ReLU: outputs, every gradient and the running statistics.
fn check_training<const D: usize>(device: &Device, shape: [usize; D], residual: bool, with_relu: bool) {
    let channels = shape[1];
    let norm = trained_norm(channels, device).set_require_grad(true);
    // A copy that shares no running statistics (burn's clones share them).
    let reference = BatchNormConfig::new(channels).init(device).load_record(norm.clone().into_record());
    let x = random(shape, device).mul_scalar(2.0).add_scalar(0.5).require_grad();
    let r = residual.then(|| random(shape, device).require_grad());
    let ours = coppice_kernels::batch_norm(x.clone(), &norm, r.clone(), with_relu);
    let burns = {
        let output = reference.forward(x.clone());
        let output = r.clone().map_or(output.clone(), |r| output + r);
        if with_relu { relu(output) } else { output }
    };
    let what = format!("{shape:?} residual {residual} relu {with_relu}");
    assert_close_any(&format!("{what}: output"), ours.clone(), burns.clone(), 2e-5);
    let weights = random(shape, device);
    let (g_ours, g_burns) = ((ours * weights.clone()).sum().backward(), (burns * weights).sum().backward());
    let grad = |t: &Tensor<D>, g| t.grad(g).expect("a gradient");
    assert_close_any(&format!("{what}: input gradient"), grad(&x, &g_ours), grad(&x, &g_burns), 2e-5);
    if let Some(r) = &r {
        assert_close_any(&format!("{what}: residual gradient"), grad(r, &g_ours), grad(r, &g_burns), 2e-5);
    }
    for (name, ours, burns) in [("gamma", &norm.gamma, &reference.gamma), ("beta", &norm.beta, &reference.beta)] {
        let (ours, burns) = (ours.val().grad(&g_ours).unwrap(), burns.val().grad(&g_burns).unwrap());
        assert_close_any(&format!("{what}: {name} gradient"), ours, burns, 2e-5);
    }
    let stats = |n: &BatchNorm| [n.running_mean.value_sync(), n.running_var.value_sync()];
    for (ours, burns) in stats(&norm).into_iter().zip(stats(&reference)) {
        assert_close_any(&format!("{what}: running statistics"), ours.inner(), burns.inner(), 2e-5);
    }
}

fn assert_close_any<const D: usize>(what: &str, ours: Tensor<D>, burns: Tensor<D>, tolerance: f32) {
    assert_eq!(ours.dims(), burns.dims(), "{what}: shape");
    let scale = burns.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = (ours - burns).abs().max().into_scalar::<f32>();
    assert!(diff <= tolerance * scale, "{what}: differs from burn's layers by {diff} (largest value {scale})");
}

/// Flex runs coppice's kernel; NdArray the default body, burn's own operations.
#[allow(deprecated)]
fn training_devices() -> [Device; 2] {
    [Device::flex().autodiff(), Device::ndarray().autodiff()]
}

#[test]
fn training_normalizes_with_batch_statistics_as_burns_layer_does() {
    for device in training_devices() {
        device.seed(11);
        for residual in [false, true] {
            for with_relu in [false, true] {
                check_training(&device, [3, 4, 5, 6], residual, with_relu);
                check_training(&device, [9, 5], residual, with_relu);
            }
        }
        // Two samples of one pixel per channel (with one, the variance is 0 and burn's rounding of
        // the mean is all the output shows), and a plane longer than the kernel's lanes.
        check_training(&device, [2, 3, 1, 1], false, true);
        check_training(&device, [2, 2, 17, 3], true, true);
    }
}

#[test]
fn a_frozen_norm_keeps_its_running_statistics_in_training() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let norm = trained_norm(3, &device).freeze();
    let before = norm.running_mean.value_sync().into_data();
    let x = random([4, 3, 2, 2], &device);
    let output = coppice_kernels::batch_norm(x.clone(), &norm, None, false);
    assert_eq!(norm.running_mean.value_sync().into_data(), before);
    assert_close_any("frozen", output, norm.forward(x), 1e-6);
}
