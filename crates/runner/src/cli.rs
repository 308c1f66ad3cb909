//! The command line's definition: the commands, their options, and the parsing of option values.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};
use coppice_train::Progress;

use crate::backend::BackendName;
use crate::experiment;

#[derive(Parser)]
#[command(name = "coppice", version, about = "Train, prune and retrain neural networks from one TOML config")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The options of every command that trains.
#[derive(clap::Args)]
pub struct RunArgs {
    /// flex, ndarray, wgpu or cuda (the last two in builds with those features); overrides
    /// `backend` in the config.
    #[arg(long)]
    backend: Option<String>,
    /// Directory that receives the run (or sweep) directory.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Override a config key, e.g. --set train.epochs=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Plain lines even in a terminal (one per epoch, or per sweep point), instead of
    /// burn-train's screen or a progress bar.
    #[arg(long)]
    plain: bool,
    /// Train data-parallel on these devices, e.g. cuda:0,cuda:1 (`devices` in the config).
    #[arg(long, value_delimiter = ',', value_name = "DEVICE,...")]
    devices: Vec<String>,
}

impl RunArgs {
    /// For commands that start runs in child processes: the backend to pass on, `--out`, the
    /// overrides (with `--devices` among them) and `--plain`.
    pub fn for_children(self) -> (Option<String>, PathBuf, Vec<String>, bool) {
        let (backend, overrides) = with_devices(self.backend, self.devices, self.overrides);
        (backend, self.out, overrides, self.plain)
    }

    pub fn options(self, from: Option<PathBuf>) -> Result<(experiment::RunOptions, Vec<String>)> {
        let (backend, overrides) = with_devices(self.backend, self.devices, self.overrides);
        let options = experiment::RunOptions {
            backend: parse_backend(backend)?,
            from,
            out: self.out,
            run_dir: None,
            progress: if self.plain { Progress::Lines } else { Progress::Auto },
        };
        Ok((options, overrides))
    }
}

/// `--devices a,b` as the override `devices = ["a", "b"]`, with `backend` set to the first
/// device's when no `--backend` names one.
fn with_devices(
    backend: Option<String>,
    devices: Vec<String>,
    mut overrides: Vec<String>,
) -> (Option<String>, Vec<String>) {
    let Some(first) = devices.first() else {
        return (backend, overrides);
    };
    if backend.is_none() {
        overrides.push(format!("backend={:?}", first.split(':').next().unwrap_or_default()));
    }
    let quoted: Vec<String> = devices.iter().map(|d| format!("{d:?}")).collect();
    overrides.push(format!("devices=[{}]", quoted.join(", ")));
    (backend, overrides)
}

