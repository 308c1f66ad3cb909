//! The networks of the papers coppice reproduces, written as graphs: `kind = "lenet5"` in a
//! config expands to the same layers a user could list under `[[model.layers]]`.
//!
//! Layers are listed in the order the hand-written modules declared their parameters, so a seed
//! draws the same initial weights it always drew.

use crate::graph::{Architecture, InputShape, Node, Op};

/// Layers in the order they run; a layer reads the one before unless it names its inputs.
#[derive(Default)]
struct Layers(Vec<Node>);

impl Layers {
    fn push(&mut self, name: impl Into<String>, op: Op) -> String {
        self.push_reading(name, op, &[])
    }

    fn push_reading(&mut self, name: impl Into<String>, op: Op, inputs: &[&str]) -> String {
        let name = name.into();
        self.0.push(Node { name: name.clone(), op, inputs: inputs.iter().map(|s| s.to_string()).collect() });
        name
    }

    fn into_architecture(self, input: InputShape) -> Architecture {
        Architecture { input, layers: self.0 }
    }
}

fn conv(filters: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Op {
    Op::Conv { filters, kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2], bias }
}

fn linear(units: usize) -> Op {
    Op::Linear { units, bias: true }
}

fn max_pool(size: usize) -> Op {
    Op::MaxPool { kernel: [size; 2], stride: [size; 2], padding: [0; 2] }
}

/// BatchNorm as burn and PyTorch default it.
pub fn batch_norm() -> Op {
    Op::BatchNorm { epsilon: 1e-5, momentum: 0.1 }
}

/// A fully connected network on the flattened image; `hidden = [300, 100]` is LeNet-300-100.
pub fn mlp(input: InputShape, hidden: &[usize], classes: usize) -> Architecture {
    let mut layers = Layers::default();
    layers.push("flatten", Op::Flatten);
    for (i, &width) in hidden.iter().enumerate() {
        layers.push(format!("fc{}", i + 1), linear(width));
        layers.push(format!("fc{}_relu", i + 1), Op::Relu);
    }
    layers.push(format!("fc{}", hidden.len() + 1), linear(classes));
    layers.into_architecture(input)
}

/// Caffe's LeNet-5, which Han et al. (2015) pruned: conv 20@5x5, max-pool 2, conv 50@5x5,
/// max-pool 2, fc 500, ReLU, fc 10; no activation after the convs.
pub fn lenet5(input: InputShape, [conv1, conv2, fc1]: [usize; 3], classes: usize) -> Architecture {
    let mut layers = Layers::default();
    layers.push("conv1", conv(conv1, 5, 1, 0, true));
    layers.push("pool1", max_pool(2));
    layers.push("conv2", conv(conv2, 5, 1, 0, true));
    layers.push("pool2", max_pool(2));
    layers.push("flatten", Op::Flatten);
    layers.push("fc1", linear(fc1));
    layers.push("fc1_relu", Op::Relu);
    layers.push("fc2", linear(classes));
    layers.into_architecture(input)
}

/// A VGG-style CNN: stages of 3x3 convs (padding 1), each followed by BatchNorm and ReLU, every
/// stage closed by a 2x2 max-pool; then fc, ReLU, fc. Convs are numbered across stages.
pub fn vgg(input: InputShape, stages: &[Vec<usize>], fc: usize, classes: usize) -> Architecture {
    let mut layers = Layers::default();
    let mut k = 0;
    for (s, stage) in stages.iter().enumerate() {
        for &filters in stage {
            k += 1;
            layers.push(format!("conv{k}"), conv(filters, 3, 1, 1, true));
            layers.push(format!("bn{k}"), batch_norm());
            layers.push(format!("conv{k}_relu"), Op::Relu);
        }
        layers.push(format!("pool{}", s + 1), max_pool(2));
    }
    layers.push("flatten", Op::Flatten);
    layers.push("fc1", linear(fc));
    layers.push("fc1_relu", Op::Relu);
    layers.push("fc2", linear(classes));
    layers.into_architecture(input)
}

/// He et al.'s CIFAR ResNets (16, 32 and 64 channels: ResNet-20, -56, ...).
pub const RESNET_WIDTHS: [usize; 3] = [16, 32, 64];

/// The CIFAR ResNet of He et al. (2016), `depth = 6n + 2`: a 3x3 conv stem, stages of `n` basic
/// blocks of `widths` channels (stride 2 entering every stage after the first), global
/// average pooling and a linear classifier. Shortcuts are option B: a 1x1 conv and BatchNorm
/// projection where the shape changes. Convs have no bias. Names are torchvision's
/// (`layer2.0.conv1`, `layer2.0.downsample.0`), so a PyTorch `state_dict` maps by name. `None`
/// for a depth that is not `6n + 2`.
pub fn resnet(input: InputShape, depth: usize, widths: &[usize], classes: usize) -> Option<Architecture> {
    let n = depth.checked_sub(2).filter(|d| d % 6 == 0 && *d > 0)? / 6;
    let mut layers = Layers::default();
    let mut width = *widths.first()?;
    layers.push("conv1", conv(width, 3, 1, 1, false));
    layers.push("bn1", batch_norm());
    let mut x = layers.push("relu", Op::Relu);
    for (s, &stage_width) in widths.iter().enumerate() {
        for b in 0..n {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let block = format!("layer{}.{b}", s + 1);
            layers.push_reading(format!("{block}.conv1"), conv(stage_width, 3, stride, 1, false), &[&x]);
            layers.push(format!("{block}.bn1"), batch_norm());
            layers.push(format!("{block}.relu1"), Op::Relu);
            layers.push(format!("{block}.conv2"), conv(stage_width, 3, 1, 1, false));
            let branch = layers.push(format!("{block}.bn2"), batch_norm());
            let shortcut = if stride != 1 || width != stage_width {
                layers.push_reading(format!("{block}.downsample.0"), conv(stage_width, 1, stride, 0, false), &[&x]);
                layers.push(format!("{block}.downsample.1"), batch_norm())
            } else {
                x.clone()
            };
            layers.push_reading(format!("{block}.add"), Op::Add, &[&branch, &shortcut]);
            x = layers.push(format!("{block}.relu2"), Op::Relu);
            width = stage_width;
        }
    }
    layers.push("avgpool", Op::GlobalAvgPool);
    layers.push("fc", linear(classes));
    Some(layers.into_architecture(input))
}
