//! How big a network is, from its configuration alone: what a run needs to know about memory
//! before it allocates anything.

use crate::lenet5::LeNet5Config;
use crate::mlp::MlpConfig;
use crate::network::Architecture;
use crate::resnet::ResNetConfig;
use crate::vgg::VggConfig;

/// Counts that may exceed any memory (the config is not checked yet), hence `u128`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Size {
    pub parameters: u128,
    /// Values every layer outputs for one sample, the input included: what a forward pass keeps
    /// for the backward pass.
    pub activations_per_sample: u128,
}

impl Size {
    fn layer(&mut self, parameters: u128, outputs: u128) {
        self.parameters = self.parameters.saturating_add(parameters);
        self.activations_per_sample = self.activations_per_sample.saturating_add(outputs);
    }
}

fn product(values: &[usize]) -> u128 {
    values.iter().fold(1u128, |acc, &v| acc.saturating_mul(v as u128))
}

/// A linear layer `inputs -> outputs` with bias.
fn linear(size: &mut Size, inputs: usize, outputs: usize) {
    size.layer(product(&[inputs, outputs]).saturating_add(outputs as u128), outputs as u128);
}

impl Architecture {
    pub fn size(&self) -> Size {
        match self {
            Architecture::Mlp(c) => mlp(c),
            Architecture::Lenet5(c) => lenet5(c),
            Architecture::Vgg(c) => vgg(c),
            Architecture::Resnet(c) => resnet(c),
        }
    }
}

fn mlp(c: &MlpConfig) -> Size {
    let mut size = Size { parameters: 0, activations_per_sample: c.inputs as u128 };
    let widths: Vec<usize> = std::iter::once(c.inputs).chain(c.hidden.iter().copied()).chain([c.classes]).collect();
    widths.windows(2).for_each(|pair| linear(&mut size, pair[0], pair[1]));
    size
}

fn lenet5(c: &LeNet5Config) -> Size {
    let mut size = Size { parameters: 0, activations_per_sample: product(&[c.channels, c.height, c.width]) };
    let Some(([h1, w1], [h2, w2], [ph, pw])) = c.feature_hw() else {
        return size;
    };
    let conv = |size: &mut Size, inputs: usize, outputs: usize, [h, w]: [usize; 2]| {
        let weights = product(&[outputs, inputs, 25]).saturating_add(outputs as u128);
        // The conv's output and the pool's.
        size.layer(weights, product(&[outputs, h, w]).saturating_add(product(&[outputs, h / 2, w / 2])));
    };
    conv(&mut size, c.channels, c.conv1, [h1, w1]);
    conv(&mut size, c.conv1, c.conv2, [h2, w2]);
    linear(&mut size, c.conv2.saturating_mul(ph).saturating_mul(pw), c.fc1);
    linear(&mut size, c.fc1, c.classes);
    size
}

fn vgg(c: &VggConfig) -> Size {
    let mut size = Size { parameters: 0, activations_per_sample: product(&[c.channels, c.height, c.width]) };
    let Some((inside, [ph, pw])) = c.feature_hw() else {
        return size;
    };
    let mut inputs = c.channels;
    for (stage, [h, w]) in c.stages.iter().zip(inside) {
        for &outputs in stage {
            // Conv weights and bias, BatchNorm's scale, shift and running statistics; conv,
            // BatchNorm and ReLU outputs.
            let weights = product(&[outputs, inputs, 9]).saturating_add(5 * outputs as u128);
            size.layer(weights, product(&[3, outputs, h, w]));
            inputs = outputs;
        }
        size.layer(0, product(&[inputs, h / 2, w / 2]));
    }
    linear(&mut size, inputs.saturating_mul(ph).saturating_mul(pw), c.fc);
    linear(&mut size, c.fc, c.classes);
    size
}

fn resnet(c: &ResNetConfig) -> Size {
    let mut size = Size { parameters: 0, activations_per_sample: product(&[c.channels, c.height, c.width]) };
    // A conv without bias and its BatchNorm (4 values per channel); conv, BatchNorm and ReLU
    // outputs.
    let conv = |size: &mut Size, inputs: usize, outputs: usize, kernel: usize, [h, w]: [usize; 2]| {
        let weights = product(&[outputs, inputs, kernel, kernel]).saturating_add(4 * outputs as u128);
        size.layer(weights, product(&[3, outputs, h, w]));
    };
    let hw = c.stage_hw();
    let mut inputs = c.widths.first().copied().unwrap_or(c.channels);
    conv(&mut size, c.channels, inputs, 3, [c.height, c.width]);
    for (s, (&width, inner)) in c.widths.iter().zip(&c.inner).enumerate() {
        for (b, &mid) in inner.iter().enumerate() {
            conv(&mut size, inputs, mid, 3, hw[s]);
            conv(&mut size, mid, width, 3, hw[s]);
            if (s > 0 && b == 0) || inputs != width {
                conv(&mut size, inputs, width, 1, hw[s]);
            }
            inputs = width;
        }
    }
    linear(&mut size, inputs, c.classes);
    size
}
