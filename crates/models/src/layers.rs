//! `[[model.layers]]`: a network written layer by layer, as Keras' functional config and Caffe's
//! prototxt write one. A layer reads the layer before it unless `inputs` names others; a block
//! (`[model.blocks.NAME]`) is a list of layers used as one, repeated with `repeat` and sized with
//! `with = { width = 64 }`, so that a ResNet-56 is a few stanzas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::{Architecture, IMAGE, InputShape, Node, Op};
use crate::presets::batch_norm;

/// A config error: the field and what is wrong with it, with the fix.
pub type FieldError = (String, String);

/// A size, or `"$name"`: a parameter of the block the layer is in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Value(usize),
    Parameter(String),
}

/// One size for both sides, or `[height, width]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sides {
    Both(Size),
    Each([Size; 2]),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Default: the op and a count (`conv1`, `relu3`); inside a block, prefixed by the block's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// conv, linear, batch_norm, relu, max_pool, avg_pool, global_avg_pool, flatten, dropout, add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Instead of an op: the name of a block from `[model.blocks]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    /// A block: how many times in a row (named `<name>.0`, `<name>.1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Size>,
    /// A block: its parameters.
    #[serde(default, rename = "with", skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, usize>,
    /// The layers read, by name (`input` is the image, or inside a block the block's input);
    /// default: the layer before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Sides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<Sides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<Sides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub layers: Vec<LayerSpec>,
}

const OPS: &str = "conv, linear, batch_norm, relu, max_pool, avg_pool, global_avg_pool, flatten, dropout, add";

/// Where a layer spec sits, for errors: `model.layers[3]`, `model.blocks.bottleneck.layers[1]`.
struct Place<'a> {
    field: String,
    /// The block instance's parameters, inside a block.
    parameters: Option<&'a BTreeMap<String, usize>>,
}

impl Place<'_> {
    fn error(&self, layer: &str, problem: impl std::fmt::Display) -> FieldError {
        (self.field.clone(), format!("layer {layer:?}: {problem}"))
    }

    fn size(&self, layer: &str, field: &str, size: &Size) -> Result<usize, FieldError> {
        match size {
            Size::Value(v) => Ok(*v),
            Size::Parameter(p) => {
                let key = p.strip_prefix('$').unwrap_or(p);
                match self.parameters {
                    Some(parameters) => parameters.get(key).copied().ok_or_else(|| {
                        let known: Vec<&str> = parameters.keys().map(String::as_str).collect();
                        self.error(
                            layer,
                            format!("{field} = {p:?} names no parameter of the block (it has {known:?}); fix: add it to the block's `with`"),
                        )
                    }),
                    None => Err(self.error(layer, format!("{field} = {p:?}: parameters exist only inside blocks; fix: a number"))),
                }
            }
        }
    }

    fn sides(
        &self,
        layer: &str,
        field: &str,
        sides: Option<&Sides>,
        default: Option<[usize; 2]>,
    ) -> Result<[usize; 2], FieldError> {
        match (sides, default) {
            (Some(Sides::Both(s)), _) => Ok([self.size(layer, field, s)?; 2]),
            (Some(Sides::Each([h, w])), _) => Ok([self.size(layer, field, h)?, self.size(layer, field, w)?]),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(self.error(layer, format!("missing {field}; fix: add {field} = 3 (or [3, 3])"))),
        }
    }
}

/// Expands the layers and blocks of a config into the network's graph; the graph's own checks
/// (edges, shapes) come after, in `Architecture::resolve`.
pub fn expand(
    layers: &[LayerSpec],
    blocks: &BTreeMap<String, BlockSpec>,
    input: InputShape,
    classes: usize,
) -> Result<Architecture, FieldError> {
    let mut out = Expansion { nodes: Vec::new(), counts: BTreeMap::new() };
    for (i, spec) in layers.iter().enumerate() {
        let place = Place { field: format!("model.layers[{i}]"), parameters: None };
        let is_last = i + 1 == layers.len();
        match &spec.block {
            Some(block) => out.block(spec, block, blocks, &place)?,
            None => {
                let name = out.name(spec, "");
                let op = op(spec, &name, &place, is_last.then_some(classes))?;
                let inputs = spec_inputs(spec);
                out.nodes.push(Node { name, op, inputs });
            }
        }
    }
    Ok(Architecture { input, layers: out.nodes })
}

