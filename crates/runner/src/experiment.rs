//! `coppice run` and `coppice eval`: one experiment from config to run directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use coppice_data::{
    CifarSplit, ImageBatcher, ImageDataset, ImageSet, MnistSplit, Normalization, load_cifar10, load_mnist,
    train_valid_split,
};
use coppice_data::{ImageBatch, ImageItem, Table};
use coppice_models::{Architecture, InputShape, Network, Prunable, count_nonzero};
use coppice_prune::{
    Completed, DEFAULT_LEVELS, Granularity, LayerAttempt, LayerwiseDone, MaskSet, NeuronPruner, PruneError,
    RoundRecord, Rounds, RoundsOutcome, Strategy, WeightPruner, layer_order, rounds_csv, run_layerwise, run_rounds,
    sensitivity, sensitivity_csv, sparsity_report, tolerated_sparsity,
};
use coppice_train::{
    Callback, Callbacks, EpochRecord, Evaluation, Progress, TrainConfig, TrainSetup, evaluate, fit, fit_after,
    resumable_epochs,
};
use serde::{Deserialize, Serialize};

use crate::backend::BackendName;
use crate::bench::inference_seconds;
use crate::config::{Config, DatasetKind};
use crate::integrity;
use crate::lock::{Access, RunLock, lock};
use crate::plot::{Series, line_chart};
use crate::prune_config::{PruneConfig, RewindKind, StrategyKind, TargetSource};
use crate::resources;
use crate::rundir::{create_run_dir, discard_if_unused, open_saved_run, write_atomic};

/// The splits of one experiment, after the seeded split and any limits.
pub struct Data {
    pub train: ImageSet,
    pub valid: ImageSet,
    pub test: ImageSet,
    pub batcher: ImageBatcher,
}

impl Data {
    pub fn load(config: &Config) -> Result<Data> {
        let d = &config.data;
        let context = || format!("data.dir = {:?}", d.dir.display().to_string());
        let (full, mut test) = match d.dataset {
            DatasetKind::Mnist => (
                load_mnist(&d.dir, MnistSplit::Train).with_context(context)?,
                load_mnist(&d.dir, MnistSplit::Test).with_context(context)?,
            ),
            DatasetKind::Cifar10 => (
                load_cifar10(&d.dir, CifarSplit::Train).with_context(context)?,
                load_cifar10(&d.dir, CifarSplit::Test).with_context(context)?,
            ),
        };
        let shape = |set: &ImageSet| (set.channels, set.height, set.width);
        if shape(&full) != shape(&test) {
            let (c, h, w) = shape(&test);
            let (tc, th, tw) = shape(&full);
            return Err(anyhow!(
                "{}: the test images are {c}x{h}x{w} and the training images {tc}x{th}x{tw}; fix: point data.dir at test and training files of one size",
                context()
            ));
        }
        let (mut train, valid) = train_valid_split(&full, d.valid_fraction, config.seed);
        if d.train_limit > 0 {
            train = train.take(d.train_limit);
        }
        if d.test_limit > 0 {
            test = test.take(d.test_limit);
        }
        if valid.is_empty() || train.is_empty() {
            let split = if valid.is_empty() { "validation" } else { "training" };
            return Err(anyhow!(
                "data.valid_fraction: {} of the {} training images leaves no {split} images; fix: a valid_fraction that leaves some to both, e.g. 0.1",
                d.valid_fraction,
                full.len()
            ));
        }
        if test.is_empty() {
            return Err(anyhow!("{}: the test files hold no images; fix: point data.dir at a full dataset", context()));
        }
        let batcher = ImageBatcher::for_set(&train, Normalization { mean: d.mean, std: d.std });
        Ok(Data { train, valid, test, batcher })
    }

    pub fn input(&self) -> InputShape {
        InputShape { channels: self.train.channels, height: self.train.height, width: self.train.width }
    }

    pub fn classes(&self) -> usize {
        self.train.classes
    }

    /// The first `count` batches of the training split, in order (the last may be short): what
    /// data-driven unit criteria are measured on, and what the benchmark trains on.
    pub fn train_batches(&self, batch_size: usize, count: usize, device: &burn::prelude::Device) -> Vec<ImageBatch> {
        self.batches(&self.train, batch_size, count, device)
    }

    /// The whole test split in order.
    pub fn test_batches(&self, batch_size: usize, device: &burn::prelude::Device) -> Vec<ImageBatch> {
        self.batches(&self.test, batch_size, self.test.len().div_ceil(batch_size), device)
    }

    fn batches(
        &self,
        set: &ImageSet,
        batch_size: usize,
        count: usize,
        device: &burn::prelude::Device,
    ) -> Vec<ImageBatch> {
        let per_image = set.pixels_per_image();
        (0..count)
            .map(|b| b * batch_size..((b + 1) * batch_size).min(set.len()))
            .filter(|range| !range.is_empty())
            .map(|range| {
                let items = range
                    .map(|i| ImageItem {
                        pixels: set.images[i * per_image..(i + 1) * per_image].to_vec(),
                        label: set.labels[i],
                    })
                    .collect();
                self.batcher.batch(items, device)
            })
            .collect()
    }
}

