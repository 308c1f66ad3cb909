//! `coppice sensitivity CONFIG`: each layer pruned alone at every level.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use coppice_data::ImageDataset;
use coppice_models::{Network, Prunable};
use coppice_prune::{PruneError, SensitivityPoint, sensitivity, tolerated_sparsity};
use coppice_train::{Progress, evaluate};

use crate::experiment::{Experiment, RunOptions};
use crate::plot::{Series, XAxis, accuracy_chart};
use crate::progress::Steps;
use crate::rundir::checkpoint::Checkpoint;
use crate::rundir::dir::{discard_if_unused, write_atomic};
use crate::rundir::saved::save_model;
use crate::rundir::tables::{MetricsLog, sensitivity_csv};

/// `coppice sensitivity CONFIG`: train dense (or load `prune.from`), then prune each layer
/// alone at every level and evaluate on the validation split without retraining. Writes
/// `sensitivity.csv`, `sensitivity.svg` and the dense model into a run directory.
pub fn sensitivity_run(
    config_path: &Path,
    overrides: &[String],
    options: &RunOptions,
    levels: &[f64],
) -> Result<PathBuf> {
    coppice_prune::check_levels(levels).map_err(|e| anyhow!("--levels: {e}; fix: e.g. --levels 0.5,0.9"))?;
    let (experiment, start_net) = Experiment::start(config_path, overrides, options)?;
    discard_if_unused(&experiment.run_dir, sensitivity_experiment(&experiment, start_net, options, levels))
}

pub fn sensitivity_experiment(
    experiment: &Experiment,
    start_net: Network,
    options: &RunOptions,
    levels: &[f64],
) -> Result<PathBuf> {
    let Experiment { config, data, device, run_dir, .. } = experiment;
    let mut metrics = MetricsLog { path: run_dir.join("metrics.csv"), rows: Vec::new() };
    let net = experiment.dense(start_net, options, &mut metrics, "dense", Vec::new())?;
    save_model(&net, run_dir)?;
    Checkpoint::finished(run_dir);
    let valid = ImageDataset::new(data.valid.clone());
    let evaluations = 1 + net.prunable_layers().len() * levels.len();
    let steps = Steps::start("sensitivity", evaluations, options.progress == Progress::Lines);
    let mut evaluate_valid = |n: &Network| {
        evaluate(n, valid.clone(), data.batcher.clone(), config.train.eval_batch_size, device).map_err(PruneError::from)
    };
    let mut show = |p: &SensitivityPoint| {
        let what = if p.sparsity == 0.0 { "unpruned".to_string() } else { format!("{} at {}", p.layer, p.sparsity) };
        steps.step(&format!("{what}: valid accuracy {:.2}%", p.accuracy * 100.0));
    };
    let points = sensitivity(&net, levels, device, &mut evaluate_valid, &mut show)?;
    write_atomic(&run_dir.join("sensitivity.csv"), sensitivity_csv(&points).as_bytes())?;
    let title = format!("{}: each layer pruned alone (validation accuracy)", config.name);
    let series: Vec<Series> = net
        .prunable_layers()
        .into_iter()
        .map(|l| Series {
            points: points.iter().filter(|p| p.layer == l.name).map(|p| (p.sparsity, p.accuracy)).collect(),
            label: l.name,
        })
        .collect();
    let svg = accuracy_chart(
        &title,
        ("sparsity of the layer (others dense)", XAxis::Linear),
        "accuracy without retraining",
        &series,
    );
    write_atomic(&run_dir.join("sensitivity.svg"), svg.as_bytes())?;
    for (tolerance, label) in [(0.005, "0.5 point"), (0.01, "1 point")] {
        let best = tolerated_sparsity(&points, tolerance);
        let line: Vec<String> = net
            .prunable_layers()
            .iter()
            .map(|l| format!("{} {:.0}%", l.name, best.get(&l.name).copied().unwrap_or(0.0) * 100.0))
            .collect();
        println!("largest sparsity within {label} of dense: {}", line.join(", "));
    }
    Ok(run_dir.clone())
}
