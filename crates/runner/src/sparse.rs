//! Weight-pruned networks on coppice's sparse engine (`coppice-sparse`): the conversion from a
//! burn network, `coppice eval --sparse`, and the size and speed figures of summary.json.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::Device;
use coppice_models::{Classifier, InputShape, LayerKind, Network, Prunable, float_params};
use coppice_sparse::{Layer, Model, Normalization, Weights};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::Data;
use crate::export::{safetensors_bytes, transpose};
use crate::rundir::open_saved_run;
use crate::saved::load_model;

pub const SPARSE_FILE: &str = "model.sparse.safetensors";

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

/// The network as the sparse engine runs it: each weighted layer as CSR when fewer than half
/// its weights are kept, dense otherwise; BatchNorm folded into the conv before it.
pub fn sparse_model(net: &Network, normalization: Option<Normalization>) -> Result<Model> {
    let params: HashMap<String, (Vec<usize>, Vec<f32>)> = float_params(net)
        .into_iter()
        .map(|p| {
            Ok((
                p.path.clone(),
                (p.shape, p.values.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))?),
            ))
        })
        .collect::<Result<_>>()?;
    let get = |path: &str| params.get(path).ok_or_else(|| anyhow!("the network has no parameter {path}"));
    let weighted = net.prunable_layers();
    let mut next = weighted.iter();
    let mut layer = |relu: bool, conv: Option<(&Conv2d, Option<(String, f64)>)>| -> Result<Layer> {
        let spec = next.next().ok_or_else(|| anyhow!("more layers than the network describes"))?;
        let path = spec.weight_path.trim_end_matches(".weight");
        let (shape, values) = get(&spec.weight_path)?;
        let mut bias = match params.get(&format!("{path}.bias")) {
            Some((_, b)) => b.clone(),
            None => vec![0.0; if spec.kind == LayerKind::Linear { shape[1] } else { shape[0] }],
        };
        let name = spec.name.clone();
        Ok(match (spec.kind, conv) {
            (LayerKind::Linear, None) => {
                let (shape, values) = transpose(shape, values);
                Layer::Linear { name, weights: Weights::best(shape[0], shape[1], values), bias, relu }
            }
            (LayerKind::Conv2d, Some((conv, batch_norm))) => {
                let padding = conv_padding(conv).ok_or_else(|| {
                    anyhow!("{name}: the sparse engine runs stride-1 convolutions with even zero padding")
                })?;
                let mut values = values.clone();
                if let Some((bn, epsilon)) = batch_norm {
                    fold_batch_norm(&mut values, &mut bias, |p| get(&format!("{bn}.{p}")).map(|t| &t.1), epsilon)?;
                }
                let per_filter = shape[1..].iter().product();
                let weights = Weights::best(shape[0], per_filter, values);
                Layer::Conv { name, weights, bias, kernel: conv.kernel_size, padding, relu }
            }
            _ => return Err(anyhow!("{name}: the network's description and its modules disagree")),
        })
    };
    let pool = |p: &MaxPool2d| -> Result<Layer> {
        if p.padding != PaddingConfig2d::Valid || p.dilation != [1, 1] || p.ceil_mode {
            return Err(anyhow!("the sparse engine runs unpadded, undilated max-pools"));
        }
        Ok(Layer::MaxPool { kernel: p.kernel_size, stride: p.stride })
    };
    let layers = match net {
        Network::Mlp(m) => (0..m.fc.len()).map(|i| layer(i + 1 < m.fc.len(), None)).collect::<Result<Vec<_>>>()?,
        Network::LeNet5(m) => vec![
            layer(false, Some((&m.conv1, None)))?,
            pool(&m.pool)?,
            layer(false, Some((&m.conv2, None)))?,
            pool(&m.pool)?,
            layer(true, None)?,
            layer(false, None)?,
        ],
        Network::Vgg(m) => {
            let mut layers = Vec::new();
            let mut convs = m.conv.iter().zip(&m.bn).enumerate();
            for &size in &m.stage_sizes {
                for (i, (conv, bn)) in convs.by_ref().take(size) {
                    layers.push(layer(true, Some((conv, Some((format!("bn.{i}"), bn.epsilon)))))?);
                }
                layers.push(pool(&m.pool)?);
            }
            layers.push(layer(true, None)?);
            layers.push(layer(false, None)?);
            layers
        }
        Network::ResNet(_) => {
            return Err(anyhow!("the sparse engine does not run residual networks (no skip connections yet)"));
        }
    };
    let InputShape { channels, height, width } = net.architecture().input();
    Ok(Model::new([channels, height, width], normalization, layers)?)
}

/// `[height, width]` padding of a stride-1, undilated, ungrouped conv padded evenly with zeros.
fn conv_padding(conv: &Conv2d) -> Option<[usize; 2]> {
    if conv.stride != [1, 1] || conv.dilation != [1, 1] || conv.groups != 1 {
        return None;
    }
    match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => Some([top, left]),
        _ => None,
    }
}

