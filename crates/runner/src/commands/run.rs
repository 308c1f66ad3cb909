//! `coppice run` and `coppice run --resume`: a config from dense training through the pruning
//! rounds to its run directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use coppice_data::ImageDataset;
use coppice_models::{Network, Prunable};
use coppice_prune::{
    Completed, DEFAULT_LEVELS, History, PruneConfig, PruneContext, PruneError, Pruning, RoundObserver, RoundsOutcome,
    TargetSource, run_rounds,
};
use coppice_train::{EpochRecord, Progress, evaluate, resumable_epochs};

use crate::config::Config;
use crate::data::evaluate_test;
use crate::experiment::{Experiment, RunOptions};
use crate::inference::latency::compare_with_dense;
use crate::inference::sparse;
use crate::progress::Steps;
use crate::rundir::checkpoint::{Checkpoint, EpochJournal};
use crate::rundir::dir::{FAILURE_FILE, create_dir_durable, discard_if_unused, write_atomic};
use crate::rundir::lock::{Access, lock};
use crate::rundir::saved::{load_model, save_model};
use crate::rundir::summary::{QuantizeSummary, ScratchSummary, Summary, report_md};
use crate::rundir::tables::{MetricsLog, attempts_csv, round_line, rounds_csv};

/// Runs a config end to end and returns the run directory.
pub fn run(config_path: &Path, overrides: &[String], options: &RunOptions) -> Result<PathBuf> {
    let (experiment, start_net) = Experiment::start(config_path, overrides, options)?;
    let result = run_experiment(&experiment, start_net, None, Vec::new(), options);
    discard_if_unused(&experiment.run_dir, result)
}

/// `coppice run CONFIG --run-dir DIR`, which may be run again and again: a new run in DIR; or,
/// when DIR holds this config's run, its resumption, or nothing once it has finished. A job that
/// a scheduler restarts, or a sweep point run a second time, goes on where it stopped.
pub fn run_in(config_path: &Path, overrides: &[String], options: &RunOptions, dir: &Path) -> Result<PathBuf> {
    let _ = std::fs::remove_file(dir.join(FAILURE_FILE));
    let result = match dir.join("summary.json").is_file() || has_trained(dir) {
        true => continue_in(config_path, overrides, options, dir),
        false => run(config_path, overrides, options),
    };
    if let Err(error) = &result {
        // What `sweep --collect` reports for this run; a directory that `run` discarded gets
        // one of its own.
        let _ = create_dir_durable(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| write_atomic(&dir.join(FAILURE_FILE), format!("{error:#}\n").as_bytes()));
    }
    result
}

/// [`run_in`] for a DIR that holds a run: this config's, finished or to resume.
fn continue_in(config_path: &Path, overrides: &[String], options: &RunOptions, dir: &Path) -> Result<PathBuf> {
    let mut wanted = Config::load(config_path, overrides)?;
    if let Some(backend) = options.backend {
        wanted.backend = backend;
    }
    let recorded = Config::load(&dir.join("config.toml"), &[])
        .with_context(|| format!("{}: fix: pass a run directory written by `coppice run`", dir.display()))?;
    if wanted != recorded {
        return Err(anyhow!(
            "{}: --run-dir holds a run of another config (or other --set values); fix: give each run its own --run-dir",
            dir.display()
        ));
    }
    if dir.join("summary.json").is_file() {
        println!("{} finished earlier; nothing to do", dir.display());
        return Ok(dir.to_path_buf());
    }
    resume(dir, &[], options)
}

/// Whether a run directory holds training to resume from: a config.toml alone could be any
/// folder of configs, a run that started training has more.
fn has_trained(dir: &Path) -> bool {
    dir.join("train").is_dir() || Checkpoint::dir(dir).is_dir()
}

/// `coppice run --resume RUN_DIR`: goes on after the last round (or layer-wise layer) the
/// interrupted run completed, or, in dense training, after its last completed epoch. What the
/// run recorded stays, once.
pub fn resume(run_dir: &Path, overrides: &[String], options: &RunOptions) -> Result<PathBuf> {
    if !run_dir.is_dir() {
        return Err(anyhow!(
            "{}: no such run directory; fix: pass the directory that `coppice run` printed",
            run_dir.display()
        ));
    }
    let lock = lock(run_dir, Access::Write)?;
    if run_dir.join("summary.json").is_file() {
        return Err(anyhow!(
            "{}: this run finished (it has summary.json); nothing to resume; fix: start a new one with `coppice run CONFIG`",
            run_dir.display()
        ));
    }
    if !has_trained(run_dir) {
        return Err(anyhow!(
            "{}: not an interrupted coppice run (it has neither train/ nor checkpoints/); fix: pass the run directory `coppice run` printed, or start again with `coppice run CONFIG`",
            run_dir.display()
        ));
    }
    let (experiment, start_net) = Experiment::reopen(run_dir, lock, overrides, options)?;
    let progress = Checkpoint::read(run_dir)?;
    let done = match &progress {
        Some(p) => {
            println!("resuming after round {} of {}", p.last_round(), run_dir.display());
            Vec::new()
        }
        None => {
            let done = EpochJournal::read(run_dir)?;
            let epochs = experiment.config.train.epochs;
            match resumable_epochs(&run_dir.join("train"), &done, epochs) {
                0 => println!("{} completed no epoch; training from the start", run_dir.display()),
                epoch => println!("resuming after epoch {epoch} of {}", run_dir.display()),
            }
            done
        }
    };
    run_experiment(&experiment, start_net, progress, done, options)
}