/// `summary.json`: a contract for scripts. The top-level keys named in the README stay.
#[derive(Serialize)]
pub struct Summary {
    pub name: String,
    pub backend: String,
    pub seed: u64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_accuracy: Option<f64>,
    pub params_total: usize,
    pub params_nonzero: usize,
    pub flops: usize,
    pub wall_seconds: f64,
    pub epochs: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub architecture: Architecture,
    /// With `[prune]`: the fraction of prunable weights that are zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
    /// With `[prune]`: total parameters / non-zero parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_ratio: Option<f64>,
    /// With `[prune]`: the test accuracy before pruning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense_test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<usize>,
    /// With neuron pruning: the network before pruning, and measured inference latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseComparison>,
    /// For `coppice finetune`: the run directory it continued from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The process's peak resident memory (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// What the device's allocator holds at the end, on backends that report it (the GPU ones);
    /// its pools keep what the run's peak needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_memory_bytes: Option<u64>,
}

/// The path of the first null in `json`, where serde_json wrote a non-finite float.
fn null_key(json: &serde_json::Value, path: &str) -> Option<String> {
    let child = |key: &dyn std::fmt::Display| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match json {
        serde_json::Value::Null => Some(path.to_string()),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| null_key(v, &child(k))),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| null_key(v, &child(&i))),
        _ => None,
    }
}

impl Summary {
    /// The keys every run has; pruning and fine-tuning add theirs.
    fn basic(
        config: &Config,
        net: &Network,
        test: &Evaluation,
        metrics: &MetricsLog,
        data: &Data,
        device: &burn::prelude::Device,
        started: Instant,
    ) -> Summary {
        Summary {
            name: config.name.clone(),
            backend: config.backend.to_string(),
            seed: config.seed,
            test_accuracy: test.accuracy,
            test_loss: test.loss,
            valid_accuracy: metrics.rows.last().and_then(|(_, e)| e.valid_accuracy),
            params_total: net.num_params(),
            params_nonzero: count_nonzero(net),
            flops: net.layer_costs().iter().map(|c| c.flops).sum(),
            wall_seconds: started.elapsed().as_secs_f64(),
            epochs: metrics.rows.len(),
            train_samples: data.train.len(),
            test_samples: test.samples,
            architecture: net.architecture(),
            sparsity: None,
            compression_ratio: None,
            dense_test_accuracy: None,
            rounds: None,
            dense: None,
            parent: None,
            peak_rss_bytes: peak_rss_bytes(),
            device_memory_bytes: device.memory_pool_usage().map(|u| u.bytes_reserved),
        }
    }

    /// Writes `summary.json`, which promises a number wherever the README names one: a
    /// value that JSON can only write as null (NaN, infinity) is an error instead.
    fn write(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_value(self)?;
        if let Some(key) = null_key(&json, "") {
            return Err(anyhow!(
                "{}: {key} is not a finite number, so the network's weights or outputs are not finite; \
                 fix: train with a lower train.lr",
                run_dir.display()
            ));
        }
        write_atomic(&run_dir.join("summary.json"), serde_json::to_string_pretty(&json)?.as_bytes())
    }

    fn print(&self) {
        println!(
            "test accuracy {:.2}% (loss {:.4}) on {} samples; {} parameters, {} non-zero; {:.1}s",
            self.test_accuracy * 100.0,
            self.test_loss,
            self.test_samples,
            self.params_total,
            self.params_nonzero,
            self.wall_seconds
        );
    }
}

/// The high-water mark of this process's resident memory, from `/proc/self/status` (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[derive(Serialize)]
pub struct DenseComparison {
    /// Units (neurons or filters) per layer, dense and pruned.
    pub units: Vec<LayerUnits>,
    pub params: usize,
    pub flops: usize,
    /// Dense FLOPs / pruned FLOPs.
    pub theoretical_speedup: f64,
    pub latency: Vec<Latency>,
}

#[derive(Serialize)]
pub struct LayerUnits {
    pub layer: String,
    pub dense: usize,
    pub pruned: usize,
}

#[derive(Serialize)]
pub struct Latency {
    pub batch: usize,
    pub dense_ms: f64,
    pub pruned_ms: f64,
    /// Dense time / pruned time, measured in one process.
    pub speedup: f64,
    pub pruned_samples_per_second: f64,
}

fn compare_with_dense(
    dense: &Network,
    pruned: &Network,
    input: InputShape,
    device: &burn::prelude::Device,
) -> DenseComparison {
    let flops = |net: &Network| net.layer_costs().iter().map(|c| c.flops).sum::<usize>();
    let latency = [1, 1000]
        .into_iter()
        .map(|batch| {
            let seconds = inference_seconds(&[dense, pruned], input, batch, device);
            let (dense_s, pruned_s) = (seconds[0], seconds[1]);
            Latency {
                batch,
                dense_ms: dense_s * 1e3,
                pruned_ms: pruned_s * 1e3,
                speedup: dense_s / pruned_s,
                pruned_samples_per_second: batch as f64 / pruned_s,
            }
        })
        .collect();
    let units = dense
        .unit_groups()
        .into_iter()
        .zip(pruned.unit_groups())
        .map(|(d, p)| LayerUnits { layer: d.layer, dense: d.units, pruned: p.units })
        .collect();
    DenseComparison {
        units,
        params: dense.num_params(),
        flops: flops(dense),
        theoretical_speedup: flops(dense) as f64 / flops(pruned).max(1) as f64,
        latency,
    }
}

