use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use coppice_kernels::{conv2d, linear, max_pool2d};

use crate::structure::{
    Activation, Prunable, PrunableLayer, UnitGroup, UnitOp, conv_layer, dense, linear_layer, spatial, unit_group,
};

const KERNEL: usize = 5;
const POOL: usize = 2;

/// LeNet-5 as in Caffe's example that Han et al. (2015) pruned: conv 20@5x5, max-pool 2,
/// conv 50@5x5, max-pool 2, fc 500, ReLU, fc 10. There is no activation after the convs.
#[derive(Config, Debug, PartialEq)]
pub struct LeNet5Config {
    #[config(default = 1)]
    pub channels: usize,
    #[config(default = 28)]
    pub height: usize,
    #[config(default = 28)]
    pub width: usize,
    #[config(default = 20)]
    pub conv1: usize,
    #[config(default = 50)]
    pub conv2: usize,
    #[config(default = 500)]
    pub fc1: usize,
    #[config(default = 10)]
    pub classes: usize,
}

#[derive(Module, Debug)]
pub struct LeNet5 {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
    pub pool: MaxPool2d,
    /// Input height and width, kept so that the architecture can be read back from the model.
    #[module(skip)]
    pub input_hw: [usize; 2],
}

/// Spatial size after a valid 5x5 conv (`conv_out`) and after the 2x2 pool that follows it.
fn stage(size: usize) -> (usize, usize) {
    let conv_out = size + 1 - KERNEL;
    (conv_out, conv_out / POOL)
}

impl LeNet5Config {
    /// `None` when the input is too small for two conv-pool stages.
    pub fn feature_hw(&self) -> Option<([usize; 2], [usize; 2], [usize; 2])> {
        let ok = |s: usize| s >= KERNEL && (s + 1 - KERNEL) / POOL >= KERNEL;
        if !ok(self.height) || !ok(self.width) {
            return None;
        }
        let (h1, p1h) = stage(self.height);
        let (w1, p1w) = stage(self.width);
        let (h2, p2h) = stage(p1h);
        let (w2, p2w) = stage(p1w);
        Some(([h1, w1], [h2, w2], [p2h, p2w]))
    }

    pub fn init(&self, device: &Device) -> LeNet5 {
        let (_, _, [ph, pw]) = self
            .feature_hw()
            .unwrap_or_else(|| panic!("LeNet-5 needs inputs of at least 16x16, got {}x{}", self.height, self.width));
        let kernel = [KERNEL, KERNEL];
        LeNet5 {
            conv1: Conv2dConfig::new([self.channels, self.conv1], kernel).init(device),
            conv2: Conv2dConfig::new([self.conv1, self.conv2], kernel).init(device),
            fc1: LinearConfig::new(self.conv2 * ph * pw, self.fc1).init(device),
            fc2: LinearConfig::new(self.fc1, self.classes).init(device),
            pool: MaxPool2dConfig::new([POOL, POOL]).init(),
            input_hw: [self.height, self.width],
        }
    }
}

impl LeNet5 {
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_tapped(images, &mut |_, a| a)
    }

    pub fn config(&self) -> LeNet5Config {
        let [conv1, channels, _, _] = self.conv1.weight.dims();
        let [conv2, _, _, _] = self.conv2.weight.dims();
        let [_, fc1] = self.fc1.weight.dims();
        let [_, classes] = self.fc2.weight.dims();
        LeNet5Config { channels, height: self.input_hw[0], width: self.input_hw[1], conv1, conv2, fc1, classes }
    }
}

impl Prunable for LeNet5 {
    fn prunable_layers(&self) -> Vec<PrunableLayer> {
        let ([h1, w1], [h2, w2], _) = self.config().feature_hw().expect("a built LeNet-5 has valid sizes");
        vec![
            conv_layer("conv1".into(), "conv1", self.conv1.weight.dims(), h1 * w1),
            conv_layer("conv2".into(), "conv2", self.conv2.weight.dims(), h2 * w2),
            linear_layer("fc1".into(), "fc1", self.fc1.weight.dims()),
            linear_layer("fc2".into(), "fc2", self.fc2.weight.dims()),
        ]
    }

    fn unit_groups(&self) -> Vec<UnitGroup> {
        let (_, _, [ph, pw]) = self.config().feature_hw().expect("a built LeNet-5 has valid sizes");
        let [conv1, conv2, fc1, fc2] =
            <[PrunableLayer; 4]>::try_from(self.prunable_layers()).expect("LeNet-5 has four prunable layers");
        vec![
            unit_group(&conv1, vec![], &conv2, 1),
            // Flattening [c, h, w] puts channel k's pixels in rows k*h*w .. (k+1)*h*w of fc1.
            unit_group(&conv2, vec![], &fc1, ph * pw),
            unit_group(&fc1, vec![UnitOp::Relu], &fc2, 1),
        ]
    }

    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2> {
        let x = spatial(tap(0, Activation::Spatial(max_pool2d(conv2d(images, &self.conv1), &self.pool))));
        let x = spatial(tap(1, Activation::Spatial(max_pool2d(conv2d(x, &self.conv2), &self.pool))));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = dense(tap(2, Activation::Dense(linear(x, &self.fc1, true))));
        linear(x, &self.fc2, false)
    }
}
