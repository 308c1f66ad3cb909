use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use coppice_kernels::linear;

use crate::structure::{Activation, Prunable, PrunableLayer, UnitGroup, UnitOp, dense, linear_layer, unit_group};

/// A fully connected network; the default is LeNet-300-100.
#[derive(Config, Debug, PartialEq)]
pub struct MlpConfig {
    #[config(default = 784)]
    pub inputs: usize,
    #[config(default = "vec![300, 100]")]
    pub hidden: Vec<usize>,
    #[config(default = 10)]
    pub classes: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layers then the output layer; users call them fc1, fc2, ...
    pub fc: Vec<Linear>,
}

impl MlpConfig {
    pub fn init(&self, device: &Device) -> Mlp {
        let widths: Vec<usize> = std::iter::once(self.inputs)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
            .collect();
        let fc = widths.windows(2).map(|pair| LinearConfig::new(pair[0], pair[1]).init(device)).collect();
        Mlp { fc }
    }
}

impl Mlp {
    /// Images of any shape are flattened per sample.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_tapped(images, &mut |_, a| a)
    }

    /// The configuration that rebuilds this network, read from its tensors (so pruned sizes).
    pub fn config(&self) -> MlpConfig {
        let dims: Vec<[usize; 2]> = self.fc.iter().map(|l| l.weight.dims()).collect();
        MlpConfig {
            inputs: dims[0][0],
            hidden: dims[..dims.len() - 1].iter().map(|d| d[1]).collect(),
            classes: dims[dims.len() - 1][1],
        }
    }
}

impl Prunable for Mlp {
    fn prunable_layers(&self) -> Vec<PrunableLayer> {
        self.fc
            .iter()
            .enumerate()
            .map(|(i, layer)| linear_layer(format!("fc{}", i + 1), &format!("fc.{i}"), layer.weight.dims()))
            .collect()
    }

    fn unit_groups(&self) -> Vec<UnitGroup> {
        let layers = self.prunable_layers();
        layers.windows(2).map(|pair| unit_group(&pair[0], vec![UnitOp::Relu], &pair[1], 1)).collect()
    }

    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        let last = self.fc.len() - 1;
        for (i, layer) in self.fc.iter().enumerate() {
            // Hidden layers end in ReLU, which the layer's kernel applies in its own output.
            x = linear(x, layer, i < last);
            if i < last {
                x = dense(tap(i, Activation::Dense(x)));
            }
        }
        x
    }
}