pub struct RunOptions {
    pub backend: Option<BackendName>,
    /// A saved run to start from instead of training dense (like `prune.from`).
    pub from: Option<PathBuf>,
    pub out: PathBuf,
    pub progress: Progress,
}

/// Metrics of every epoch of a run, by round (0 = dense training), rewritten after each epoch
/// batch so an interrupted run keeps what it measured.
struct MetricsLog {
    path: PathBuf,
    rows: Vec<(usize, EpochRecord)>,
}

impl MetricsLog {
    fn extend(&mut self, round: usize, epochs: &[EpochRecord]) -> Result<()> {
        self.rows.extend(epochs.iter().map(|e| (round, e.clone())));
        write_atomic(&self.path, metrics_csv(&self.rows).as_bytes())
    }
}

/// The keys `--set` may change on `--resume`: the rates, so that a diverged run can go on.
const RESUME_KEYS: [&str; 3] = ["train.lr", "train.lr_min", "prune.retrain_lr_scale"];

/// What every command that trains starts from: the config with its overrides, the data, the
/// device, the network to start with (initialized, or loaded from `prune.from`) and a fresh
/// run directory holding the resolved config.
struct Experiment {
    config: Config,
    data: Data,
    device: burn::prelude::Device,
    from: Option<PathBuf>,
    run_dir: PathBuf,
    /// Held while the experiment writes its run directory.
    _lock: RunLock,
}

impl Experiment {
    fn start(config_path: &Path, overrides: &[String], options: &RunOptions) -> Result<(Experiment, Network)> {
        let config = Config::load(config_path, overrides)?;
        Experiment::open(config, config_path, options, None)
    }

    /// An interrupted run's experiment, from the resolved config in its directory. `overrides`
    /// may change the learning rate only (a diverged run goes on at a lower one); the resolved
    /// config then records the new value.
    fn reopen(
        run_dir: &Path,
        lock: RunLock,
        overrides: &[String],
        options: &RunOptions,
    ) -> Result<(Experiment, Network)> {
        for key in overrides.iter().map(|o| o.split('=').next().unwrap_or_default().trim()) {
            if !RESUME_KEYS.contains(&key) {
                return Err(anyhow!(
                    "--set {key}: a resumed run keeps its config, all but {}; fix: start a new run with `coppice run CONFIG --set {key}=...`",
                    RESUME_KEYS.join(", ")
                ));
            }
        }
        let config_path = run_dir.join("config.toml");
        let config = Config::load(&config_path, overrides)
            .with_context(|| format!("{}: fix: pass a run directory written by `coppice run`", run_dir.display()))?;
        if !overrides.is_empty() {
            let resolved = toml::to_string(&config).context("cannot serialize the resolved config")?;
            write_atomic(&config_path, resolved.as_bytes())?;
        }
        Experiment::open(config, &config_path, options, Some((run_dir.to_path_buf(), lock)))
    }

    fn open(
        mut config: Config,
        config_path: &Path,
        options: &RunOptions,
        run_dir: Option<(PathBuf, RunLock)>,
    ) -> Result<(Experiment, Network)> {
        if let Some(backend) = options.backend {
            config.backend = backend;
        }
        let in_config = |(field, problem): (String, String)| anyhow!("{}: {field}: {problem}", config_path.display());
        let data = Data::load(&config)?;
        let device = config.backend.device().with_context(|| format!("{}: backend", config_path.display()))?;
        device.seed(config.seed);
        let from = options.from.clone().or_else(|| config.prune.as_ref().and_then(|p| p.from.clone()));
        let start_net = match &from {
            Some(dir) => {
                let _reading =
                    open_saved_run(dir).with_context(|| format!("{}: prune.from / --from", config_path.display()))?;
                let net = load_model(dir, &device)
                    .with_context(|| format!("{}: prune.from / --from", config_path.display()))?;
                check_input(&net.architecture(), &data, dir)?;
                resources::check(&config, net.architecture().size(), &data, resources::available_memory())
                    .map_err(in_config)?;
                net
            }
            None => {
                let architecture = config.architecture(data.input(), data.classes()).map_err(in_config)?;
                resources::check(&config, architecture.size(), &data, resources::available_memory())
                    .map_err(in_config)?;
                match &config.model.init {
                    None => architecture.init(&device),
                    Some(dir) => {
                        let _reading =
                            open_saved_run(dir).with_context(|| format!("{}: model.init", config_path.display()))?;
                        let net = load_model(dir, &device)
                            .with_context(|| format!("{}: model.init", config_path.display()))?;
                        if net.architecture() != architecture {
                            return Err(anyhow!(
                                "{}: model.init: {} holds a {:?}, the config asks for a {:?}; fix: point model.init at weights of the config's model",
                                config_path.display(),
                                dir.display(),
                                net.architecture(),
                                architecture
                            ));
                        }
                        net
                    }
                }
            }
        };
        if let Some(prune) = &config.prune {
            let names: Vec<String> = start_net.prunable_layers().into_iter().map(|l| l.name).collect();
            let units: Vec<(String, usize)> = start_net.unit_groups().into_iter().map(|g| (g.layer, g.units)).collect();
            prune.check_network(&names, &units).map_err(in_config)?;
        }
        let (run_dir, lock) = match run_dir {
            Some(opened) => opened,
            None => {
                // The resolved config says everything a resume needs, `--from` included.
                if let (Some(prune), Some(dir)) = (config.prune.as_mut(), &options.from) {
                    prune.from = Some(dir.clone());
                }
                let dir = create_run_dir(&options.out, &config.name)?;
                let lock = lock(&dir, Access::Write)?;
                let resolved = toml::to_string(&config).context("cannot serialize the resolved config")?;
                write_atomic(&dir.join("config.toml"), resolved.as_bytes())?;
                (dir, lock)
            }
        };
        coppice_train::stop::set_run_dir(Some(run_dir.clone()));
        println!("run {} on {} -> {}", config.name, config.backend, run_dir.display());
        Ok((Experiment { config, data, device, from, run_dir, _lock: lock }, start_net))
    }

