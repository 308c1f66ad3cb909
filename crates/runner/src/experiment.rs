//! What every command that trains starts from: config, data, device, network and run
//! directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::prelude::Device;
use coppice_data::ImageDataset;
use coppice_models::{Network, Prunable};
use coppice_train::{Callbacks, EpochRecord, Progress, TrainSetup, fit_after};

use crate::backend::BackendName;
use crate::config::Config;
use crate::data::Data;
use crate::devices;
use crate::rundir::checkpoint::EpochJournal;
use crate::rundir::dir::{claim_run_dir, create_run_dir, open_saved_run, write_atomic};
use crate::rundir::lock::{Access, RunLock, lock};
use crate::rundir::resources;
use crate::rundir::saved::{check_input, load_model};
use crate::rundir::tables::MetricsLog;

pub struct RunOptions {
    pub backend: Option<BackendName>,
    /// A saved run to start from instead of training dense (like `prune.from`).
    pub from: Option<PathBuf>,
    pub out: PathBuf,
    /// The run's own directory, exactly (`--run-dir`), instead of a new one under `out`.
    pub run_dir: Option<PathBuf>,
    pub progress: Progress,
}

/// The keys `--set` may change on `--resume`: the rates, so that a diverged run can go on.
pub const RESUME_KEYS: [&str; 3] = ["train.lr", "train.lr_min", "prune.retrain_lr_scale"];

/// What every command that trains starts from: the config with its overrides, the data, the
/// device, the network to start with (initialized, or loaded from `prune.from`) and a fresh
/// run directory holding the resolved config.
pub struct Experiment {
    pub config: Config,
    pub data: Data,
    pub device: burn::prelude::Device,
    /// Training's devices when there are several (`devices` in the config).
    pub parallel: Option<coppice_train::DataParallel>,
    pub from: Option<PathBuf>,
    pub run_dir: PathBuf,
    /// Held while the experiment writes its run directory.
    pub _lock: RunLock,
}

impl Experiment {
    pub fn start(config_path: &Path, overrides: &[String], options: &RunOptions) -> Result<(Experiment, Network)> {
        let config = Config::load(config_path, overrides)?;
        Experiment::open(config, config_path, options, None)
    }

