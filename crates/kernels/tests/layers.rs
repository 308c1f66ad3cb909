//! The layers' kernels against burn's own layers on the same backend: outputs and every gradient,
//! on shapes that reach each path (padding on either side, strides, dilation, one sample, several
//! blocks of samples in the weight gradient, no bias, fewer filters than channels).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use coppice_kernels::{conv2d, linear, max_pool2d};

fn device() -> Device {
    let device = Device::flex().autodiff();
    device.seed(7);
    device
}

/// Held for a whole test: every test seeds and draws from the one generator the flex device
/// shares, so tests running at once would interleave their draws and each run would check other
/// inputs (a rare draw put a bias gradient past the tolerance). One at a time, each test checks
/// the same values on every run.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn assert_close<const D: usize>(what: &str, ours: Option<Tensor<D>>, burns: Option<Tensor<D>>) {
    let (Some(ours), Some(burns)) = (ours, burns) else {
        panic!("{what}: a gradient is missing");
    };
    assert_eq!(ours.dims(), burns.dims(), "{what}: shape");
    let scale = burns.clone().abs().max().into_scalar::<f32>().max(1.0);
    let diff = (ours - burns).abs().max().into_scalar::<f32>();
    assert!(diff <= 2e-6 * scale, "{what}: differs from burn by {diff} (largest value {scale})");
}

/// The weighted sum of `output` whose gradients both paths take, so that every output entry
/// has its own gradient.
fn loss<const D: usize>(output: Tensor<D>, weights: &Tensor<D>) -> Tensor<1> {
    (output * weights.clone()).sum()
}

fn check_conv(layer: Conv2d, input: [usize; 4]) {
    let device = device();
    let x = random(input, &device).require_grad();
    let ours = conv2d(x.clone(), &layer);
    let burns = layer.forward(x.clone());
    let weights = random(burns.dims(), &device);
    assert_close("output", Some(ours.clone()), Some(burns.clone()));
    let (g_ours, g_burns) = (loss(ours, &weights).backward(), loss(burns, &weights).backward());
    assert_close("input gradient", x.grad(&g_ours), x.grad(&g_burns));
    let weight = layer.weight.val();
    assert_close("weight gradient", weight.grad(&g_ours), weight.grad(&g_burns));
    if let Some(bias) = &layer.bias {
        assert_close("bias gradient", bias.val().grad(&g_ours), bias.val().grad(&g_burns));
    }
}

fn conv_layer(
    channels: [usize; 2],
    kernel: [usize; 2],
    configure: impl FnOnce(Conv2dConfig) -> Conv2dConfig,
) -> Conv2d {
    configure(Conv2dConfig::new(channels, kernel)).init(&device())
}

#[test]
fn valid_convolutions_like_lenet5_match_burn() {
    let _turn = one_at_a_time();
    check_conv(conv_layer([1, 4], [5, 5], |c| c), [3, 1, 12, 12]);
    check_conv(conv_layer([4, 6], [5, 5], |c| c), [3, 4, 8, 8]);
}

#[test]
fn padded_convolutions_like_vgg_match_burn() {
    let _turn = one_at_a_time();
    check_conv(conv_layer([3, 5], [3, 3], |c| c.with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))), [2, 3, 7, 6]);
    check_conv(conv_layer([2, 3], [3, 3], |c| c.with_padding(PaddingConfig2d::Same)), [2, 2, 5, 5]);
}

#[test]
fn asymmetric_padding_strides_and_dilation_match_burn() {
    let _turn = one_at_a_time();
    let layer = conv_layer([2, 3], [3, 2], |c| {
        c.with_stride([2, 3]).with_dilation([2, 1]).with_padding(PaddingConfig2d::Explicit(2, 0, 1, 3))
    });
    check_conv(layer, [2, 2, 11, 9]);
    check_conv(conv_layer([2, 3], [2, 2], |c| c.with_stride([2, 2]).with_padding(PaddingConfig2d::Same)), [1, 2, 7, 5]);
}

#[test]
fn one_sample_and_no_bias_match_burn() {
    let _turn = one_at_a_time();
    check_conv(conv_layer([3, 4], [3, 3], |c| c.with_bias(false)), [1, 3, 6, 6]);
}