/// A run from its start, or from where an interrupted one stopped: after the rounds in
/// `progress`, or else after the dense epochs in `done`.
pub fn run_experiment(
    experiment: &Experiment,
    start_net: Network,
    progress: Option<Checkpoint>,
    done: Vec<EpochRecord>,
    options: &RunOptions,
) -> Result<PathBuf> {
    let Experiment { config, data, device, run_dir, .. } = experiment;
    let earlier_seconds = match &progress {
        Some(p) => p.seconds,
        None => done.iter().map(|e| e.seconds).sum(),
    };
    let earlier = Duration::from_secs_f64(earlier_seconds);
    let started = Instant::now().checked_sub(earlier).unwrap_or_else(Instant::now);
    let prune = config.prune.clone();
    let mut metrics = MetricsLog { path: run_dir.join("metrics.csv"), rows: Vec::new() };
    // Deep copies: burn clones share BatchNorm running statistics, which training rewrites.
    let initial = start_net.deep_clone();
    let (net, dense_net, completed) = match progress {
        Some(progress) => {
            let net = load_model(&Checkpoint::model_dir(run_dir, progress.last_round()), device)?;
            let dense = load_model(&Checkpoint::model_dir(run_dir, 0), device)?;
            metrics.rows = progress.metrics;
            metrics.extend(0, &[])?;
            write_atomic(&run_dir.join("rounds.csv"), rounds_csv(&progress.rounds).as_bytes())?;
            let history = History { rounds: progress.rounds, attempts: progress.attempts };
            (net, dense.deep_clone(), Some(Completed { history, dense }))
        }
        None => {
            let label = if prune.is_some() { "dense" } else { "train" };
            let net = experiment.dense(start_net, options, &mut metrics, label, done)?;
            let dense_net = net.deep_clone();
            (net, dense_net, None)
        }
    };
    let (net, test, pruning) = match &prune {
        None => {
            let test = evaluate_test(&net, data, config, device)?;
            (net, test, None)
        }
        Some(prune) => {
            let mut writer = RunWriter { run_dir, metrics: &mut metrics, started, total: 0 };
            let outcome = prune_rounds(net, prune, experiment, initial, completed, options, &mut writer)?;
            let rounds = outcome.history.rounds;
            let test = rounds.last().expect("round 0 is always recorded").test;
            (outcome.net, test, Some(rounds))
        }
    };
    save_model(&net, run_dir)?;
    let last = pruning.as_ref().map(|rounds| rounds.last().expect("round 0 exists").sparsity.clone());
    // The quantization stage's record, or the train-from-scratch control's, follows the pruning
    // rounds'.
    let quantized = pruning.as_ref().and_then(|rounds| QuantizeSummary::of(rounds.last()?));
    let scratch = pruning.as_deref().and_then(ScratchSummary::of);
    let stages = usize::from(quantized.is_some() || scratch.is_some());
    let pruning_rounds = pruning.as_ref().map(|rounds| &rounds[..rounds.len() - stages]);
    let summary = Summary {
        sparsity: last.as_ref().map(|r| r.sparsity),
        compression_ratio: last.as_ref().map(|r| r.compression_ratio),
        dense_test_accuracy: pruning.as_ref().map(|rounds| rounds[0].test.accuracy),
        pruned_test_accuracy: pruning_rounds.and_then(|rounds| rounds.last()?.pruned).map(|e| e.accuracy),
        rounds: pruning_rounds.map(|rounds| rounds.len() - 1),
        quantize: quantized,
        scratch,
        dense: prune
            .as_ref()
            .filter(|p| p.removes_units())
            .map(|_| compare_with_dense(&dense_net, &net, data.input(), device)),
        sparse: match &prune {
            // Weight pruning, on its own or layer by layer, leaves zeros for the engine to skip.
            // The run's own results are saved already; a failed measurement must not fail it.
            Some(p) if !p.removes_units() => sparse::figures(&net, &data.batcher.norm, &data.class_names)
                .unwrap_or_else(|e| {
                    eprintln!("summary.json without `sparse`: the sparse engine's figures failed: {e:#}");
                    None
                }),
            _ => None,
        },
        compressed: match &config.quantize {
            Some(_) => sparse::compressed_figures(&net, &data.batcher.norm, &data.class_names)
                .map(|(_, figures)| Some(figures))
                .unwrap_or_else(|e| {
                    eprintln!("summary.json without `compressed`: coding the network failed: {e:#}");
                    None
                }),
            None => None,
        },
        ..Summary::basic(config, &net, &test, &metrics, data, device, started)
    };
    summary.write(run_dir)?;
    if let Some(rounds) = &pruning {
        write_atomic(&run_dir.join("report.md"), report_md(config, &summary, rounds).as_bytes())?;
    }
    Checkpoint::finished(run_dir);
    summary.print();
    Ok(run_dir.clone())
}