    /// An interrupted run's experiment, from the resolved config in its directory. `overrides`
    /// may change the learning rate only (a diverged run goes on at a lower one); the resolved
    /// config then records the new value.
    pub fn reopen(
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

    pub fn open(
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
        devices::check(&config.devices, config.backend, config.train.batch_size).map_err(in_config)?;
        let (device, parallel) = devices::open(&config.devices, config.backend, config.parallel)
            .with_context(|| format!("{}: backend", config_path.display()))?;
        device.seed(config.seed);
        let from = options.from.clone().or_else(|| config.prune.as_ref().and_then(|p| p.from.clone()));
        let start_net = match &from {
            Some(dir) => {
                let _reading =
                    open_saved_run(dir).with_context(|| format!("{}: prune.from / --from", config_path.display()))?;
                let net = load_model(dir, &device)
                    .with_context(|| format!("{}: prune.from / --from", config_path.display()))?;
                check_input(&net.architecture(), &data, dir)?;
                resources::check(&config, net.graph().size(), &data, crate::alloc::available_memory())
                    .map_err(in_config)?;
                net
            }
            None => configured_network(&config, config_path, &data, &device)?,
        };
        if let Some(prune) = &config.prune {
            let units: Vec<(String, usize)> = start_net.unit_groups().into_iter().map(|g| (g.layer, g.units)).collect();
            // Layers, and coupled unit groups named for themselves (a ResNet stage: `layer2`).
            let mut names: Vec<String> = start_net.prunable_layers().into_iter().map(|l| l.name).collect();
            names.extend(
                units.iter().map(|(group, _)| group.clone()).filter(|group| !names.contains(group)).collect::<Vec<_>>(),
            );
            prune.check_network(&names, &units).map_err(in_config)?;
        }
        let (run_dir, lock) = match run_dir {
            Some(opened) => opened,
            None => {
                // The resolved config says everything a resume needs, `--from` included.
                if let (Some(prune), Some(dir)) = (config.prune.as_mut(), &options.from) {
                    prune.from = Some(dir.clone());
                }
                let dir = match &options.run_dir {
                    Some(dir) => claim_run_dir(dir)?,
                    None => create_run_dir(&options.out, &config.name)?,
                };
                let lock = lock(&dir, Access::Write)?;
                let resolved = toml::to_string(&config).context("cannot serialize the resolved config")?;
                write_atomic(&dir.join("config.toml"), resolved.as_bytes())?;
                (dir, lock)
            }
        };
        coppice_train::stop::set_run_dir(Some(run_dir.clone()));
        println!("run {} on {} -> {}", config.name, config.backend, run_dir.display());
        Ok((Experiment { config, data, device, parallel, from, run_dir, _lock: lock }, start_net))
    }

    /// The trained dense network: `start_net` itself when it was loaded from a saved run.
    /// `done` are the epochs an interrupted run already trained; every epoch is journalled in
    /// `checkpoints/` so that `--resume` can go on after it.
    /// The experiment's training, from `[train]`, in the run directory's `train/`; the
    /// pruning rounds and fine-tuning build on it.
    pub fn train_setup(&self, options: &RunOptions, label: &str) -> TrainSetup {
        TrainSetup {
            config: self.config.train.clone(),
            device: self.device.clone(),
            artifact_dir: self.run_dir.join("train"),
            seed: self.config.seed,
            progress: options.progress,
            label: label.into(),
            parallel: self.parallel.clone(),
        }
    }

    pub fn dense(
        &self,
        start_net: Network,
        options: &RunOptions,
        metrics: &mut MetricsLog,
        label: &str,
        done: Vec<EpochRecord>,
    ) -> Result<Network> {
        // A saved run or imported weights are the dense network already.
        if self.from.is_some() || self.config.model.weights.is_some() {
            return Ok(start_net);
        }
        let setup = self.train_setup(options, label);
        let train = self.data.train_dataset();
        let valid = ImageDataset::new(self.data.valid.clone());
        let journal = EpochJournal::start(&self.run_dir, done.clone())?;
        let callbacks = Callbacks::new(vec![Box::new(journal)]);
        let outcome = fit_after(start_net, train, valid, self.data.batcher.clone(), &setup, &callbacks, done)?;
        metrics.extend(0, &outcome.epochs)?;
        Ok(outcome.net)
    }
}

/// The network the config's `[model]` describes, sized for the data: with its seeded initial
/// weights, `model.init`'s, or `model.weights`'.
pub fn configured_network(config: &Config, config_path: &Path, data: &Data, device: &Device) -> Result<Network> {
    let in_config = |(field, problem): (String, String)| anyhow!("{}: {field}: {problem}", config_path.display());
    let architecture = config.architecture(data.input(), data.classes()).map_err(in_config)?;
    let size = architecture.size().map_err(|e| in_config(("model".into(), e.to_string())))?;
    resources::check(config, size, data, crate::alloc::available_memory()).map_err(in_config)?;
    match &config.model.init {
        None => {
            let net = architecture.init(device).map_err(|e| in_config(("model".into(), e.to_string())))?;
            match &config.model.weights {
                Some(weights) => crate::import::load_weights(net, weights, &config.model.rename)
                    .with_context(|| format!("{}: model.weights", config_path.display())),
                None => Ok(net),
            }
        }
        Some(dir) => {
            let _reading = open_saved_run(dir).with_context(|| format!("{}: model.init", config_path.display()))?;
            let net = load_model(dir, device).with_context(|| format!("{}: model.init", config_path.display()))?;
            if net.architecture() != architecture {
                return Err(anyhow!(
                    "{}: model.init: {} holds another network than the config asks for; fix: point model.init at weights of the config's model",
                    config_path.display(),
                    dir.display(),
                ));
            }
            Ok(net)
        }
    }
}
