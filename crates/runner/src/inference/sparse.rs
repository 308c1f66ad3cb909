//! Weight-pruned networks on coppice's sparse engine (`coppice-sparse`): the conversion from a
//! burn network, and the size and speed figures of summary.json.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use burn::module::Module;
use burn::prelude::Device;
use coppice_models::{InputShape, Network, Op, Source, float_params};
use coppice_sparse::{Layer, LayerSize, Model, Node, Normalization, Weights};
use serde::{Deserialize, Serialize};

use crate::inference::latency::median_seconds;
use crate::pytorch::{data_metadata, safetensors_bytes, transpose};

/// summary.json's `sparse`: what the sparse file saves and how much faster the engine runs the
/// network than burn's flex backend runs it dense, measured in the process that wrote the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparseFigures {
    /// Size of `export --format sparse`'s file.
    pub bytes: usize,
    /// Size of `export --format safetensors`'s file (every weight, zeros included).
    pub dense_bytes: usize,
    /// Dense flex time / sparse engine time, median of alternating passes.
    pub speedup_batch1: f64,
    pub speedup_batch1000: f64,
}

/// summary.json's `compressed`, and what `export --format compressed` prints: the bytes each
/// stage of Deep Compression leaves, per layer (weights only) and for whole files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressedFigures {
    /// The compressed file.
    pub bytes: usize,
    /// The sparse file of the same network.
    pub sparse_bytes: usize,
    /// The dense safetensors export.
    pub dense_bytes: usize,
    pub layers: Vec<LayerSize>,
}

impl CompressedFigures {
    /// Per layer and in total: dense, after pruning, after quantization, after coding.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "layer      weights  kept      bits  gap  dense B    pruned B   quantized B  coded B    (ratio to dense)\n",
        );
        let mut line = |name: &str, weights: usize, kept: usize, bits: String, gap: String, sizes: [usize; 4]| {
            let ratio = sizes[0] as f64 / sizes[3].max(1) as f64;
            out.push_str(&format!(
                "{name:<10} {weights:<8} {kept:<9} {bits:<5} {gap:<4} {:<10} {:<10} {:<12} {:<10} ({ratio:.1}x)\n",
                sizes[0], sizes[1], sizes[2], sizes[3]
            ));
        };
        for l in &self.layers {
            let sizes = [l.dense_bytes, l.sparse_bytes, l.quantized_bytes, l.coded_bytes];
            line(&l.name, l.weights, l.nonzero, l.bits.to_string(), l.gap_bits.to_string(), sizes);
        }
        let sum = |f: fn(&LayerSize) -> usize| self.layers.iter().map(f).sum::<usize>();
        let sizes =
            [sum(|l| l.dense_bytes), sum(|l| l.sparse_bytes), sum(|l| l.quantized_bytes), sum(|l| l.coded_bytes)];
        line("weights", sum(|l| l.weights), sum(|l| l.nonzero), "-".into(), "-".into(), sizes);
        out.push_str(&format!(
            "files: dense safetensors {} B, sparse {} B ({:.1}x), compressed {} B ({:.1}x)\n",
            self.dense_bytes,
            self.sparse_bytes,
            self.dense_bytes as f64 / self.sparse_bytes.max(1) as f64,
            self.bytes,
            self.dense_bytes as f64 / self.bytes.max(1) as f64
        ));
        out
    }
}

/// The compressed file of a quantized network and its figures.
pub fn compressed_figures(
    net: &Network,
    norm: &coppice_data::Normalization,
    classes: &[String],
) -> Result<(Vec<u8>, CompressedFigures)> {
    let model = sparse_model(net, Some(normalization(norm)))?.with_classes(classes.to_vec())?;
    let (bytes, layers) = model.to_compressed_bytes()?;
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    let figures = CompressedFigures {
        bytes: bytes.len(),
        sparse_bytes: model.to_bytes().len(),
        dense_bytes: safetensors_bytes(net, &architecture, &data_metadata(classes, norm)?)?.len(),
        layers,
    };
    Ok((bytes, figures))
}

