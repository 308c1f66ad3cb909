//! `[model]` in a config: a preset (`kind = "lenet5"`, sized by its keys) or a network listed
//! layer by layer (`[[model.layers]]`, with `[model.blocks.NAME]` for blocks that repeat), and
//! where its starting weights come from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::graph::{Architecture, InputShape};
use crate::layers::{BlockSpec, FieldError, LayerSpec, expand};
use crate::presets;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Mlp,
    Lenet5,
    Vgg,
    Resnet,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::Mlp => "mlp",
            Preset::Lenet5 => "lenet5",
            Preset::Vgg => "vgg",
            Preset::Resnet => "resnet",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A preset network; absent when `layers` lists the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Preset>,
    /// mlp: hidden layer widths (default [300, 100], LeNet-300-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
    /// lenet5: filters of the first and second conv (default 20, 50) and fc1 width (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv1: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv2: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc1: Option<usize>,
    /// vgg: conv channels per stage, each stage ending in a 2x2 max-pool (default
    /// [[32, 32], [64, 64], [128, 128]]), and the hidden fc width (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Vec<usize>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc: Option<usize>,
    /// resnet: 6n + 2 layers, n basic blocks per stage (default 20; He et al. use 20, 32, 56, 110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Weights to start from instead of training dense: a safetensors file or a PyTorch
    /// `state_dict` (`.pt`, `.pth`), named as PyTorch names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// How the names in `weights` map to layer names, by prefix: `{ "features.0" = "conv1" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// A run directory whose weights (`model.bpk`, `architecture.json`) the network starts from
    /// instead of the seeded random init, and then trains: how `coppice compare` starts every
    /// backend from the same weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Blocks that `layers` uses, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocks: BTreeMap<String, BlockSpec>,
    /// The network, layer by layer, when there is no `kind`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
}

impl ModelConfig {
    pub fn preset(kind: Preset) -> ModelConfig {
        ModelConfig { kind: Some(kind), ..ModelConfig::default() }
    }

    /// The keys that belong to one kind of network, and `kind` and `layers` not both.
    pub fn check_keys(&self) -> Result<(), FieldError> {
        let preset_keys = [
            ("hidden", self.hidden.is_some(), Preset::Mlp),
            ("conv1", self.conv1.is_some(), Preset::Lenet5),
            ("conv2", self.conv2.is_some(), Preset::Lenet5),
            ("fc1", self.fc1.is_some(), Preset::Lenet5),
            ("stages", self.stages.is_some(), Preset::Vgg),
            ("fc", self.fc.is_some(), Preset::Vgg),
            ("depth", self.depth.is_some(), Preset::Resnet),
        ];
        let misplaced = preset_keys.iter().find(|(_, set, kind)| *set && Some(*kind) != self.kind);
        if let Some((key, _, _)) = misplaced {
            let problem = match self.kind {
                Some(kind) => format!("does not apply to kind = \"{}\"; fix: remove it", kind.name()),
                None => "sizes a preset network (kind), not a list of layers; fix: remove it".to_string(),
            };
            return Err((format!("model.{key}"), problem));
        }
        match (self.kind, self.layers.is_empty()) {
            (Some(_), false) => Err((
                "model.layers".into(),
                "a network is a preset (kind) or a list of layers, not both; fix: remove kind or layers".into(),
            )),
            (None, true) => Err((
                "model.kind".into(),
                "no network: fix: kind = \"mlp\", \"lenet5\", \"vgg\" or \"resnet\", or list [[model.layers]]".into(),
            )),
            (Some(_), true) if !self.blocks.is_empty() => {
                Err(("model.blocks".into(), "blocks are used by [[model.layers]]; fix: remove them".into()))
            }
            _ => Ok(()),
        }
    }

    /// The network this config builds for images of `input` and `classes` classes.
    pub fn architecture(&self, input: InputShape, classes: usize) -> Result<Architecture, FieldError> {
        self.check_keys()?;
        let zero = |name: &str, values: &[usize]| match values.contains(&0) {
            true => Err((format!("model.{name}"), "layer sizes must be at least 1".to_string())),
            false => Ok(()),
        };
        let architecture = match self.kind {
            Some(Preset::Mlp) => {
                let hidden = self.hidden.clone().unwrap_or_else(|| vec![300, 100]);
                zero("hidden", &hidden)?;
                presets::mlp(input, &hidden, classes)
            }
            Some(Preset::Lenet5) => {
                let widths = [self.conv1.unwrap_or(20), self.conv2.unwrap_or(50), self.fc1.unwrap_or(500)];
                zero("conv1", &widths)?;
                presets::lenet5(input, widths, classes)
            }
            Some(Preset::Vgg) => {
                let stages = self.stages.clone().unwrap_or_else(|| vec![vec![32, 32], vec![64, 64], vec![128, 128]]);
                let fc = self.fc.unwrap_or(256);
                if stages.iter().any(|s| s.is_empty() || s.contains(&0)) || fc == 0 {
                    return Err((
                        "model.stages".into(),
                        "every stage needs at least one conv and sizes of at least 1".into(),
                    ));
                }
                presets::vgg(input, &stages, fc, classes)
            }
            Some(Preset::Resnet) => {
                let depth = self.depth.unwrap_or(20);
                presets::resnet(input, depth, &presets::RESNET_WIDTHS, classes).ok_or_else(|| {
                    ("model.depth".to_string(), format!("{depth} is not 6n + 2 for n >= 1; fix: use 20, 32, 56 or 110"))
                })?
            }
            None => expand(&self.layers, &self.blocks, input, classes)?,
        };
        let graph = architecture.resolve().map_err(|e| {
            let field = match self.kind {
                Some(_) => "model.kind".to_string(),
                None => "model.layers".to_string(),
            };
            let images = format!("{}x{}x{} images", input.channels, input.height, input.width);
            (field, format!("{e} (for {images})"))
        })?;
        let outputs = graph.shapes.last().map_or(0, |s| s.units());
        if outputs != classes {
            let last = &architecture.layers[architecture.layers.len() - 1].name;
            return Err((
                "model.layers".into(),
                format!(
                    "the network ends in {outputs} scores but the data has {classes} classes; fix: give its last weighted layer {classes} outputs (layer {last:?} ends it)"
                ),
            ));
        }
        Ok(architecture)
    }
}