struct Expansion {
    nodes: Vec<Node>,
    /// Per scope and op, the layers named so far, for default names.
    counts: BTreeMap<(String, String), usize>,
}

impl Expansion {
    fn name(&mut self, spec: &LayerSpec, scope: &str) -> String {
        let local = match &spec.name {
            Some(name) => name.clone(),
            None => {
                let kind = spec.op.clone().or_else(|| spec.block.clone()).unwrap_or_else(|| "layer".into());
                let count = self.counts.entry((scope.to_string(), kind.clone())).or_insert(0);
                *count += 1;
                format!("{kind}{count}")
            }
        };
        if scope.is_empty() { local } else { format!("{scope}.{local}") }
    }

    fn block(
        &mut self,
        spec: &LayerSpec,
        block: &str,
        blocks: &BTreeMap<String, BlockSpec>,
        place: &Place,
    ) -> Result<(), FieldError> {
        let name = self.name(spec, "");
        let Some(definition) = blocks.get(block) else {
            let known: Vec<&str> = blocks.keys().map(String::as_str).collect();
            return Err(place.error(
                &name,
                format!("block {block:?} is not defined (blocks: {known:?}); fix: add [model.blocks.{block}]"),
            ));
        };
        if spec.op.is_some() || spec.filters.is_some() || spec.units.is_some() || spec.kernel.is_some() {
            return Err(place.error(
                &name,
                "a block reference takes block, repeat, with, name and inputs only; fix: move the sizes into `with`",
            ));
        }
        if definition.layers.is_empty() {
            return Err(place.error(
                &name,
                format!("block {block:?} has no layers; fix: list them under [[model.blocks.{block}.layers]]"),
            ));
        }
        let repeat = match &spec.repeat {
            Some(size) => Some(place.size(&name, "repeat", size)?),
            None => None,
        };
        if repeat == Some(0) {
            return Err(place.error(&name, "repeat must be at least 1"));
        }
        let mut entry = match spec_inputs(spec)[..] {
            [] => self.nodes.last().map_or(IMAGE.to_string(), |n| n.name.clone()),
            [ref one] => one.clone(),
            _ => return Err(place.error(&name, "a block reads one input; fix: inputs = \"name\"")),
        };
        for r in 0..repeat.unwrap_or(1) {
            let instance = match repeat {
                Some(_) => format!("{name}.{r}"),
                None => name.clone(),
            };
            let inner = Place { field: format!("model.blocks.{block}.layers"), parameters: Some(&spec.parameters) };
            let mut local_names = Vec::new();
            for (j, layer) in definition.layers.iter().enumerate() {
                let inner = Place { field: format!("{}[{j}]", inner.field), parameters: inner.parameters };
                if layer.block.is_some() {
                    return Err(inner.error(&instance, "blocks do not nest; fix: list the inner block's layers"));
                }
                let layer_name = self.name(layer, &instance);
                local_names.push(layer_name[instance.len() + 1..].to_string());
                let op = op(layer, &layer_name, &inner, None)?;
                let named = spec_inputs(layer);
                let inputs = match (j, named.is_empty()) {
                    (0, true) => vec![entry.clone()],
                    (_, true) => Vec::new(),
                    _ => named
                        .iter()
                        .map(|n| match n.as_str() {
                            IMAGE => Ok(entry.clone()),
                            local if local_names.iter().any(|l| l == local) || definition.layers.iter().any(|l| l.name.as_deref() == Some(local)) => {
                                Ok(format!("{instance}.{local}"))
                            }
                            other => Err(inner.error(
                                &layer_name,
                                format!("reads {other:?}, which is not a layer of block {block:?}; fix: name a layer of the block, or \"input\" for the block's input"),
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                };
                self.nodes.push(Node { name: layer_name, op, inputs });
            }
            entry = self.nodes.last().expect("blocks have layers").name.clone();
        }
        Ok(())
    }
}

fn spec_inputs(spec: &LayerSpec) -> Vec<String> {
    match &spec.inputs {
        None => Vec::new(),
        Some(Inputs::One(name)) => vec![name.clone()],
        Some(Inputs::Many(names)) => names.clone(),
    }
}

/// The op of one layer spec: its required fields present, the others absent, defaults filled in.
/// `last_units` is the classes, for the network's last layer, whose `units` may be left out.
fn op(spec: &LayerSpec, name: &str, place: &Place, last_units: Option<usize>) -> Result<Op, FieldError> {
    let Some(kind) = &spec.op else {
        return Err(place.error(name, format!("missing op; fix: op = one of {OPS}, or block = a block's name")));
    };
    let allowed: &[&str] = match kind.as_str() {
        "conv" => &["filters", "kernel", "stride", "padding", "bias"],
        "linear" => &["units", "bias"],
        "batch_norm" => &["epsilon", "momentum"],
        "max_pool" | "avg_pool" => &["kernel", "stride", "padding"],
        "dropout" => &["prob"],
        "relu" | "global_avg_pool" | "flatten" | "add" => &[],
        other => return Err(place.error(name, format!("unknown op {other:?}; fix: one of {OPS}"))),
    };
    let given = [
        ("filters", spec.filters.is_some()),
        ("units", spec.units.is_some()),
        ("kernel", spec.kernel.is_some()),
        ("stride", spec.stride.is_some()),
        ("padding", spec.padding.is_some()),
        ("bias", spec.bias.is_some()),
        ("epsilon", spec.epsilon.is_some()),
        ("momentum", spec.momentum.is_some()),
        ("prob", spec.prob.is_some()),
        ("repeat", spec.repeat.is_some()),
        ("with", !spec.parameters.is_empty()),
    ];
    if let Some((field, _)) = given.iter().find(|(field, set)| *set && !allowed.contains(field)) {
        let takes = if allowed.is_empty() { "no fields".to_string() } else { allowed.join(", ") };
        return Err(place.error(name, format!("{kind} takes {takes}; `{field}` does not apply; fix: remove it")));
    }
    let required = |field: &str, value: Option<&Size>| match value {
        Some(size) => place.size(name, field, size),
        None => Err(place.error(name, format!("{kind} needs {field}; fix: add {field} = ..."))),
    };
    Ok(match kind.as_str() {
        "conv" => Op::Conv {
            filters: required("filters", spec.filters.as_ref())?,
            kernel: place.sides(name, "kernel", spec.kernel.as_ref(), None)?,
            stride: place.sides(name, "stride", spec.stride.as_ref(), Some([1, 1]))?,
            padding: place.sides(name, "padding", spec.padding.as_ref(), Some([0, 0]))?,
            bias: spec.bias.unwrap_or(true),
        },
        "linear" => Op::Linear {
            units: match (&spec.units, last_units) {
                (None, Some(classes)) => classes,
                (units, _) => required("units", units.as_ref())?,
            },
            bias: spec.bias.unwrap_or(true),
        },
        "batch_norm" => match batch_norm() {
            Op::BatchNorm { epsilon, momentum } => {
                Op::BatchNorm { epsilon: spec.epsilon.unwrap_or(epsilon), momentum: spec.momentum.unwrap_or(momentum) }
            }
            _ => unreachable!("batch_norm() is a BatchNorm"),
        },
        "max_pool" | "avg_pool" => {
            let kernel = place.sides(name, "kernel", spec.kernel.as_ref(), None)?;
            let stride = place.sides(name, "stride", spec.stride.as_ref(), Some(kernel))?;
            let padding = place.sides(name, "padding", spec.padding.as_ref(), Some([0, 0]))?;
            match kind.as_str() {
                "max_pool" => Op::MaxPool { kernel, stride, padding },
                _ => Op::AvgPool { kernel, stride, padding },
            }
        }
        "dropout" => {
            Op::Dropout { prob: spec.prob.ok_or_else(|| place.error(name, "dropout needs prob; fix: add prob = 0.5"))? }
        }
        "relu" => Op::Relu,
        "global_avg_pool" => Op::GlobalAvgPool,
        "flatten" => Op::Flatten,
        _ => Op::Add,
    })
}