    /// The trained dense network: `start_net` itself when it was loaded from a saved run.
    /// `done` are the epochs an interrupted run already trained; every epoch is journalled in
    /// `checkpoints/` so that `--resume` can go on after it.
    fn dense(
        &self,
        start_net: Network,
        options: &RunOptions,
        metrics: &mut MetricsLog,
        label: &str,
        done: Vec<EpochRecord>,
    ) -> Result<Network> {
        if self.from.is_some() {
            return Ok(start_net);
        }
        let setup = TrainSetup {
            config: self.config.train.clone(),
            device: self.device.clone(),
            artifact_dir: self.run_dir.join("train"),
            seed: self.config.seed,
            progress: options.progress,
            label: label.into(),
        };
        let train = ImageDataset::new(self.data.train.clone());
        let valid = ImageDataset::new(self.data.valid.clone());
        let journal = EpochJournal::start(&self.run_dir, done.clone())?;
        let callbacks = Callbacks::new(vec![Box::new(journal)]);
        let outcome = fit_after(start_net, train, valid, self.data.batcher.clone(), &setup, &callbacks, done)?;
        metrics.extend(0, &outcome.epochs)?;
        Ok(outcome.net)
    }
}

/// Runs a config end to end and returns the run directory.
pub fn run(config_path: &Path, overrides: &[String], options: &RunOptions) -> Result<PathBuf> {
    let (experiment, start_net) = Experiment::start(config_path, overrides, options)?;
    let result = run_experiment(&experiment, start_net, None, Vec::new(), options);
    discard_if_unused(&experiment.run_dir, result)
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
    // A config.toml alone could be any folder of configs: a run that started training has more.
    if !run_dir.join("train").is_dir() && !Checkpoint::dir(run_dir).is_dir() {
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
fn run_experiment(
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
    let (net, dense_net, completed, attempts) = match progress {
        Some(progress) => {
            let net = load_model(&Checkpoint::model_dir(run_dir, progress.last_round()), device)?;
            let dense = load_model(&Checkpoint::model_dir(run_dir, 0), device)?;
            metrics.rows = progress.metrics;
            metrics.extend(0, &[])?;
            write_atomic(&run_dir.join("rounds.csv"), rounds_csv(&progress.rounds).as_bytes())?;
            (net, dense.deep_clone(), Some(Completed { records: progress.rounds, dense }), progress.attempts)
        }
        None => {
            let label = if prune.is_some() { "dense" } else { "train" };
            let net = experiment.dense(start_net, options, &mut metrics, label, done)?;
            let dense_net = net.deep_clone();
            (net, dense_net, None, Vec::new())
        }
    };
    let (net, test, pruning) = match &prune {
        None => {
            let test = evaluate_test(&net, data, config, device)?;
            (net, test, None)
        }
        Some(prune) => {
            let outcome =
                prune_rounds(net, prune, experiment, initial, completed, attempts, options, &mut metrics, started)?;
            let last = outcome.rounds.last().expect("round 0 is always recorded");
            let test = last.test;
            let dense = outcome.rounds[0].test.accuracy;
            (outcome.net.clone(), test, Some((dense, outcome)))
        }
    };
    save_model(&net, run_dir)?;
    let report = pruning.as_ref().map(|(_, outcome)| outcome.rounds.last().expect("round 0 exists").sparsity.clone());
    let summary = Summary {
        sparsity: report.as_ref().map(|r| r.sparsity),
        compression_ratio: report.as_ref().map(|r| r.compression_ratio),
        dense_test_accuracy: pruning.as_ref().map(|(dense, _)| *dense),
        rounds: pruning.as_ref().map(|(_, outcome)| outcome.rounds.len() - 1),
        dense: prune
            .as_ref()
            .filter(|p| p.strategy == StrategyKind::Neuron)
            .map(|_| compare_with_dense(&dense_net, &net, data.input(), device)),
        ..Summary::basic(config, &net, &test, &metrics, data, device, started)
    };
    summary.write(run_dir)?;
    if let Some((_, outcome)) = &pruning {
        write_atomic(&run_dir.join("report.md"), report_md(config, &summary, &outcome.rounds).as_bytes())?;
    }
    Checkpoint::finished(run_dir);
    summary.print();
    Ok(run_dir.clone())
}

/// `checkpoints/dense-epochs.json`: the dense training's epochs, rewritten after each one (burn-train
/// has checkpointed that epoch by then), so that `--resume` goes on after the last.
struct EpochJournal {
    path: PathBuf,
    epochs: Vec<EpochRecord>,
}

impl EpochJournal {
    fn start(run_dir: &Path, done: Vec<EpochRecord>) -> Result<EpochJournal> {
        let dir = Checkpoint::dir(run_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        Ok(EpochJournal { path: dir.join("dense-epochs.json"), epochs: done })
    }

    fn read(run_dir: &Path) -> Result<Vec<EpochRecord>> {
        let path = Checkpoint::dir(run_dir).join("dense-epochs.json");
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let text = integrity::read_text(&Checkpoint::dir(run_dir), "dense-epochs.json")?;
        serde_json::from_str(&text).with_context(|| {
            format!("{}: not a coppice epoch journal; fix: delete it to train from the start", path.display())
        })
    }
}

impl Callback for EpochJournal {
    fn on_epoch_end(&mut self, record: &EpochRecord) {
        self.epochs.push(record.clone());
        let written = serde_json::to_string(&self.epochs)
            .map_err(anyhow::Error::from)
            .and_then(|json| write_atomic(&self.path, json.as_bytes()))
            .and_then(|()| integrity::record(self.path.parent().unwrap_or(Path::new(".")), &["dense-epochs.json"]));
        if let Err(e) = written {
            // Training goes on; only a resume would start further back.
            eprintln!("warning: {e:#}");
        }
    }
}

/// What an interrupted run leaves to resume from, in `checkpoints/` of its run directory: the
/// records of the rounds it completed, and the networks before round 1 and after the last one.
/// `progress.json` is written after the networks, so it never names one that is not there.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    rounds: Vec<RoundRecord>,
    metrics: Vec<(usize, EpochRecord)>,
    /// Layer-wise runs: every try so far.
    #[serde(default)]
    attempts: Vec<LayerAttempt>,
    /// Wall time so far, so that `wall_seconds` covers every attempt.
    seconds: f64,
}

impl Checkpoint {
    fn dir(run_dir: &Path) -> PathBuf {
        run_dir.join("checkpoints")
    }

    fn model_dir(run_dir: &Path, round: usize) -> PathBuf {
        Checkpoint::dir(run_dir).join(format!("round-{round}"))
    }

    fn last_round(&self) -> usize {
        self.rounds.last().map_or(0, |r| r.round)
    }

    fn read(run_dir: &Path) -> Result<Option<Checkpoint>> {
        let path = Checkpoint::dir(run_dir).join("progress.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = integrity::read_text(&Checkpoint::dir(run_dir), "progress.json")?;
        let progress: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a coppice checkpoint; fix: delete checkpoints/ to train from the start", path.display())
        })?;
        Ok(Some(progress))
    }

    /// Saves the network after `rounds`' last round, then the records; drops the network of
    /// the round before, which nothing needs any more (round 0 stays: a resumed run starts its
    /// strategy from it).
    fn save(
        run_dir: &Path,
        net: &Network,
        rounds: &[RoundRecord],
        attempts: &[LayerAttempt],
        metrics: &MetricsLog,
        started: Instant,
    ) -> Result<()> {
        let round = rounds.last().map_or(0, |r| r.round);
        let dir = Checkpoint::model_dir(run_dir, round);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        save_model(net, &dir)?;
        let progress = Checkpoint {
            rounds: rounds.to_vec(),
            metrics: metrics.rows.clone(),
            attempts: attempts.to_vec(),
            seconds: started.elapsed().as_secs_f64(),
        };
        write_atomic(&Checkpoint::dir(run_dir).join("progress.json"), serde_json::to_string(&progress)?.as_bytes())?;
        integrity::record(&Checkpoint::dir(run_dir), &["progress.json"])?;
        if round > 1 {
            let _ = std::fs::remove_dir_all(Checkpoint::model_dir(run_dir, round - 1));
        }
        Ok(())
    }

    /// A finished run has its model and summary; the checkpoints would only duplicate them.
    fn finished(run_dir: &Path) {
        let _ = std::fs::remove_dir_all(Checkpoint::dir(run_dir));
    }
}

/// A saved model must take the data's images.
fn check_input(architecture: &Architecture, data: &Data, dir: &Path) -> Result<()> {
    let (model, data_input) = (architecture.input(), data.input());
    let fits = match architecture {
        Architecture::Mlp(_) => model.pixels() == data_input.pixels(),
        Architecture::Lenet5(_) | Architecture::Vgg(_) => model == data_input,
    } && architecture.classes() == data.classes();
    if fits {
        Ok(())
    } else {
        Err(anyhow!(
            "{}: the saved model takes {}x{}x{} inputs and {} classes, the data has {}x{}x{} and {}; fix: point data.dir at the data the run was trained on",
            dir.display(),
            model.channels,
            model.height,
            model.width,
            architecture.classes(),
            data_input.channels,
            data_input.height,
            data_input.width,
            data.classes()
        ))
    }
}

/// The rounds after the dense network, or after `completed` when resuming. Every completed
/// round is written out (records and a checkpoint) before the next starts.
#[allow(clippy::too_many_arguments)]
fn prune_rounds(
    net: Network,
    prune: &PruneConfig,
    experiment: &Experiment,
    initial: Network,
    completed: Option<Completed>,
    attempts_done: Vec<LayerAttempt>,
    options: &RunOptions,
    metrics: &mut MetricsLog,
    started: Instant,
) -> Result<RoundsOutcome> {
    let Experiment { config, data, device, run_dir, .. } = experiment;
    let steps_per_epoch = data.train.len().div_ceil(config.train.batch_size);
    let in_config = |(field, problem): (String, String)| anyhow!("config: {field}: {problem}");
    let dense = completed.as_ref().map_or(&net, |c| &c.dense);
    let prune = &resolve_targets(prune, dense, data, config, device)?;
    let calibration = |needed: bool| {
        if needed { data.train_batches(config.train.batch_size, prune.calibration_batches, device) } else { Vec::new() }
    };
    let retrain = TrainConfig {
        epochs: prune.retrain_epochs,
        lr: config.train.lr * prune.retrain_lr_scale,
        lr_min: config.train.lr_min * prune.retrain_lr_scale,
        weight_decay: prune.retrain_weight_decay.unwrap_or(config.train.weight_decay),
        ..config.train.clone()
    };
    let rounds = Rounds {
        rounds: prune.rounds(),
        retrain: TrainSetup {
            config: retrain,
            device: device.clone(),
            artifact_dir: run_dir.join("train"),
            seed: config.seed,
            progress: options.progress,
            label: String::new(),
        },
        train: ImageDataset::new(data.train.clone()),
        valid: ImageDataset::new(data.valid.clone()),
        test: ImageDataset::new(data.test.clone()),
        batcher: data.batcher.clone(),
        rewind_to: (prune.rewind == RewindKind::Init).then_some(initial),
    };
    let mut records: Vec<RoundRecord> = completed.as_ref().map(|c| c.records.clone()).unwrap_or_default();
    let mut failure = None;
    if prune.strategy == StrategyKind::Layerwise {
        let done = completed.map(|c| LayerwiseDone::new(attempts_done, c.dense));
        let mut attempts = done.as_ref().map(|d| d.attempts.clone()).unwrap_or_default();
        write_atomic(&run_dir.join("attempts.csv"), attempts_csv(&attempts).as_bytes())?;
        let names = layer_order(&net, prune.granularity);
        let layer_wise = prune.layer_wise(prune.config_targets(&names), config.seed).map_err(in_config)?;
        let data_needed = prune.granularity == Granularity::Unit && layer_wise.unit_criterion.needs_data();
        if records.is_empty() {
            let dense = RoundRecord {
                round: 0,
                target: Some(0.0),
                sparsity: sparsity_report(&net),
                test: evaluate_test(&net, data, config, device)?,
                seconds: 0.0,
                epochs: Vec::new(),
            };
            println!("{}", round_line(&dense, names.len()));
            records.push(dense);
            Checkpoint::save(run_dir, &net, &records, &attempts, metrics, started)?;
        }
        let calibration = calibration(data_needed);
        let (net, _) = run_layerwise(net, &layer_wise, &rounds, calibration, done, &mut |a, candidate| {
            println!(
                "{} try {}: target {:.2}%, valid acc {:.2}% -> {}",
                a.layer,
                a.attempt + 1,
                a.target * 100.0,
                a.valid_accuracy * 100.0,
                if a.accepted { "kept" } else { "backing off" }
            );
            attempts.push(a.clone());
            let mut written = write_atomic(&run_dir.join("attempts.csv"), attempts_csv(&attempts).as_bytes());
            if a.accepted {
                let record = RoundRecord {
                    round: records.len(),
                    target: Some(a.target),
                    sparsity: a.sparsity.clone(),
                    test: a.test,
                    seconds: a.seconds,
                    epochs: a.epochs.clone(),
                };
                println!("{}", round_line(&record, names.len()));
                written = written.and_then(|()| metrics.extend(record.round, &record.epochs));
                records.push(record);
                written = written
                    .and_then(|()| write_atomic(&run_dir.join("rounds.csv"), rounds_csv(&records).as_bytes()))
                    .and_then(|()| Checkpoint::save(run_dir, candidate, &records, &attempts, metrics, started));
            }
            if let Err(e) = written {
                failure.get_or_insert(e);
            }
        })?;
        return match failure {
            Some(e) => Err(e),
            None => Ok(RoundsOutcome { net, rounds: records }),
        };
    }
    let mut strategy: Box<dyn Strategy> = match prune.strategy {
        StrategyKind::Weight | StrategyKind::Layerwise => Box::new(WeightPruner::new(
            prune.weight_pruning(config.seed, steps_per_epoch).map_err(in_config)?,
            device.clone(),
        )),
        StrategyKind::Neuron => {
            let pruning = prune.neuron_pruning(config.seed).map_err(in_config)?;
            let calibration = calibration(pruning.criterion.needs_data());
            Box::new(NeuronPruner::new(pruning, calibration, device.clone()).map_err(|e| anyhow!("prune: {e}"))?)
        }
    };
    let total = rounds.rounds;
    let outcome = run_rounds(net, strategy.as_mut(), &rounds, completed, &mut |record, net| {
        records.push(record.clone());
        println!("{}", round_line(record, total));
        let written = metrics
            .extend(record.round, &record.epochs)
            .and_then(|()| write_atomic(&run_dir.join("rounds.csv"), rounds_csv(&records).as_bytes()))
            .and_then(|()| Checkpoint::save(run_dir, net, &records, &[], metrics, started));
        if let Err(e) = written {
            failure.get_or_insert(e);
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// `attempts.csv`: every layer-wise try, backed-off ones included.
fn attempts_csv(attempts: &[LayerAttempt]) -> String {
    let mut table = Table::new([
        "layer",
        "attempt",
        "target",
        "valid_accuracy",
        "accepted",
        "sparsity",
        "params_total",
        "test_accuracy",
        "seconds",
    ]);
    for a in attempts {
        table.push([
            a.layer.clone(),
            a.attempt.to_string(),
            format!("{:.6}", a.target),
            format!("{:.6}", a.valid_accuracy),
            a.accepted.to_string(),
            format!("{:.6}", a.sparsity.sparsity),
            a.sparsity.params_total.to_string(),
            format!("{:.6}", a.test.accuracy),
            format!("{:.3}", a.seconds),
        ]);
    }
    table.to_csv()
}

/// With `targets = "sensitivity"`: each layer's target becomes the largest level whose
/// validation accuracy, that layer pruned alone, stays within `tolerance` of the dense network.
fn resolve_targets(
    prune: &PruneConfig,
    net: &Network,
    data: &Data,
    config: &Config,
    device: &burn::prelude::Device,
) -> Result<PruneConfig> {
    if prune.targets != TargetSource::Sensitivity {
        return Ok(prune.clone());
    }
    let valid = ImageDataset::new(data.valid.clone());
    let mut evaluate_valid = |n: &Network| {
        evaluate(n, valid.clone(), data.batcher.clone(), config.train.eval_batch_size, device).map_err(PruneError::from)
    };
    let points = sensitivity(net, &DEFAULT_LEVELS, device, &mut evaluate_valid)?;
    let layers = tolerated_sparsity(&points, prune.tolerance);
    let shown: Vec<String> = layers.iter().map(|(l, t)| format!("{l} {:.0}%", t * 100.0)).collect();
    println!("targets from sensitivity (tolerance {:.2} points): {}", prune.tolerance * 100.0, shown.join(", "));
    Ok(PruneConfig { target: Some(0.0), layers, targets: TargetSource::Config, ..prune.clone() })
}

fn round_line(r: &RoundRecord, total: usize) -> String {
    let target = r.target.map_or("-".into(), |t| format!("{:.2}%", t * 100.0));
    format!(
        "round {}/{total}: target {target}, sparsity {:.2}%, compression {:.2}x | test acc {:.2}% loss {:.4} | {:.1}s",
        r.round,
        r.sparsity.sparsity * 100.0,
        r.sparsity.compression_ratio,
        r.test.accuracy * 100.0,
        r.test.loss,
        r.seconds
    )
}

/// `report.md`: what a person reads first.
fn report_md(config: &Config, summary: &Summary, rounds: &[RoundRecord]) -> String {
    let mut md = format!("# {}\n\n", config.name);
    let dense = summary.dense_test_accuracy.unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "Test accuracy {:.2} % after pruning (dense {:.2} %); {:.2} % of prunable weights are zero; compression {:.2}x ({} of {} parameters non-zero). Backend {}, seed {}.\n",
        summary.test_accuracy * 100.0,
        dense * 100.0,
        summary.sparsity.unwrap_or(0.0) * 100.0,
        summary.compression_ratio.unwrap_or(1.0),
        summary.params_nonzero,
        summary.params_total,
        summary.backend,
        summary.seed
    );
    // Neuron pruning leaves no zeros to count; its "Units" table below says what changed.
    if let Some(last) = rounds.last().filter(|_| summary.dense.is_none()) {
        md.push_str(
            "## Layers\n\n| layer | weights | non-zero | left | sparsity |\n| --- | ---: | ---: | ---: | ---: |\n",
        );
        for l in &last.sparsity.layers {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} % | {:.2} % |",
                l.name,
                l.weights,
                l.weights - l.zeros,
                (1.0 - l.sparsity) * 100.0,
                l.sparsity * 100.0
            );
        }
        let s = &last.sparsity;
        let speedup = s.flops_dense as f64 / s.flops_effective.max(1) as f64;
        let _ = writeln!(
            md,
            "\nFLOPs {} dense, {} effective: theoretical speedup {speedup:.2}x.\n",
            s.flops_dense, s.flops_effective
        );
    }
    if let Some(dense) = &summary.dense {
        md.push_str("## Units\n\n| layer | dense | pruned | left |\n| --- | ---: | ---: | ---: |\n");
        for u in &dense.units {
            let left = u.pruned as f64 / u.dense.max(1) as f64 * 100.0;
            let _ = writeln!(md, "| {} | {} | {} | {left:.1} % |", u.layer, u.dense, u.pruned);
        }
        md.push('\n');
        let _ = writeln!(
            md,
            "## Size and speed\n\nParameters {} -> {}; FLOPs {} -> {}: theoretical speedup {:.2}x.\n\n| batch | dense ms | pruned ms | measured speedup | pruned samples/s |\n| ---: | ---: | ---: | ---: | ---: |",
            dense.params, summary.params_total, dense.flops, summary.flops, dense.theoretical_speedup
        );
        for l in &dense.latency {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.2}x | {:.0} |",
                l.batch, l.dense_ms, l.pruned_ms, l.speedup, l.pruned_samples_per_second
            );
        }
        md.push('\n');
    }
    md.push_str("## Rounds\n\n| round | sparsity | compression | test accuracy | test loss | seconds |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rounds {
        let _ = writeln!(
            md,
            "| {} | {:.2} % | {:.2}x | {:.2} % | {:.4} | {:.1} |",
            r.round,
            r.sparsity.sparsity * 100.0,
            r.sparsity.compression_ratio,
            r.test.accuracy * 100.0,
            r.test.loss,
            r.seconds
        );
    }
    md
}