#[derive(Subcommand)]
pub enum Command {
    /// Train (and prune) as the config says; writes runs/<name>-<timestamp>/.
    Run {
        #[arg(required_unless_present = "resume")]
        config: Option<PathBuf>,
        /// Continue an interrupted run in its own directory, after its last completed round or
        /// epoch (with --resume, --set may change only the learning rate keys).
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out"])]
        resume: Option<PathBuf>,
        /// The run's directory itself, instead of a new one under --out. Safe to repeat: it
        /// resumes the run if it stopped and does nothing if it finished (for schedulers).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "out"])]
        run_dir: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Prune each layer alone at several levels, evaluate without retraining, plot.
    Sensitivity {
        config: PathBuf,
        /// Sparsity levels to try per layer.
        #[arg(long, value_delimiter = ',', default_values_t = coppice_prune::DEFAULT_LEVELS)]
        levels: Vec<f64>,
        #[command(flatten)]
        run: RunArgs,
        /// Analyse a saved run's model instead of training the config's network first.
        #[arg(long, value_name = "RUN_DIR")]
        from: Option<PathBuf>,
    },
    /// Train a saved (pruned) model further, keeping its zeros and its sizes; a new run directory.
    Finetune {
        run_dir: PathBuf,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        lr: Option<f64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Export a run's weights (zeros baked in) with its architecture: safetensors in PyTorch's
    /// layout, or burnpack.
    Export {
        run_dir: PathBuf,
        #[arg(long, default_value = "safetensors")]
        format: String,
        /// Directory to write to (default RUN_DIR/export).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run every combination of the config's list-valued keys; sweep.csv has mean and std over seeds.
    Sweep {
        #[arg(required_unless_present = "collect")]
        config: Option<PathBuf>,
        /// Instead of running the points, print one `coppice run` line per point (commands), for
        /// GNU parallel or any batch system, or a Slurm job-array script (slurm).
        #[arg(long, value_name = "commands|slurm", conflicts_with = "jobs")]
        emit: Option<String>,
        /// Summarize the sweep in SWEEP_DIR from the points that have finished, wherever they ran,
        /// and list the others.
        #[arg(long, value_name = "SWEEP_DIR", conflicts_with_all = ["config", "emit", "jobs"])]
        collect: Option<PathBuf>,
        /// Runs at a time (child processes).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// What every run of the grid gets (`--set` after the grid's values); `--out` receives
        /// the sweep directory.
        #[command(flatten)]
        run: RunArgs,
    },
    /// A markdown report with SVG plots over one or more run directories; or sweeps side by
    /// side: accuracy against parameters and against inference time, measured now.
    Report {
        /// Run directories, or sweep directories (not both).
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        /// Directory that receives the report directory.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
    },
    /// Record the SHA256SUMS of a run's model, checkpoints and exports again (or of an export
    /// or checkpoint directory), after you have checked the files: a run whose sums are missing
    /// or do not list a file is refused until then.
    Reseal { dir: PathBuf },
    /// Check a config without running it.
    Validate {
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Evaluate a saved run's model on its test set, or the weights a config starts from
    /// (model.weights) on the config's test set.
    Eval {
        run_dir: PathBuf,
        #[arg(long)]
        backend: Option<String>,
        /// Through the sparse engine instead, next to the dense flex evaluation: the run's model
        /// converted in memory, or FILE (from `export --format sparse`).
        #[arg(long, num_args = 0..=1, value_name = "FILE")]
        sparse: Option<Option<PathBuf>>,
    },
    /// Train one config on several backends from the same initial weights and compare speed,
    /// memory, accuracy and the logits of the same weights; writes compare.csv.
    Compare {
        config: PathBuf,
        #[arg(long, default_value = "flex,ndarray", value_delimiter = ',')]
        backends: Vec<String>,
        /// Training epochs (overrides train.epochs).
        #[arg(long)]
        epochs: Option<usize>,
        /// Directory that receives the comparison directory.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// A line per finished backend even in a terminal, instead of a progress bar.
        #[arg(long)]
        plain: bool,
    },
    /// Measure training (and inference) throughput in samples/s per backend, model and batch size.
    Bench {
        #[arg(long, default_value = "flex,ndarray", value_delimiter = ',')]
        backends: Vec<String>,
        #[arg(long, default_value = "lenet300,lenet5", value_delimiter = ',')]
        models: Vec<String>,
        #[arg(long, default_value = "64,256", value_delimiter = ',')]
        batch_sizes: Vec<usize>,
        /// Time training with each of these optimizers (the default [train] settings otherwise).
        #[arg(long, default_value = "sgd", value_delimiter = ',')]
        optimizers: Vec<String>,
        /// Also time inference over the test set at batch 1000 (one window is one pass).
        #[arg(long)]
        inference: bool,
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        windows: usize,
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// MNIST directory to take the batches from.
        #[arg(long, default_value = "datasets/mnist")]
        data: PathBuf,
        /// Also measure training with 90 % weight masks held through every step.
        #[arg(long)]
        masks: bool,
        /// Build each training batch from the samples inside the timed step, as training does.
        #[arg(long)]
        loader: bool,
        /// As --loader, with the samples augmented: a random crop of 4 pixels of padding and a
        /// random horizontal flip.
        #[arg(long)]
        augment: bool,
        /// A line per measurement even in a terminal, instead of a progress bar.
        #[arg(long)]
        plain: bool,
        /// Instead: this weight-pruned run's inference, dense flex against the sparse engine at
        /// batch 1, 64 and 1000, with per-layer times.
        #[arg(long, value_name = "RUN_DIR")]
        sparse: Option<PathBuf>,
        /// With --sparse: also this compressed file of the run (`export --format compressed`),
        /// decoded as the engine loads it.
        #[arg(long, value_name = "FILE", requires = "sparse")]
        compressed: Option<PathBuf>,
    },
}

pub fn parse_backend(name: Option<String>) -> Result<Option<BackendName>> {
    name.map(|n| n.parse::<BackendName>().map_err(|e| anyhow!("--backend: {e}"))).transpose()
}

pub fn parse_optimizer(name: &str) -> Result<coppice_train::OptimizerKind> {
    match name {
        "sgd" => Ok(coppice_train::OptimizerKind::Sgd),
        "adam" => Ok(coppice_train::OptimizerKind::Adam),
        other => Err(anyhow!("--optimizers: unknown optimizer {other:?}; fix: use sgd and/or adam")),
    }
}

pub fn parse_backends(names: &[String]) -> Result<Vec<BackendName>> {
    names
        .iter()
        .map(|b| b.parse())
        .collect::<Result<Vec<BackendName>, String>>()
        .map_err(|e| anyhow!("--backends: {e}"))
}