#[test]
fn fewer_filters_than_channels_take_the_tap_path_and_match_burn() {
    let _turn = one_at_a_time();
    let padded = |c: Conv2dConfig| c.with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
    check_conv(conv_layer([6, 2], [3, 3], padded), [3, 6, 7, 5]);
    check_conv(conv_layer([6, 2], [3, 3], |c| padded(c).with_bias(false)), [1, 6, 9, 9]);
    check_conv(conv_layer([5, 3], [2, 3], |c| c), [2, 5, 6, 7]);
    let odd = |c: Conv2dConfig| c.with_dilation([2, 1]).with_padding(PaddingConfig2d::Explicit(2, 0, 1, 3));
    check_conv(conv_layer([4, 1], [3, 2], odd), [2, 4, 8, 6]);
    // Padding wider than the kernel reaches: rows and columns of the output that no tap covers.
    check_conv(conv_layer([4, 2], [2, 2], |c| c.with_padding(PaddingConfig2d::Explicit(3, 2, 3, 2))), [2, 4, 3, 3]);
}

/// Stride 1 with padding, or a 1x1 kernel, as many filters as channels or more: products by tap
/// on the padded image, forward and backward, over more samples than one block of the weight
/// gradient holds.
#[test]
fn padded_stride_one_convolutions_by_taps_on_the_padded_image_match_burn() {
    let _turn = one_at_a_time();
    check_conv(conv_layer([3, 8], [1, 1], |c| c.with_bias(false)), [3, 3, 5, 4]);
    check_conv(conv_layer([4, 6], [3, 3], |c| c.with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))), [11, 4, 6, 5]);
    // Wider and uneven padding, a non-square kernel, padding beyond what any tap reads.
    check_conv(conv_layer([2, 5], [3, 2], |c| c.with_padding(PaddingConfig2d::Explicit(2, 0, 1, 3))), [2, 2, 8, 6]);
    check_conv(conv_layer([2, 3], [2, 2], |c| c.with_padding(PaddingConfig2d::Explicit(3, 2, 3, 2))), [2, 2, 3, 3]);
    // Channels and filters past the width where products run transposed.
    check_conv(conv_layer([50, 52], [3, 3], |c| c.with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))), [2, 50, 4, 3]);
}

#[test]
fn a_weight_gradient_summed_over_several_blocks_of_samples_matches_burn() {
    let _turn = one_at_a_time();
    // 18 patch rows x 900 positions per sample: blocks of 16 samples, so 40 samples are 3 blocks.
    check_conv(conv_layer([2, 3], [3, 3], |c| c.with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))), [40, 2, 30, 30]);
}

fn check_linear(layer: Linear, batch: usize, with_relu: bool) {
    let device = device();
    let [inputs, _] = layer.weight.dims();
    let x = random([batch, inputs], &device).require_grad();
    let ours = linear(x.clone(), &layer, with_relu);
    let burns = if with_relu { relu(layer.forward(x.clone())) } else { layer.forward(x.clone()) };
    let weights = random(burns.dims(), &device);
    assert_close("output", Some(ours.clone()), Some(burns.clone()));
    let (g_ours, g_burns) = (loss(ours, &weights).backward(), loss(burns, &weights).backward());
    assert_close("input gradient", x.grad(&g_ours), x.grad(&g_burns));
    let weight = layer.weight.val();
    assert_close("weight gradient", weight.grad(&g_ours), weight.grad(&g_burns));
    if let Some(bias) = &layer.bias {
        assert_close("bias gradient", bias.val().grad(&g_ours), bias.val().grad(&g_burns));
    }
}

#[test]
fn linear_layers_with_and_without_relu_match_burn() {
    let _turn = one_at_a_time();
    check_linear(LinearConfig::new(30, 20).init(&device()), 7, true);
    check_linear(LinearConfig::new(30, 20).init(&device()), 7, false);
    check_linear(LinearConfig::new(12, 5).with_bias(false).init(&device()), 1, true);
    // Large enough for the products to run on several cores.
    check_linear(LinearConfig::new(784, 300).init(&device()), 64, true);
}

#[test]
fn input_that_needs_no_gradient_gets_none_and_the_parameters_still_do() {
    let _turn = one_at_a_time();
    let device = device();
    let layer = conv_layer([1, 2], [3, 3], |c| c);
    let x = random([2, 1, 5, 5], &device);
    let grads = conv2d(x.clone(), &layer).sum().backward();
    assert!(x.grad(&grads).is_none());
    assert!(layer.weight.val().grad(&grads).is_some());
}