pub fn evaluate_test(
    net: &Network,
    data: &Data,
    config: &Config,
    device: &burn::prelude::Device,
) -> Result<Evaluation> {
    Ok(evaluate(net, ImageDataset::new(data.test.clone()), data.batcher.clone(), config.train.eval_batch_size, device)?)
}

/// Weights (`model.bpk`) and the sizes that rebuild the network (`architecture.json`), so a
/// pruned run loads without its original config.
pub fn save_model(net: &Network, run_dir: &Path) -> Result<()> {
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    write_atomic(&run_dir.join("architecture.json"), architecture.as_bytes())?;
    // burn-pack writes through a temporary file and renames it, so this write is atomic too.
    let path = run_dir.join("model.bpk");
    net.clone().save_file(&path).map_err(|e| anyhow!("{}: cannot save the model: {e}", path.display()))?;
    integrity::record(run_dir, &["architecture.json", "model.bpk"])
}

/// Rebuilds a run's network from `architecture.json` and loads `model.bpk` into it.
pub fn load_model(run_dir: &Path, device: &burn::prelude::Device) -> Result<Network> {
    let arch_path = run_dir.join("architecture.json");
    if !arch_path.is_file() {
        return Err(anyhow!("{}: not found; fix: pass a run directory written by `coppice run`", arch_path.display()));
    }
    let text = integrity::read_text(run_dir, "architecture.json")?;
    let architecture: Architecture =
        serde_json::from_str(&text).with_context(|| format!("{}: not a coppice architecture", arch_path.display()))?;
    let model_path = run_dir.join("model.bpk");
    if !model_path.is_file() {
        return Err(anyhow!("{}: not found; fix: pass a run directory that finished training", model_path.display()));
    }
    // burn reads the file itself; the check reads it once more, which costs little next to a run.
    integrity::read(run_dir, "model.bpk")?;
    architecture.init(device).try_load_file(&model_path).map_err(|e| {
        anyhow!(
            "{}: does not fit {}: {}; fix: keep model.bpk and architecture.json from the same run",
            model_path.display(),
            arch_path.display(),
            e.to_string().replace('\n', " ")
        )
    })
}

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