/// The network as the sparse engine runs it: each weighted layer as CSR when fewer than half
/// its weights are kept, dense otherwise; a BatchNorm folded into the conv before it (or kept as
/// a per-channel scale and shift), a ReLU into the layer before it; flatten and dropout cost
/// nothing at inference.
pub fn sparse_model(net: &Network, normalization: Option<Normalization>) -> Result<Model> {
    let mut params: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for p in float_params(net) {
        let values = p.values.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{}: {e:?}", p.path))?;
        params.insert(p.path, (p.shape, values));
    }
    let get = |path: &str| params.get(path).ok_or_else(|| anyhow!("the network has no parameter {path}"));
    let graph = net.graph();
    let nodes = &graph.architecture.layers;
    let readers = graph.readers();
    let sole_reader = |i: usize, op: fn(&Op) -> bool| match readers[i][..] {
        [r] if op(&nodes[r].op) => Some(r),
        _ => None,
    };
    // The engine's value of each layer's output: 0 is the image, k the output of its node k - 1.
    let mut value: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut engine: Vec<Node> = Vec::new();
    let from = |s: Source, value: &[Option<usize>]| match s {
        Source::Image => 0,
        Source::Layer(j) => value[j].expect("layers run in order"),
    };
    for (i, node) in nodes.iter().enumerate() {
        if value[i].is_some() {
            continue; // folded into the layer before
        }
        let inputs: Vec<usize> = graph.reads[i].iter().map(|&s| from(s, &value)).collect();
        let name = node.name.clone();
        let mut last = i;
        let relu_after = |last: &mut usize| match sole_reader(*last, |op| matches!(op, Op::Relu)) {
            Some(r) => {
                *last = r;
                true
            }
            None => false,
        };
        let layer = match &node.op {
            Op::Linear { units, .. } => {
                let (shape, values) = get(&format!("{name}.weight"))?;
                let bias = params.get(&format!("{name}.bias")).map_or_else(|| vec![0.0; *units], |b| b.1.clone());
                let (shape, values) = transpose(shape, values);
                let relu = relu_after(&mut last);
                Layer::Linear { name, weights: Weights::best(shape[0], shape[1], values), bias, relu }
            }
            Op::Conv { filters, kernel, stride, padding, .. } => {
                let (shape, values) = get(&format!("{name}.weight"))?;
                let mut values = values.clone();
                let mut bias = params.get(&format!("{name}.bias")).map_or_else(|| vec![0.0; *filters], |b| b.1.clone());
                if let Some(norm) = sole_reader(i, |op| matches!(op, Op::BatchNorm { .. })) {
                    let Op::BatchNorm { epsilon, .. } = nodes[norm].op else { unreachable!("matched a norm") };
                    let (scale, shift) = norm_affine(&nodes[norm].name, epsilon, &get)?;
                    let per_filter = values.len() / filters;
                    for (f, filter) in values.chunks_mut(per_filter).enumerate() {
                        filter.iter_mut().for_each(|w| *w *= scale[f]);
                        bias[f] = bias[f] * scale[f] + shift[f];
                    }
                    value[norm] = Some(engine.len() + 1);
                    last = norm;
                }
                let relu = relu_after(&mut last);
                let weights = Weights::best(shape[0], shape[1..].iter().product(), values);
                Layer::Conv { name, weights, bias, kernel: *kernel, stride: *stride, padding: *padding, relu }
            }
            Op::BatchNorm { epsilon, .. } => {
                // The engine keeps a flattened image as channels of pixels, so a norm per
                // flattened value has no channel to scale.
                let flattened_image = match graph.reads[i][0] {
                    Source::Layer(j) => nodes[j].op == Op::Flatten && graph.shape_of(graph.reads[j][0]).pixels() > 1,
                    Source::Image => false,
                };
                if flattened_image {
                    return Err(anyhow!("{name}: the sparse engine does not run a BatchNorm over flattened pixels"));
                }
                let (scale, shift) = norm_affine(&name, *epsilon, &get)?;
                let relu = relu_after(&mut last);
                Layer::Affine { name, scale, shift, relu }
            }
            Op::Relu => Layer::Relu,
            Op::MaxPool { kernel, stride, padding } => {
                Layer::MaxPool { kernel: *kernel, stride: *stride, padding: *padding }
            }
            Op::AvgPool { kernel, stride, padding } => {
                Layer::AvgPool { kernel: *kernel, stride: *stride, padding: *padding }
            }
            Op::GlobalAvgPool => Layer::GlobalAvgPool,
            Op::Add => {
                let relu = relu_after(&mut last);
                Layer::Add { relu }
            }
            // The engine's layout of an image is already its flattening; dropout is off.
            Op::Flatten | Op::Dropout { .. } => {
                value[i] = Some(inputs[0]);
                continue;
            }
        };
        engine.push(Node { layer, from: inputs });
        value[i] = Some(engine.len());
        value[last] = Some(engine.len());
    }
    let InputShape { channels, height, width } = net.architecture().input();
    Ok(Model::graph([channels, height, width], normalization, engine)?)
}

/// BatchNorm in inference mode is `gamma * (y - mean) / sqrt(var + eps) + beta`: a scale and a
/// shift per channel, which fold into the conv before it (a pruned zero stays zero).
fn norm_affine<'a>(
    name: &str,
    epsilon: f64,
    get: &impl Fn(&str) -> Result<&'a (Vec<usize>, Vec<f32>)>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let tensor = |t: &str| get(&format!("{name}.{t}")).map(|p| p.1.clone());
    let (gamma, beta, mean, var) = (tensor("gamma")?, tensor("beta")?, tensor("running_mean")?, tensor("running_var")?);
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + epsilon as f32).sqrt()).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Ok((scale, shift))
}

/// The sparse file's record of what the images were normalized with.
pub fn normalization(norm: &coppice_data::Normalization) -> Normalization {
    Normalization { mean: norm.mean.clone(), std: norm.std.clone() }
}

/// The file sizes of both exports and the engine's speedup over dense flex at batch 1 and 1000;
/// `None` for a network the engine does not run. `norm` and `classes` go into both files as the
/// exports write them, so that the sizes are the files'.
pub fn figures(net: &Network, norm: &coppice_data::Normalization, classes: &[String]) -> Result<Option<SparseFigures>> {
    let flex = Device::flex();
    let net = net.clone().to_device(&flex);
    let model = sparse_model(&net, Some(normalization(norm)))?.with_classes(classes.to_vec())?;
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    let speedup = |batch: usize| -> Result<f64> {
        let times = median_seconds(&net, &[&model], batch, 11.max(1001 / batch.max(1)))?;
        Ok(times[0] / times[1])
    };
    Ok(Some(SparseFigures {
        bytes: model.to_bytes().len(),
        dense_bytes: safetensors_bytes(&net, &architecture, &data_metadata(classes, norm)?)?.len(),
        speedup_batch1: speedup(1)?,
        speedup_batch1000: speedup(1000)?,
    }))
}
