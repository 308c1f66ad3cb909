//! `coppice eval RUN_DIR`: a saved model on its run's test set; `coppice eval CONFIG`: the
//! network a config starts from (`model.weights`, `model.init`) on the config's test set.

use std::path::Path;

use anyhow::{Result, anyhow};
use coppice_train::Evaluation;

use crate::backend::BackendName;
use crate::config::Config;
use crate::data::{Data, evaluate_test};
use crate::experiment::configured_network;
use crate::rundir::open_saved_run;
use crate::saved::load_model;

/// The model of a run directory, or the weights a config file names, on the test set.
pub fn eval(path: &Path, backend: Option<BackendName>) -> Result<Evaluation> {
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
    evaluate_test(&net, &data, &config, &device)
}

fn eval_config(config_path: &Path, backend: Option<BackendName>) -> Result<Evaluation> {
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
    evaluate_test(&net, &data, &config, &device)
}