/// `metrics.csv`: `round` 0 is dense training, then each pruning round's retraining.
fn metrics_csv(rows: &[(usize, EpochRecord)]) -> String {
    let mut table = Table::new(["round", "epoch", "split", "loss", "accuracy", "lr", "seconds"]);
    let number = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for (round, e) in rows {
        let (lr, secs) = (format!("{:.6}", e.lr), format!("{:.3}", e.seconds));
        for (split, loss, accuracy) in
            [("train", Some(e.train_loss), Some(e.train_accuracy)), ("valid", e.valid_loss, e.valid_accuracy)]
        {
            table.push([
                round.to_string(),
                e.epoch.to_string(),
                split.to_string(),
                number(loss),
                number(accuracy),
                lr.clone(),
                secs.clone(),
            ]);
        }
    }
    table.to_csv()
}

/// `coppice sensitivity CONFIG`: train dense (or load `prune.from`), then prune each layer
/// alone at every level and evaluate on the validation split without retraining. Writes
/// `sensitivity.csv`, `sensitivity.svg` and the dense model into a run directory.
pub fn sensitivity_run(
    config_path: &Path,
    overrides: &[String],
    options: &RunOptions,
    levels: &[f64],
) -> Result<PathBuf> {
    if let Some(bad) = levels.iter().find(|l| !(0.0..1.0).contains(*l)) {
        return Err(anyhow!("--levels: {bad} is not a sparsity in [0, 1); fix: e.g. --levels 0.5,0.9"));
    }
    let (experiment, start_net) = Experiment::start(config_path, overrides, options)?;
    discard_if_unused(&experiment.run_dir, sensitivity_experiment(&experiment, start_net, options, levels))
}

