use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use coppice_kernels::{conv2d_batch_norm, linear, max_pool2d};

use crate::structure::{
    Activation, Prunable, PrunableLayer, UnitGroup, UnitOp, conv_layer, dense, linear_layer, spatial, unit_group,
};

const KERNEL: usize = 3;
const POOL: usize = 2;

/// A VGG-style CNN: stages of 3x3 convs (padding 1, so the size is kept), each followed by
/// BatchNorm and ReLU, every stage closed by a 2x2 max-pool; then fc, ReLU, fc.
#[derive(Config, Debug, PartialEq)]
pub struct VggConfig {
    #[config(default = 3)]
    pub channels: usize,
    #[config(default = 32)]
    pub height: usize,
    #[config(default = 32)]
    pub width: usize,
    /// Output channels of each conv, stage by stage.
    #[config(default = "vec![vec![32, 32], vec![64, 64], vec![128, 128]]")]
    pub stages: Vec<Vec<usize>>,
    #[config(default = 256)]
    pub fc: usize,
    #[config(default = 10)]
    pub classes: usize,
}

#[derive(Module, Debug)]
pub struct Vgg {
    /// Every conv of every stage in forward order; users call them conv1, conv2, ...
    pub conv: Vec<Conv2d>,
    /// `bn[i]` normalizes the output of `conv[i]`.
    pub bn: Vec<BatchNorm>,
    pub fc1: Linear,
    pub fc2: Linear,
    pub pool: MaxPool2d,
    /// Input height and width, kept so that the architecture can be read back from the model.
    #[module(skip)]
    pub input_hw: [usize; 2],
    /// Convs per stage: the weights give each conv's width but not where the pools fall.
    #[module(skip)]
    pub stage_sizes: Vec<usize>,
}

impl VggConfig {
    /// The spatial size inside each stage (what its convs output), and the size after the last
    /// pool that fc1 flattens. `None` when some pool would leave nothing.
    pub fn feature_hw(&self) -> Option<(Vec<[usize; 2]>, [usize; 2])> {
        let mut hw = [self.height, self.width];
        let mut inside = Vec::with_capacity(self.stages.len());
        for _ in &self.stages {
            inside.push(hw);
            hw = hw.map(|s| s / POOL);
        }
        (hw[0] > 0 && hw[1] > 0).then_some((inside, hw))
    }

    pub fn init(&self, device: &Device) -> Vgg {
        let (_, [ph, pw]) = self.feature_hw().unwrap_or_else(|| {
            panic!(
                "a VGG with {} stages needs inputs of at least {size}x{size}, got {}x{}",
                self.stages.len(),
                self.height,
                self.width,
                size = POOL.pow(self.stages.len() as u32)
            )
        });
        let widths: Vec<usize> = self.stages.iter().flatten().copied().collect();
        let inputs = std::iter::once(self.channels).chain(widths.iter().copied());
        let conv = inputs
            .zip(&widths)
            .map(|(input, &output)| {
                Conv2dConfig::new([input, output], [KERNEL, KERNEL])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device)
            })
            .collect();
        let bn = widths.iter().map(|&w| BatchNormConfig::new(w).init(device)).collect();
        let last = widths.last().copied().unwrap_or(self.channels);
        Vgg {
            conv,
            bn,
            fc1: LinearConfig::new(last * ph * pw, self.fc).init(device),
            fc2: LinearConfig::new(self.fc, self.classes).init(device),
            pool: MaxPool2dConfig::new([POOL, POOL]).init(),
            input_hw: [self.height, self.width],
            stage_sizes: self.stages.iter().map(Vec::len).collect(),
        }
    }
}

impl Vgg {
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_tapped(images, &mut |_, a| a)
    }

    /// The configuration that rebuilds this network, read from its tensors (so pruned sizes).
    pub fn config(&self) -> VggConfig {
        let [fc1_in, fc] = self.fc1.weight.dims();
        let [_, classes] = self.fc2.weight.dims();
        let [height, width] = self.input_hw;
        let mut widths = self.conv.iter().map(|c| c.weight.dims()[0]);
        let stages = self.stage_sizes.iter().map(|&n| widths.by_ref().take(n).collect()).collect();
        let channels = match self.conv.first() {
            Some(c) => c.weight.dims()[1],
            // Without convs fc1 reads the pooled input itself.
            None => {
                let pooled = self.stage_sizes.len() as u32;
                fc1_in / ((height / POOL.pow(pooled)) * (width / POOL.pow(pooled)))
            }
        };
        VggConfig { channels, height, width, stages, fc, classes }
    }
}

impl Prunable for Vgg {
    fn prunable_layers(&self) -> Vec<PrunableLayer> {
        let (inside, _) = self.config().feature_hw().expect("a built VGG has valid sizes");
        let pixels = self.stage_sizes.iter().zip(&inside).flat_map(|(&n, [h, w])| std::iter::repeat_n(h * w, n));
        let mut layers: Vec<PrunableLayer> = self
            .conv
            .iter()
            .zip(pixels)
            .enumerate()
            .map(|(i, (conv, pixels))| {
                conv_layer(format!("conv{}", i + 1), &format!("conv.{i}"), conv.weight.dims(), pixels)
            })
            .collect();
        layers.push(linear_layer("fc1".into(), "fc1", self.fc1.weight.dims()));
        layers.push(linear_layer("fc2".into(), "fc2", self.fc2.weight.dims()));
        layers
    }

    fn unit_groups(&self) -> Vec<UnitGroup> {
        let (_, [ph, pw]) = self.config().feature_hw().expect("a built VGG has valid sizes");
        let layers = self.prunable_layers();
        let convs = self.conv.len();
        let mut groups: Vec<UnitGroup> = (0..convs)
            .map(|i| {
                let between =
                    vec![UnitOp::BatchNorm { module: format!("bn.{i}"), epsilon: self.bn[i].epsilon }, UnitOp::Relu];
                // Flattening [c, h, w] puts channel k's pixels in rows k*h*w .. (k+1)*h*w of fc1.
                let block = if i + 1 == convs { ph * pw } else { 1 };
                unit_group(&layers[i], between, &layers[i + 1], block)
            })
            .collect();
        groups.push(unit_group(&layers[convs], vec![UnitOp::Relu], &layers[convs + 1], 1));
        groups
    }

    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2> {
        // A conv's output is tapped only when its consumer is about to read it, so that it has
        // gone through every pool in between (more than one if a stage has no convs).
        let mut untapped = None;
        let mut take = |x: Tensor<4>, untapped: &mut Option<usize>| match untapped.take() {
            Some(g) => spatial(tap(g, Activation::Spatial(x))),
            None => x,
        };
        let mut x = images;
        let mut layers = self.conv.iter().zip(&self.bn).enumerate();
        for &convs in &self.stage_sizes {
            for (i, (conv, bn)) in layers.by_ref().take(convs) {
                x = take(x, &mut untapped);
                x = conv2d_batch_norm(x, conv, bn, None, true);
                untapped = Some(i);
            }
            x = max_pool2d(x, &self.pool);
        }
        let x: Tensor<2> = take(x, &mut untapped).flatten(1, 3);
        let x = dense(tap(self.conv.len(), Activation::Dense(linear(x, &self.fc1, true))));
        linear(x, &self.fc2, false)
    }
}
