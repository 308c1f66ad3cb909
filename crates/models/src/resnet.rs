use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use coppice_kernels::{conv2d_batch_norm, linear};

use crate::structure::{
    Activation, Prunable, PrunableLayer, UnitGroup, UnitOp, consumer_of, conv_layer, linear_layer, producer_slices,
    spatial, unit_group,
};

/// The CIFAR ResNet of He et al. (2016): a 3x3 conv stem, three stages of basic blocks (conv3x3,
/// BN, ReLU, conv3x3, BN, plus the shortcut, then ReLU), stride 2 at the first block of stages
/// 2 and 3, global average pooling and a Linear. Shortcuts are option B: a 1x1 conv + BN
/// projection where the shape changes, the identity elsewhere. Convs have no bias (BN follows).
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    #[config(default = 3)]
    pub channels: usize,
    #[config(default = 32)]
    pub height: usize,
    #[config(default = 32)]
    pub width: usize,
    /// The channels of each stage's residual stream (the stem's output is stage 1's).
    #[config(default = "vec![16, 32, 64]")]
    pub widths: Vec<usize>,
    /// Inner channels (first conv of a block) per stage and block; `n` blocks per stage make
    /// depth `6n + 2`. Default: ResNet-20, inner widths equal to the stage's.
    #[config(default = "vec![vec![16; 3], vec![32; 3], vec![64; 3]]")]
    pub inner: Vec<Vec<usize>>,
    #[config(default = 10)]
    pub classes: usize,
}

impl ResNetConfig {
    /// ResNet-`depth` (`depth = 6n + 2`) with the paper's widths, or `None` for another depth.
    pub fn with_depth(self, depth: usize) -> Option<ResNetConfig> {
        let n = depth.checked_sub(2).filter(|d| d % 6 == 0 && *d > 0)? / 6;
        let inner = self.widths.iter().map(|&w| vec![w; n]).collect();
        Some(ResNetConfig { inner, ..self })
    }

    pub fn depth(&self) -> usize {
        6 * self.inner.first().map_or(0, Vec::len) + 2
    }

    /// Output height and width of each stage.
    pub fn stage_hw(&self) -> Vec<[usize; 2]> {
        let halve = |s: usize| s.div_ceil(2); // a 3x3 conv, padding 1, stride 2
        let mut hw = [self.height, self.width];
        (0..self.widths.len())
            .map(|s| {
                if s > 0 {
                    hw = hw.map(halve);
                }
                hw
            })
            .collect()
    }

    pub fn init(&self, device: &Device) -> ResNet {
        let conv = |input: usize, output: usize, kernel: usize, stride: usize| {
            let padding = if kernel == 3 { PaddingConfig2d::Explicit(1, 1, 1, 1) } else { PaddingConfig2d::Valid };
            Conv2dConfig::new([input, output], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding)
                .with_bias(false)
                .init(device)
        };
        let bn = |width: usize| BatchNormConfig::new(width).init(device);
        let mut input = self.widths[0];
        let mut stages = Vec::new();
        for (s, (&width, inner)) in self.widths.iter().zip(&self.inner).enumerate() {
            let blocks = inner
                .iter()
                .enumerate()
                .map(|(b, &mid)| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let downsample = (stride != 1 || input != width)
                        .then(|| Downsample { conv: conv(input, width, 1, stride), bn: bn(width) });
                    let block = BasicBlock {
                        conv1: conv(input, mid, 3, stride),
                        bn1: bn(mid),
                        conv2: conv(mid, width, 3, 1),
                        bn2: bn(width),
                        downsample,
                    };
                    input = width;
                    block
                })
                .collect();
            stages.push(blocks);
        }
        let mut stages = stages.into_iter();
        ResNet {
            conv1: conv(self.channels, self.widths[0], 3, 1),
            bn1: bn(self.widths[0]),
            layer1: stages.next().unwrap_or_default(),
            layer2: stages.next().unwrap_or_default(),
            layer3: stages.next().unwrap_or_default(),
            fc: LinearConfig::new(input, self.classes).init(device),
            input_hw: [self.height, self.width],
        }
    }
}

/// Module names follow torchvision's ResNet (`layer2.0.conv1`), so that a PyTorch user can map
/// a state dict; the projection is `downsample.conv` / `downsample.bn` where torchvision has
/// `downsample.0` / `downsample.1`.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub fc: Linear,
    #[module(skip)]
    pub input_hw: [usize; 2],
}

#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ResNet {
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_tapped(images, &mut |_, a| a)
    }

    fn stages(&self) -> [(&str, &Vec<BasicBlock>); 3] {
        [("layer1", &self.layer1), ("layer2", &self.layer2), ("layer3", &self.layer3)]
    }

    /// The configuration that rebuilds this network, read from its tensors (so pruned sizes).
    pub fn config(&self) -> ResNetConfig {
        let [stem, channels, _, _] = self.conv1.weight.dims();
        let stages = self.stages();
        let width = |blocks: &Vec<BasicBlock>| blocks.first().map_or(stem, |b| b.conv2.weight.dims()[0]);
        ResNetConfig {
            channels,
            height: self.input_hw[0],
            width: self.input_hw[1],
            widths: stages.iter().map(|(_, blocks)| width(blocks)).collect(),
            inner: stages.iter().map(|(_, blocks)| blocks.iter().map(|b| b.conv1.weight.dims()[0]).collect()).collect(),
            classes: self.fc.weight.dims()[1],
        }
    }

    fn block(
        &self,
        x: Tensor<4>,
        block: &BasicBlock,
        g: usize,
        tap: &mut dyn FnMut(usize, Activation) -> Activation,
    ) -> Tensor<4> {
        let inner = conv2d_batch_norm(x.clone(), &block.conv1, &block.bn1, None, true);
        let inner = spatial(tap(g, Activation::Spatial(inner)));
        let shortcut = match &block.downsample {
            Some(d) => conv2d_batch_norm(x, &d.conv, &d.bn, None, false),
            None => x,
        };
        conv2d_batch_norm(inner, &block.conv2, &block.bn2, Some(shortcut), true)
    }
}

