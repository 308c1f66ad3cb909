//! `coppice eval RUN_DIR`: a saved model on its run's test set; `coppice eval CONFIG`: the
//! network a config starts from (`model.weights`, `model.init`) on the config's test set;
//! `coppice eval RUN_DIR --sparse [FILE]`: the run's model through the sparse engine.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use burn::prelude::Device;
use coppice_data::ImageDataset;
use coppice_models::Classifier;
use coppice_models::Network;
use coppice_sparse::{Layer, Model};
use coppice_train::{Confusion, Evaluation, evaluate_confusion};

use crate::backend::BackendName;
use crate::config::Config;
use crate::confusion::{CONFUSION_CHART, CONFUSION_FILE, svg, write_csv};
use crate::data::Data;
use crate::experiment::configured_network;
use crate::inference::sparse::{normalization, sparse_model};
use crate::rundir::dir::open_saved_run;
use crate::rundir::dir::write_atomic;
use crate::rundir::integrity;
use crate::rundir::saved::load_model;

/// A test evaluation with its per-class counts.
pub struct ClassEvaluation {
    pub evaluation: Evaluation,
    pub confusion: Confusion,
    pub class_names: Vec<String>,
    /// `confusion.csv`, written into the run directory (not for a config's weights).
    pub csv: Option<PathBuf>,
}

/// The model of a run directory, or the weights a config file names, on the test set.
pub fn eval(path: &Path, backend: Option<BackendName>) -> Result<ClassEvaluation> {
    if path.is_file() {
        return eval_config(path, backend);
    }
    let _reading = open_saved_run(path)?;
    let mut config = Config::load(&path.join("config.toml"), &[])?;
    if let Some(backend) = backend {
        config.backend = backend;
    }
    let device = config.backend.device()?;
    let net = load_model(path, &device)?;
    let data = Data::load(&config)?;
    let mut result = evaluate_classes(&net, &data, &config, &device)?;
    let csv = path.join(CONFUSION_FILE);
    write_csv(&csv, &result.confusion, &result.class_names)?;
    write_atomic(&path.join(CONFUSION_CHART), svg(&result.confusion, &result.class_names).as_bytes())?;
    result.csv = Some(csv);
    Ok(result)
}

fn evaluate_classes(net: &Network, data: &Data, config: &Config, device: &Device) -> Result<ClassEvaluation> {
    let test = ImageDataset::new(data.test.clone());
    let batch_size = config.train.eval_batch_size;
    let (evaluation, confusion) = evaluate_confusion(net, test, data.batcher.clone(), batch_size, device)?;
    Ok(ClassEvaluation { evaluation, confusion, class_names: data.class_names.clone(), csv: None })
}

fn eval_config(config_path: &Path, backend: Option<BackendName>) -> Result<ClassEvaluation> {
    let mut config = Config::load(config_path, &[])?;
    if config.model.weights.is_none() && config.model.init.is_none() {
        return Err(anyhow!(
            "{}: model: no weights to evaluate; fix: set model.weights (a .safetensors, .pt or .pth file), or pass a run directory",
            config_path.display()
        ));
    }
    if let Some(backend) = backend {
        config.backend = backend;
    }
    let device = config.backend.device()?;
    let data = Data::load(&config)?;
    let net = configured_network(&config, config_path, &data, &device)?;
    evaluate_classes(&net, &data, &config, &device)
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
    let data = Data::load(&config)?;
    let own = round_trip(&sparse_model(&net, Some(normalization(&data.batcher.norm)))?)?;
    let (model, source) = match file {
        None => (own, format!("{} converted in memory", run_dir.join("model.bpk").display())),
        Some(file) => {
            let model = Model::from_bytes(&read_export(file)?).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            check_same_architecture(&model, &own, file, run_dir)?;
            (model, file.display().to_string())
        }
    };
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

/// An exported file's bytes, checked against the `SHA256SUMS` that `export` wrote beside it.
fn read_export(file: &Path) -> Result<Vec<u8>> {
    let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        anyhow!("{}: not a file name; fix: pass the file that `coppice export --format sparse` wrote", file.display())
    })?;
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    integrity::read(dir, name)
}

/// Through the file's bytes and back, so that what is evaluated is what the file holds.
fn round_trip(model: &Model) -> Result<Model> {
    Ok(Model::from_bytes(&model.to_bytes())?)
}

fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

/// A file of another network would give numbers that mean nothing for this run.
pub(crate) fn check_same_architecture(model: &Model, own: &Model, file: &Path, run_dir: &Path) -> Result<()> {
    let describe = |m: &Model| -> Result<String> {
        let shapes = m.shapes()?;
        let names: Vec<String> = m.layers().map(Layer::name).collect();
        Ok(names.iter().zip(&shapes[1..]).map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join(", "))
    };
    let (theirs, ours) = (describe(model)?, describe(own)?);
    if model.input != own.input || theirs != ours {
        return Err(anyhow!(
            "{}: holds another network ({:?} in: {theirs}) than {} ({:?} in: {ours}); fix: export this run with `coppice export {} --format sparse` (or `compressed`) and pass that file",
            file.display(),
            model.input,
            run_dir.display(),
            own.input,
            run_dir.display()
        ));
    }
    Ok(())
}
