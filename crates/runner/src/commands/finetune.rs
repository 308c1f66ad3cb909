//! `coppice finetune RUN_DIR`: a saved model trained further, keeping its zeros.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use coppice_data::ImageDataset;
use coppice_models::{Network, Prunable};
use coppice_prune::{MaskSet, sparsity_report};
use coppice_train::{Callbacks, fit};

use crate::config::Config;
use crate::data::evaluate_test;
use crate::experiment::{Experiment, RunOptions};
use crate::rundir::dir::{discard_if_unused, open_saved_run};
use crate::rundir::saved::save_model;
use crate::rundir::summary::Summary;
use crate::rundir::tables::MetricsLog;

/// `coppice finetune RUN_DIR`: trains a saved model further with its run's config (and
/// overrides), keeping its smaller architecture and its zeros: every prunable weight that is
/// zero gets a mask. Writes a new run directory that names its parent.
pub fn finetune(
    parent: &Path,
    overrides: &[String],
    epochs: Option<usize>,
    lr: Option<f64>,
    options: &RunOptions,
) -> Result<PathBuf> {
    let started = Instant::now();
    if epochs == Some(0) {
        return Err(anyhow!("--epochs 0: fine-tuning needs at least one epoch; fix: --epochs 1 or more"));
    }
    if let Some(lr) = lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err(anyhow!("--lr {lr}: the learning rate must be finite and > 0; fix: e.g. --lr 0.01"));
    }
    drop(open_saved_run(parent)?);
    let parent_config = parent.join("config.toml");
    let name = Config::load(&parent_config, &[])
        .with_context(|| format!("{}: fix: pass a run directory written by `coppice run`", parent.display()))?
        .name;
    let mut sets = vec![format!("name={name}-finetune")];
    sets.extend(epochs.map(|e| format!("train.epochs={e}")));
    sets.extend(lr.map(|lr| format!("train.lr={lr}")));
    sets.extend(overrides.iter().cloned());
    let options = RunOptions {
        from: Some(parent.to_path_buf()),
        backend: options.backend,
        out: options.out.clone(),
        run_dir: None,
        progress: options.progress,
    };
    let (experiment, net) = Experiment::start(&parent_config, &sets, &options)?;
    discard_if_unused(&experiment.run_dir, finetune_experiment(&experiment, net, parent, &options, started))
}

pub fn finetune_experiment(
    experiment: &Experiment,
    net: Network,
    parent: &Path,
    options: &RunOptions,
    started: Instant,
) -> Result<PathBuf> {
    let Experiment { config, data, device, run_dir, .. } = experiment;
    let weights: Vec<String> = net.prunable_layers().into_iter().map(|l| l.weight_path).collect();
    let masks = MaskSet::from_zeros(&net, &weights, device);
    let setup = experiment.train_setup(options, "finetune");
    let train = data.train_dataset();
    let valid = ImageDataset::new(data.valid.clone());
    let callbacks = Callbacks::new(vec![Box::new(masks)]);
    let outcome = fit(net, train, valid, data.batcher.clone(), &setup, &callbacks)?;
    let mut metrics = MetricsLog { path: run_dir.join("metrics.csv"), rows: Vec::new() };
    metrics.extend(0, &outcome.epochs)?;
    let test = evaluate_test(&outcome.net, data, config, device)?;
    save_model(&outcome.net, run_dir)?;
    let report = sparsity_report(&outcome.net);
    let summary = Summary {
        sparsity: Some(report.sparsity),
        compression_ratio: Some(report.compression_ratio),
        parent: Some(parent.display().to_string()),
        ..Summary::basic(config, &outcome.net, &test, &metrics, data, device, started)
    };
    summary.write(run_dir)?;
    summary.print();
    Ok(run_dir.clone())
}