impl Prunable for ResNet {
    /// The stem, every block's two convs and its projection, then the classifier.
    fn prunable_layers(&self) -> Vec<PrunableLayer> {
        let hw = self.config().stage_hw();
        let pixels = |s: usize| hw[s][0] * hw[s][1];
        let mut layers = vec![conv_layer("conv1".into(), "conv1", self.conv1.weight.dims(), pixels(0))];
        for (s, (stage, blocks)) in self.stages().into_iter().enumerate() {
            for (b, block) in blocks.iter().enumerate() {
                let path = format!("{stage}.{b}");
                layers.push(conv_layer(
                    format!("{path}.conv1"),
                    &format!("{path}.conv1"),
                    block.conv1.weight.dims(),
                    pixels(s),
                ));
                layers.push(conv_layer(
                    format!("{path}.conv2"),
                    &format!("{path}.conv2"),
                    block.conv2.weight.dims(),
                    pixels(s),
                ));
                if let Some(d) = &block.downsample {
                    let name = format!("{path}.downsample.conv");
                    layers.push(conv_layer(name.clone(), &name, d.conv.weight.dims(), pixels(s)));
                }
            }
        }
        layers.push(linear_layer("fc".into(), "fc", self.fc.weight.dims()));
        layers.into_iter().map(without_bias).collect()
    }

    /// Each block's inner channels (its first conv's filters, through BN and ReLU, read by its
    /// second conv), in block order; then each stage's residual channels (`layer1`, ...), a
    /// coupled group: written by the stem or the stage's projection and by every block's second
    /// conv and BN, read by the first conv of every block without a projection, by the next
    /// stage's first conv and projection, or by the classifier.
    fn unit_groups(&self) -> Vec<UnitGroup> {
        let layers = self.prunable_layers();
        let find = |name: &str| layers.iter().find(|l| l.name == name).expect("every block's convs are listed");
        let mut groups = Vec::new();
        for (stage, blocks) in self.stages() {
            for (b, block) in blocks.iter().enumerate() {
                let path = format!("{stage}.{b}");
                let between =
                    vec![UnitOp::BatchNorm { module: format!("{path}.bn1"), epsilon: block.bn1.epsilon }, UnitOp::Relu];
                groups.push(unit_group(find(&format!("{path}.conv1")), between, find(&format!("{path}.conv2")), 1));
            }
        }
        let stages = self.stages();
        for (s, (stage, blocks)) in stages.iter().enumerate() {
            let mut producer = match blocks.first().and_then(|b| b.downsample.as_ref()) {
                Some(_) => producer_slices(
                    find(&format!("{stage}.0.downsample.conv")),
                    Some(&format!("{stage}.0.downsample.bn")),
                ),
                None if s == 0 => producer_slices(find("conv1"), Some("bn1")),
                // An identity entry into a later stage: its channels are the previous stage's.
                None => continue,
            };
            let mut consumers = Vec::new();
            for (b, block) in blocks.iter().enumerate() {
                producer
                    .extend(producer_slices(find(&format!("{stage}.{b}.conv2")), Some(&format!("{stage}.{b}.bn2"))));
                // A block that opens with a projection reads the stage before.
                if block.downsample.is_none() {
                    consumers.push(consumer_of(find(&format!("{stage}.{b}.conv1")), 1));
                }
            }
            match stages.get(s + 1) {
                Some((next, _)) => {
                    consumers.push(consumer_of(find(&format!("{next}.0.conv1")), 1));
                    if let Some(projection) = layers.iter().find(|l| l.name == format!("{next}.0.downsample.conv")) {
                        consumers.push(consumer_of(projection, 1));
                    }
                }
                None => consumers.push(consumer_of(find("fc"), 1)),
            }
            let units = self.config().widths[s];
            groups.push(UnitGroup { layer: stage.to_string(), units, producer, between: Vec::new(), consumers });
        }
        groups
    }

    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2> {
        let blocks: usize = self.stages().iter().map(|(_, b)| b.len()).sum();
        // A residual stage's group is tapped where its channels are read: its entry and each
        // block's output.
        let residual = |s: usize| blocks + s;
        let mut x = conv2d_batch_norm(images, &self.conv1, &self.bn1, None, true);
        x = spatial(tap(residual(0), Activation::Spatial(x)));
        let mut g = 0;
        for (s, (_, stage)) in self.stages().into_iter().enumerate() {
            for block in stage {
                x = self.block(x, block, g, tap);
                x = spatial(tap(residual(s), Activation::Spatial(x)));
                g += 1;
            }
        }
        let [batch, channels, _, _] = x.dims();
        let pooled: Tensor<2> = x.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        linear(pooled, &self.fc, false)
    }
}

/// ResNet's convs have no bias; its classifier has one.
fn without_bias(mut layer: PrunableLayer) -> PrunableLayer {
    if layer.kind == crate::LayerKind::Conv2d {
        layer.bias_path = None;
        layer.bias_len = 0;
    }
    layer
}
