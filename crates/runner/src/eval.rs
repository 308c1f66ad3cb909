//! `coppice eval RUN_DIR`: a saved model on its run's test set.

use std::path::Path;

use anyhow::Result;
use coppice_train::Evaluation;

use crate::backend::BackendName;
use crate::config::Config;
use crate::data::{Data, evaluate_test};
use crate::rundir::open_saved_run;
use crate::saved::load_model;

/// `coppice eval RUN_DIR`: the saved model on the test set of the run's own config.
pub fn eval(run_dir: &Path, backend: Option<BackendName>) -> Result<Evaluation> {
    let _reading = open_saved_run(run_dir)?;
    let mut config = Config::load(&run_dir.join("config.toml"), &[])?;
    if let Some(backend) = backend {
        config.backend = backend;
    }
    let device = config.backend.device()?;
    let net = load_model(run_dir, &device)?;
    let data = Data::load(&config)?;
    evaluate_test(&net, &data, &config, &device)
}