fn sensitivity_experiment(
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
    let mut evaluate_valid = |n: &Network| {
        evaluate(n, valid.clone(), data.batcher.clone(), config.train.eval_batch_size, device).map_err(PruneError::from)
    };
    let points = sensitivity(&net, levels, device, &mut evaluate_valid)?;
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
    let svg =
        line_chart(&title, "sparsity of the layer (others dense)", "accuracy without retraining", &series, false, true);
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
        progress: options.progress,
    };
    let (experiment, net) = Experiment::start(&parent_config, &sets, &options)?;
    discard_if_unused(&experiment.run_dir, finetune_experiment(&experiment, net, parent, &options, started))
}

fn finetune_experiment(
    experiment: &Experiment,
    net: Network,
    parent: &Path,
    options: &RunOptions,
    started: Instant,
) -> Result<PathBuf> {
    let Experiment { config, data, device, run_dir, .. } = experiment;
    let weights: Vec<String> = net.prunable_layers().into_iter().map(|l| l.weight_path).collect();
    let masks = MaskSet::from_zeros(&net, &weights, device);
    let setup = TrainSetup {
        config: config.train.clone(),
        device: device.clone(),
        artifact_dir: run_dir.join("train"),
        seed: config.seed,
        progress: options.progress,
        label: "finetune".into(),
    };
    let train = ImageDataset::new(data.train.clone());
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