/// BatchNorm in inference mode is `gamma * (y - mean) / sqrt(var + eps) + beta`, an affine map
/// per filter, so it moves into the filter's weights and bias; a pruned zero stays zero.
fn fold_batch_norm<'a>(
    weights: &mut [f32],
    bias: &mut [f32],
    get: impl Fn(&str) -> Result<&'a Vec<f32>>,
    epsilon: f64,
) -> Result<()> {
    let (gamma, beta, mean, var) = (get("gamma")?, get("beta")?, get("running_mean")?, get("running_var")?);
    let per_filter = weights.len() / bias.len();
    for (f, filter) in weights.chunks_mut(per_filter).enumerate() {
        let scale = gamma[f] / (var[f] + epsilon as f32).sqrt();
        filter.iter_mut().for_each(|w| *w *= scale);
        bias[f] = (bias[f] - mean[f]) * scale + beta[f];
    }
    Ok(())
}

pub fn normalization(config: &Config) -> Normalization {
    Normalization { mean: config.data.mean, std: config.data.std }
}

/// `coppice eval RUN_DIR --sparse [FILE]`: the test set through the sparse engine, next to the
/// dense evaluation of the same images.
pub struct SparseEvaluation {
    pub accuracy: f64,
    pub dense_accuracy: f64,
    /// The largest difference between a sparse and a dense logit.
    pub max_logit_difference: f32,
    pub samples: usize,
    /// Where the model came from: the file given, or the run's model converted in memory.
    pub source: String,
}

pub fn eval_sparse(run_dir: &Path, file: Option<&PathBuf>) -> Result<SparseEvaluation> {
    let _reading = open_saved_run(run_dir)?;
    let config = Config::load(&run_dir.join("config.toml"), &[])?;
    let device = Device::flex();
    let net = load_model(run_dir, &device)?;
    let own = round_trip(&sparse_model(&net, Some(normalization(&config)))?)?;
    let (model, source) = match file {
        None => (own, format!("{} converted in memory", run_dir.join("model.bpk").display())),
        Some(file) => {
            let model = Model::load(file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            check_same_architecture(&model, &own, file, run_dir)?;
            (model, file.display().to_string())
        }
    };
    let data = Data::load(&config)?;
    let (mut right, mut dense_right, mut samples, mut max_difference) = (0usize, 0usize, 0usize, 0.0f32);
    for batch in data.test_batches(config.train.eval_batch_size, &device) {
        let targets = batch.targets.into_data().try_into_vec_as::<i64>().map_err(|e| anyhow!("{e:?}"))?;
        let count = targets.len();
        let images = batch.images.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))?;
        let dense = net.forward(burn::prelude::Tensor::from_data(
            burn::tensor::TensorData::new(images.clone(), [count, model.input[0], model.input[1], model.input[2]]),
            &device,
        ));
        let dense = dense.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))?;
        let sparse = model.forward(&images, count)?;
        let classes = model.classes();
        for ((target, s), d) in targets.iter().zip(sparse.chunks(classes)).zip(dense.chunks(classes)) {
            right += usize::from(argmax(s) as i64 == *target);
            dense_right += usize::from(argmax(d) as i64 == *target);
        }
        max_difference = sparse.iter().zip(&dense).map(|(s, d)| (s - d).abs()).fold(max_difference, f32::max);
        samples += count;
    }
    let fraction = |n: usize| n as f64 / samples.max(1) as f64;
    Ok(SparseEvaluation {
        accuracy: fraction(right),
        dense_accuracy: fraction(dense_right),
        max_logit_difference: max_difference,
        samples,
        source,
    })
}

/// Through the file's bytes and back, so that what is evaluated is what the file holds.
fn round_trip(model: &Model) -> Result<Model> {
    Ok(Model::from_bytes(&model.to_bytes())?)
}

fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

/// A file of another network would give numbers that mean nothing for this run.
fn check_same_architecture(model: &Model, own: &Model, file: &Path, run_dir: &Path) -> Result<()> {
    let describe = |m: &Model| -> Result<String> {
        let shapes = m.shapes()?;
        let names: Vec<String> = m.layers.iter().map(Layer::name).collect();
        Ok(names.iter().zip(&shapes[1..]).map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join(", "))
    };
    let (theirs, ours) = (describe(model)?, describe(own)?);
    if model.input != own.input || theirs != ours {
        return Err(anyhow!(
            "{}: holds another network ({:?} in: {theirs}) than {} ({:?} in: {ours}); fix: export this run with `coppice export {} --format sparse` and pass that file",
            file.display(),
            model.input,
            run_dir.display(),
            own.input,
            run_dir.display()
        ));
    }
    Ok(())
}

/// The file sizes of both exports and the engine's speedup over dense flex at batch 1 and 1000;
/// `None` for a network the engine does not run.
pub fn figures(net: &Network, config: &Config) -> Result<Option<SparseFigures>> {
    if matches!(net, Network::ResNet(_)) {
        return Ok(None);
    }
    let flex = Device::flex();
    let net = net.clone().to_device(&flex);
    let model = sparse_model(&net, Some(normalization(config)))?;
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    let speedup = |batch: usize| -> Result<f64> {
        let times = crate::sparse_bench::median_seconds(&net, &[&model], batch, 11.max(1001 / batch.max(1)))?;
        Ok(times[0] / times[1])
    };
    Ok(Some(SparseFigures {
        bytes: model.to_bytes().len(),
        dense_bytes: safetensors_bytes(&net, &architecture)?.len(),
        speedup_batch1: speedup(1)?,
        speedup_batch1000: speedup(1000)?,
    }))
}

pub fn write_export(net: &Network, config: &Config, out: &Path) -> Result<PathBuf> {
    let path = out.join(SPARSE_FILE);
    let model = sparse_model(net, Some(normalization(config)))?;
    crate::rundir::write_atomic(&path, &model.to_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
}