#[test]
fn without_autodiff_the_layers_run_the_same_kernels() {
    let _turn = one_at_a_time();
    let device = Device::flex();
    let layer = Conv2dConfig::new([2, 3], [3, 3]).init(&device);
    let x = random([2, 2, 6, 6], &device);
    assert_close("conv output", Some(conv2d(x.clone(), &layer)), Some(layer.forward(x)));
    let layer = LinearConfig::new(6, 4).init(&device);
    let x = random([3, 6], &device);
    assert_close("linear output", Some(linear(x.clone(), &layer, false)), Some(layer.forward(x)));
}

#[allow(deprecated)]
#[test]
fn other_backends_take_burns_own_operations() {
    let _turn = one_at_a_time();
    let device = Device::ndarray().autodiff();
    let layer = Conv2dConfig::new([2, 3], [3, 3]).init(&device);
    let x = random([2, 2, 6, 6], &device).require_grad();
    let ours = conv2d(x.clone(), &layer);
    let burns = layer.forward(x.clone());
    assert_eq!(ours.to_data(), burns.to_data(), "the same operations give the same values");
    let (g_ours, g_burns) = (ours.sum().backward(), burns.sum().backward());
    assert_close("input gradient", x.grad(&g_ours), x.grad(&g_burns));
}

fn check_pool(pool: MaxPool2d, input: [usize; 4]) {
    check_pool_on(pool.clone(), random(input, &device()));
    // After a ReLU most windows hold ties (zeros): the gradient goes to the first of them.
    check_pool_on(pool, relu(random(input, &device())));
}

fn check_pool_on(pool: MaxPool2d, x: Tensor<4>) {
    let device = x.device();
    let x = x.detach().require_grad();
    let ours = max_pool2d(x.clone(), &pool);
    let burns = pool.forward(x.clone());
    assert_eq!(ours.to_data(), burns.to_data(), "a maximum is a maximum");
    let weights = random(burns.dims(), &device);
    let (g_ours, g_burns) = (loss(ours, &weights).backward(), loss(burns, &weights).backward());
    assert_close("input gradient", x.grad(&g_ours), x.grad(&g_burns));
}

#[test]
fn max_pools_match_burn() {
    let _turn = one_at_a_time();
    check_pool(MaxPool2dConfig::new([2, 2]).init(), [3, 4, 24, 24]);
    check_pool(MaxPool2dConfig::new([2, 2]).init(), [2, 3, 7, 5]);
    // Overlapping windows send several gradients to one input.
    check_pool(MaxPool2dConfig::new([3, 2]).with_strides([1, 2]).with_dilation([2, 1]).init(), [2, 2, 9, 8]);
    // Padding takes burn's own operation.
    check_pool(MaxPool2dConfig::new([3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(), [1, 2, 6, 6]);
}

/// Where a value is NaN.
fn nans<const D: usize>(t: Tensor<D>) -> Vec<bool> {
    t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.is_nan()).collect()
}

/// A NaN in the input comes out as NaN wherever burn's own layers put one, through ReLU,
/// max-pool, convolution and linear layers: never as a plausible number (the sparse engine's
/// `nan_propagates_*` tests hold it to the same).
#[test]
fn a_nan_in_the_input_propagates_as_in_burn() {
    let _turn = one_at_a_time();
    let device = Device::flex();
    let mut values: Vec<f32> = (0..2 * 6 * 6).map(|i| (i as f32 * 0.37).sin()).collect();
    values[36 + 2 * 6 + 3] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(values, [1, 2, 6, 6]), &device);

    let relu_nans = nans(relu(x.clone()));
    assert_eq!(relu_nans.iter().filter(|&&n| n).count(), 1, "ReLU keeps the one NaN");

    let pool = MaxPool2dConfig::new([2, 2]).init();
    let pooled = nans(max_pool2d(x.clone(), &pool));
    assert_eq!(pooled, nans(pool.forward(x.clone())));
    assert_eq!(pooled.iter().filter(|&&n| n).count(), 1, "the one window that holds it");

    let padded = PaddingConfig2d::Explicit(1, 1, 1, 1);
    let conv = Conv2dConfig::new([2, 3], [3, 3]).with_padding(padded).init(&device);
    let convolved = nans(relu(conv2d(x.clone(), &conv)));
    assert_eq!(convolved, nans(relu(conv.forward(x.clone()))));
    assert_eq!(convolved.iter().filter(|&&n| n).count(), 3 * 9, "every filter, at the 3x3 outputs that see it");

    let layer = LinearConfig::new(72, 4).init(&device);
    let flat: Tensor<2> = x.reshape([1, 72]);
    assert!(nans(linear(flat, &layer, true)).iter().all(|&n| n), "every unit reads the NaN");
}
