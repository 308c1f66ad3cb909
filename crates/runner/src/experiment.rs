//! `coppice run` and `coppice eval`: one experiment from config to run directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use coppice_data::{ImageBatcher, ImageDataset, ImageSet, MnistSplit, Normalization, load_mnist, train_valid_split};
use coppice_models::{Architecture, InputShape, Network, Prunable, count_nonzero};
use coppice_train::{Callbacks, EpochRecord, Evaluation, Progress, TrainSetup, evaluate, fit};
use serde::Serialize;

use crate::backend::BackendName;
use crate::config::{Config, DatasetKind};
use crate::rundir::{create_run_dir, write_atomic};

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
        let DatasetKind::Mnist = d.dataset;
        let context = || format!("data.dir = {:?}", d.dir.display().to_string());
        let full = load_mnist(&d.dir, MnistSplit::Train).with_context(context)?;
        let mut test = load_mnist(&d.dir, MnistSplit::Test).with_context(context)?;
        let (mut train, valid) = train_valid_split(&full, d.valid_fraction, config.seed);
        if d.train_limit > 0 {
            train = train.take(d.train_limit);
        }
        if d.test_limit > 0 {
            test = test.take(d.test_limit);
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
}

/// `summary.json`: a contract for scripts. The top-level keys named in the README stay.
#[derive(Serialize)]
pub struct Summary {
    pub name: String,
    pub backend: String,
    pub seed: u64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub valid_accuracy: Option<f64>,
    pub params_total: usize,
    pub params_nonzero: usize,
    pub flops: usize,
    pub wall_seconds: f64,
    pub epochs: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    pub architecture: Architecture,
}

pub struct RunOptions {
    pub backend: Option<BackendName>,
    pub out: PathBuf,
    pub progress: Progress,
}

/// Runs a config end to end and returns the run directory.
pub fn run(config_path: &Path, overrides: &[String], options: &RunOptions) -> Result<PathBuf> {
    let started = Instant::now();
    let mut config = Config::load(config_path, overrides)?;
    if let Some(backend) = options.backend {
        config.backend = backend;
    }
    let data = Data::load(&config)?;
    let architecture = config
        .architecture(data.input(), data.classes())
        .map_err(|(field, problem)| anyhow!("{}: {field}: {problem}", config_path.display()))?;

    let run_dir = create_run_dir(&options.out, &config.name)?;
    let resolved = toml::to_string(&config).context("cannot serialize the resolved config")?;
    write_atomic(&run_dir.join("config.toml"), resolved.as_bytes())?;
    println!("run {} on {} -> {}", config.name, config.backend, run_dir.display());

    let device = config.backend.device();
    device.seed(config.seed);
    let net = architecture.init(&device);
    let setup = TrainSetup {
        config: config.train.clone(),
        device: device.clone(),
        artifact_dir: run_dir.join("train"),
        seed: config.seed,
        progress: options.progress,
        label: "train".into(),
    };
    let outcome = fit(
        net,
        ImageDataset::new(data.train.clone()),
        ImageDataset::new(data.valid.clone()),
        data.batcher.clone(),
        &setup,
        &Callbacks::default(),
    )?;
    write_atomic(&run_dir.join("metrics.csv"), metrics_csv(&outcome.epochs).as_bytes())?;

    let test = evaluate_test(&outcome.net, &data, &config, &device)?;
    save_model(&outcome.net, &run_dir)?;
    let summary = Summary {
        name: config.name.clone(),
        backend: config.backend.to_string(),
        seed: config.seed,
        test_accuracy: test.accuracy,
        test_loss: test.loss,
        valid_accuracy: outcome.epochs.last().and_then(|e| e.valid_accuracy),
        params_total: outcome.net.num_params(),
        params_nonzero: count_nonzero(&outcome.net),
        flops: outcome.net.layer_costs().iter().map(|c| c.flops).sum(),
        wall_seconds: started.elapsed().as_secs_f64(),
        epochs: outcome.epochs.len(),
        train_samples: data.train.len(),
        test_samples: test.samples,
        architecture: outcome.net.architecture(),
    };
    write_atomic(&run_dir.join("summary.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    println!(
        "test accuracy {:.2}% (loss {:.4}) on {} samples; {} parameters; {:.1}s",
        test.accuracy * 100.0,
        test.loss,
        test.samples,
        summary.params_total,
        summary.wall_seconds
    );
    Ok(run_dir)
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
    net.clone().save_file(&path).map_err(|e| anyhow!("{}: cannot save the model: {e}", path.display()))
}

/// Rebuilds a run's network from `architecture.json` and loads `model.bpk` into it.
pub fn load_model(run_dir: &Path, device: &burn::prelude::Device) -> Result<Network> {
    let arch_path = run_dir.join("architecture.json");
    let text = std::fs::read_to_string(&arch_path).with_context(|| {
        format!("{}: cannot read; fix: pass a run directory written by `coppice run`", arch_path.display())
    })?;
    let architecture: Architecture =
        serde_json::from_str(&text).with_context(|| format!("{}: not a coppice architecture", arch_path.display()))?;
    let model_path = run_dir.join("model.bpk");
    if !model_path.is_file() {
        return Err(anyhow!("{}: not found; fix: pass a run directory that finished training", model_path.display()));
    }
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
    let mut config = Config::load(&run_dir.join("config.toml"), &[])?;
    if let Some(backend) = backend {
        config.backend = backend;
    }
    let device = config.backend.device();
    let net = load_model(run_dir, &device)?;
    let data = Data::load(&config)?;
    evaluate_test(&net, &data, &config, &device)
}

pub fn metrics_csv(epochs: &[EpochRecord]) -> String {
    let mut csv = String::from("epoch,split,loss,accuracy,lr,seconds\n");
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for e in epochs {
        let _ =
            writeln!(csv, "{},train,{:.6},{:.6},{:.6},{:.3}", e.epoch, e.train_loss, e.train_accuracy, e.lr, e.seconds);
        let _ = writeln!(
            csv,
            "{},valid,{},{},{:.6},{:.3}",
            e.epoch,
            opt(e.valid_loss),
            opt(e.valid_accuracy),
            e.lr,
            e.seconds
        );
    }
    csv
}