/// Builds the config's pruning method for the dense network and runs its rounds, after
/// `completed` when resuming.
fn prune_rounds(
    net: Network,
    prune: &PruneConfig,
    experiment: &Experiment,
    initial: Network,
    completed: Option<Completed>,
    options: &RunOptions,
    writer: &mut RunWriter,
) -> Result<RoundsOutcome> {
    let Experiment { config, data, device, run_dir, .. } = experiment;
    let valid = ImageDataset::new(data.valid.clone());
    // Only targets from a sensitivity analysis evaluate here, once unpruned and once per level
    // and layer.
    let evaluations = 1 + net.prunable_layers().len() * DEFAULT_LEVELS.len();
    let steps = (prune.targets == TargetSource::Sensitivity)
        .then(|| Steps::start("sensitivity", evaluations, options.progress == Progress::Lines));
    let mut evaluate_valid = |n: &Network| {
        let result = evaluate(n, valid.clone(), data.batcher.clone(), config.train.eval_batch_size, device);
        steps.iter().for_each(|s| s.step(""));
        result.map_err(PruneError::from)
    };
    let calibration = |count: usize| data.train_batches(config.train.batch_size, count, device);
    let context = PruneContext {
        seed: config.seed,
        steps_per_epoch: data.train.len().div_ceil(config.train.batch_size),
        device: device.clone(),
        calibration: &calibration,
        evaluate_valid: &mut evaluate_valid,
    };
    let dense = completed.as_ref().map_or(&net, |c| &c.dense);
    let Pruning { mut strategy, sensitivity_targets } = prune.init(dense, context)?;
    if let Some(targets) = sensitivity_targets {
        let shown: Vec<String> = targets.iter().map(|(l, t)| format!("{l} {:.0}%", t * 100.0)).collect();
        println!("targets from sensitivity (tolerance {:.2} points): {}", prune.tolerance * 100.0, shown.join(", "));
    }
    if strategy.judges() && completed.is_none() {
        write_atomic(&run_dir.join("attempts.csv"), attempts_csv(&[]).as_bytes())?;
    }
    let dense_training = experiment.train_setup(options, "");
    let splits = [data.train_dataset(), ImageDataset::new(data.valid.clone()), ImageDataset::new(data.test.clone())];
    let mut rounds = prune.rounds(&dense_training, splits, data.batcher.clone(), initial);
    rounds.quantize = config.quantize.clone();
    writer.total = strategy.rounds();
    Ok(run_rounds(net, strategy.as_mut(), &rounds, completed, writer)?)
}

/// Writes out every record as it comes: its line, the CSV files and a checkpoint to resume from.
struct RunWriter<'a> {
    run_dir: &'a Path,
    metrics: &'a mut MetricsLog,
    started: Instant,
    /// Rounds of the method, for the lines.
    total: usize,
}

impl RoundObserver for RunWriter<'_> {
    fn on_round(&mut self, history: &History, net: &Network) -> Result<(), PruneError> {
        let record = history.rounds.last().expect("a round was recorded");
        println!("{}", round_line(record, self.total));
        self.metrics
            .extend(record.round, &record.epochs)
            .and_then(|()| write_atomic(&self.run_dir.join("rounds.csv"), rounds_csv(&history.rounds).as_bytes()))
            .and_then(|()| {
                Checkpoint::save(self.run_dir, net, &history.rounds, &history.attempts, self.metrics, self.started)
            })
            .map_err(|e| PruneError::Observer(e.into()))
    }

    fn on_attempt(&mut self, history: &History, _candidate: &Network) -> Result<(), PruneError> {
        let a = history.attempts.last().expect("a try was recorded");
        println!(
            "{} try {}: target {:.2}%, valid acc {:.2}% -> {}",
            a.layer,
            a.attempt + 1,
            a.target * 100.0,
            a.valid_accuracy * 100.0,
            if a.accepted { "kept" } else { "backing off" }
        );
        write_atomic(&self.run_dir.join("attempts.csv"), attempts_csv(&history.attempts).as_bytes())
            .map_err(|e| PruneError::Observer(e.into()))
    }
}
