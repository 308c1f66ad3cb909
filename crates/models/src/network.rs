use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::lenet5::{LeNet5, LeNet5Config};
use crate::mlp::{Mlp, MlpConfig};
use crate::params::float_params;
use crate::resnet::{ResNet, ResNetConfig};
use crate::structure::{Activation, Prunable, PrunableLayer, UnitGroup};
use crate::vgg::{Vgg, VggConfig};

/// Anything that maps a batch of images `[batch, channels, height, width]` to class logits.
pub trait Classifier {
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl InputShape {
    pub fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Every network coppice can build. One enum rather than generics, because burn-train needs
/// one concrete model type and the runner picks the network at run time.
// Boxing the large variant buys nothing measurable: a network moves a few times per training
// step, next to tensor work of millions of operations.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    Mlp(Mlp),
    LeNet5(LeNet5),
    Vgg(Vgg),
    ResNet(ResNet),
}

/// The sizes that rebuild a network, as saved next to its weights (`architecture.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Architecture {
    Mlp(MlpConfig),
    Lenet5(LeNet5Config),
    Vgg(VggConfig),
    Resnet(ResNetConfig),
}

impl Architecture {
    /// Builds the network without touching its parameters: burn initializes them lazily, so
    /// nothing is drawn from the random generator until they are read.
    fn build(&self, device: &Device) -> Network {
        match self {
            Architecture::Mlp(config) => Network::Mlp(config.init(device)),
            Architecture::Lenet5(config) => Network::LeNet5(config.init(device)),
            Architecture::Vgg(config) => Network::Vgg(config.init(device)),
            Architecture::Resnet(config) => Network::ResNet(config.init(device)),
        }
    }

    pub fn init(&self, device: &Device) -> Network {
        let net = self.build(device);
        // burn initializes parameters lazily, at first use. Reading them all here, in module
        // order, makes the initial weights depend on the seed alone and not on which code
        // happens to touch a parameter first (a shape query does).
        float_params(&net);
        net
    }

    pub fn input(&self) -> InputShape {
        match self {
            Architecture::Mlp(c) => InputShape { channels: 1, height: 1, width: c.inputs },
            Architecture::Lenet5(c) => InputShape { channels: c.channels, height: c.height, width: c.width },
            Architecture::Vgg(c) => InputShape { channels: c.channels, height: c.height, width: c.width },
            Architecture::Resnet(c) => InputShape { channels: c.channels, height: c.height, width: c.width },
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Architecture::Mlp(c) => c.classes,
            Architecture::Lenet5(c) => c.classes,
            Architecture::Vgg(c) => c.classes,
            Architecture::Resnet(c) => c.classes,
        }
    }
}

impl Network {
    /// A copy that shares nothing with `self`. burn's clones share BatchNorm running statistics,
    /// which module mappers (surgery) and training rewrite in place. Draws nothing from the
    /// random generator.
    pub fn deep_clone(&self) -> Network {
        let device = self.devices().into_iter().next().unwrap_or_default();
        self.architecture().build(&device).load_record(self.clone().into_record())
    }

    /// Read back from the tensors, so a pruned network reports its smaller sizes.
    pub fn architecture(&self) -> Architecture {
        match self {
            Network::Mlp(m) => Architecture::Mlp(m.config()),
            Network::LeNet5(m) => Architecture::Lenet5(m.config()),
            Network::Vgg(m) => Architecture::Vgg(m.config()),
            Network::ResNet(m) => Architecture::Resnet(m.config()),
        }
    }
}

impl Classifier for Network {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Network::Mlp(m) => m.forward(images),
            Network::LeNet5(m) => m.forward(images),
            Network::Vgg(m) => m.forward(images),
            Network::ResNet(m) => m.forward(images),
        }
    }
}

impl Prunable for Network {
    fn prunable_layers(&self) -> Vec<PrunableLayer> {
        match self {
            Network::Mlp(m) => m.prunable_layers(),
            Network::LeNet5(m) => m.prunable_layers(),
            Network::Vgg(m) => m.prunable_layers(),
            Network::ResNet(m) => m.prunable_layers(),
        }
    }

    fn unit_groups(&self) -> Vec<UnitGroup> {
        match self {
            Network::Mlp(m) => m.unit_groups(),
            Network::LeNet5(m) => m.unit_groups(),
            Network::Vgg(m) => m.unit_groups(),
            Network::ResNet(m) => m.unit_groups(),
        }
    }

    fn forward_tapped(&self, images: Tensor<4>, tap: &mut dyn FnMut(usize, Activation) -> Activation) -> Tensor<2> {
        match self {
            Network::Mlp(m) => m.forward_tapped(images, tap),
            Network::LeNet5(m) => m.forward_tapped(images, tap),
            Network::Vgg(m) => m.forward_tapped(images, tap),
            Network::ResNet(m) => m.forward_tapped(images, tap),
        }
    }
}
