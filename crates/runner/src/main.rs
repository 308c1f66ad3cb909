//! The `coppice` command line.

mod alloc;
mod backend;
mod bench;
mod checkpoint;
mod child;
mod compare;
mod config;
mod data;
mod eval;
mod experiment;
mod export;
mod finetune;
mod integrity;
mod latency;
mod lock;
mod plot;
mod progress;
mod report;
mod resources;
mod run;
mod rundir;
mod saved;
mod sensitivity;
mod sparse;
mod sparse_bench;
mod summary;
mod sweep;
mod tables;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};
use coppice_train::Progress;

use crate::backend::BackendName;
use crate::config::Config;

#[derive(Parser)]
#[command(name = "coppice", version, about = "Train, prune and retrain neural networks from one TOML config")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The options of every command that trains.
#[derive(clap::Args)]
struct RunArgs {
    /// flex, ndarray, wgpu or cuda (the last two in builds with those features); overrides
    /// `backend` in the config.
    #[arg(long)]
    backend: Option<String>,
    /// Directory that receives the run directory.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Override a config key, e.g. --set train.epochs=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// One line per epoch even in a terminal, instead of burn-train's TUI.
    #[arg(long)]
    plain: bool,
}

impl RunArgs {
    fn options(self, from: Option<PathBuf>) -> Result<(experiment::RunOptions, Vec<String>)> {
        let options = experiment::RunOptions {
            backend: parse_backend(self.backend)?,
            from,
            out: self.out,
            run_dir: None,
            progress: if self.plain { Progress::Lines } else { Progress::Auto },
        };
        Ok((options, self.overrides))
    }
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long)]
        backend: Option<String>,
        #[arg(long, default_value = "runs")]
        out: PathBuf,
        /// Applied to every run of the grid.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// A line per finished run even in a terminal, instead of a progress bar.
        #[arg(long)]
        plain: bool,
    },
    /// A markdown report with SVG plots over one or more run directories.
    Report {
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        /// Directory that receives the report directory.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
    },
    /// Check a config without running it.
    Validate {
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Evaluate a saved run's model on its test set.
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
        /// A line per measurement even in a terminal, instead of a progress bar.
        #[arg(long)]
        plain: bool,
        /// Instead: this weight-pruned run's inference, dense flex against the sparse engine at
        /// batch 1, 64 and 1000, with per-layer times.
        #[arg(long, value_name = "RUN_DIR")]
        sparse: Option<PathBuf>,
    },
}

fn parse_backend(name: Option<String>) -> Result<Option<BackendName>> {
    name.map(|n| n.parse::<BackendName>().map_err(|e| anyhow!("--backend: {e}"))).transpose()
}

fn parse_optimizer(name: &str) -> Result<coppice_train::OptimizerKind> {
    match name {
        "sgd" => Ok(coppice_train::OptimizerKind::Sgd),
        "adam" => Ok(coppice_train::OptimizerKind::Adam),
        other => Err(anyhow!("--optimizers: unknown optimizer {other:?}; fix: use sgd and/or adam")),
    }
}

fn parse_backends(names: &[String]) -> Result<Vec<BackendName>> {
    names
        .iter()
        .map(|b| b.parse())
        .collect::<Result<Vec<BackendName>, String>>()
        .map_err(|e| anyhow!("--backends: {e}"))
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let cli = Cli::parse();
    if let Err(error) = coppice_train::stop::handle_signals() {
        eprintln!("warning: cannot handle SIGINT and SIGTERM ({error}); a stop ends the process at once");
    }
    // The command runs on one of rayon's threads: a kernel that splits its work then runs one
    // part itself and hands the others to the pool's other threads, where from outside the pool
    // it would hand every part over and wait. LeNet-5 trained at batch 256 at 8.0k to 8.6k
    // samples/s this way against 7.3k (`coppice bench`, three alternating runs).
    match rayon::scope(|_| execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

/// One line on stderr for a failed command: scripts and CI logs grep for it, and the chain
/// already names file and field. A stopped training says where it stopped and how to go on,
/// and exits as a signal would.
fn report(error: &anyhow::Error) -> ExitCode {
    let run_dir = coppice_train::stop::run_dir();
    let resume = |dir: &std::path::Path| format!("coppice run --resume {}", dir.display());
    match error.chain().find_map(|e| e.downcast_ref::<coppice_train::TrainError>()) {
        Some(coppice_train::TrainError::Interrupted { epochs, cause }) => {
            eprintln!("{}", coppice_train::stop::interrupted_line(Some(*epochs), run_dir.as_deref()));
            ExitCode::from(cause.exit_code())
        }
        Some(diverged @ coppice_train::TrainError::Diverged { .. }) => {
            let next = run_dir.map_or(String::new(), |dir| {
                format!("; resume at a lower rate with `{} --set train.lr=<lower rate>`", resume(&dir))
            });
            eprintln!("error: {diverged}{next}");
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("error: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<()> {
    match command {
        Command::Run { config, resume, run_dir, run } => {
            let (mut options, overrides) = run.options(None)?;
            options.run_dir = run_dir.clone();
            let run_dir = match (resume, config, run_dir) {
                (Some(run_dir), _, _) => run::resume(&run_dir, &overrides, &options)?,
                (None, Some(config), Some(dir)) => run::run_in(&config, &overrides, &options, &dir)?,
                (None, Some(config), None) => run::run(&config, &overrides, &options)?,
                (None, None, _) => unreachable!("clap requires a config unless --resume is given"),
            };
            println!("{}", run_dir.display());
        }
        Command::Sensitivity { config, levels, run, from } => {
            let (options, overrides) = run.options(from)?;
            println!("{}", sensitivity::sensitivity_run(&config, &overrides, &options, &levels)?.display());
        }
        Command::Finetune { run_dir, epochs, lr, run } => {
            let (options, overrides) = run.options(None)?;
            println!("{}", finetune::finetune(&run_dir, &overrides, epochs, lr, &options)?.display());
        }
        Command::Export { run_dir, format, out } => {
            let format = format.parse::<export::ExportFormat>().map_err(|e| anyhow!("--format: {e}"))?;
            let path = export::export(&run_dir, format, out)?;
            if format == export::ExportFormat::Safetensors {
                println!("{}", export::describe(&std::fs::read(&path)?)?);
            }
            println!("{}", path.display());
        }
        Command::Sweep { config, emit, collect, jobs, backend, out, overrides, plain } => {
            parse_backend(backend.clone())?;
            match (collect, config, emit) {
                (Some(dir), _, _) => println!("{}", sweep::collect(&dir)?.display()),
                (None, Some(config), Some(emit)) => {
                    sweep::emit(&config, &overrides, &out, backend.as_deref(), emit.parse()?)?;
                }
                (None, Some(config), None) => {
                    let dir = sweep::sweep(&config, &overrides, &out, (jobs, plain), backend.as_deref())?;
                    println!("{}", dir.display());
                }
                (None, None, _) => unreachable!("clap requires a config unless --collect is given"),
            }
        }
        Command::Report { run_dirs, out } => {
            println!("{}", report::report(&run_dirs, &out)?.display());
        }
        Command::Validate { config, overrides } => {
            let parsed = Config::load(&config, &overrides)?;
            println!(
                "{}: ok ({} on {}, {} epochs)",
                config.display(),
                parsed.name,
                parsed.backend,
                parsed.train.epochs
            );
        }
        Command::Eval { run_dir, sparse: Some(file), .. } => {
            let e = sparse::eval_sparse(&run_dir, file.as_ref())?;
            println!(
                "{}: sparse engine: test accuracy {:.2}% on {} samples (dense flex {:.2}%; logits differ by at most {:.1e}); model: {}",
                run_dir.display(),
                e.accuracy * 100.0,
                e.samples,
                e.dense_accuracy * 100.0,
                e.max_logit_difference,
                e.source
            );
        }
        Command::Eval { run_dir, backend, sparse: None } => {
            let result = eval::eval(&run_dir, parse_backend(backend)?)?;
            println!(
                "{}: test accuracy {:.2}% (loss {:.4}) on {} samples",
                run_dir.display(),
                result.accuracy * 100.0,
                result.loss,
                result.samples
            );
        }
        Command::Compare { config, backends, epochs, out, mut overrides, plain } => {
            let backends = parse_backends(&backends)?;
            overrides.extend(epochs.map(|e| format!("train.epochs={e}")));
            let (dir, rows) = compare::compare(&config, &overrides, &backends, (&out, plain))?;
            print!("{}", compare::compare_table(&rows));
            println!("{}", dir.display());
        }
        Command::Bench {
            backends,
            models,
            batch_sizes,
            optimizers,
            inference,
            warmup,
            windows,
            steps,
            data,
            masks,
            plain,
            sparse,
        } => {
            if let Some(run_dir) = sparse {
                sparse_bench::print(&run_dir, &sparse_bench::bench_sparse(&run_dir, plain)?);
                return Ok(());
            }
            let backends = parse_backends(&backends)?;
            let optimizers = optimizers.iter().map(|name| parse_optimizer(name)).collect::<Result<Vec<_>>>()?;
            if windows == 0 || steps == 0 || batch_sizes.contains(&0) {
                return Err(anyhow!("--windows, --steps and --batch-sizes must be at least 1"));
            }
            let loaded = data::Data::load(&Config::for_data_dir(data))?;
            let options = bench::BenchOptions {
                backends,
                models,
                batch_sizes,
                optimizers,
                inference,
                warmup_steps: warmup,
                windows,
                steps_per_window: steps,
                masks,
                plain,
            };
            bench::print_header(&options);
            bench::bench(&loaded, &options, bench::row_line)?;
        }
    }
    Ok(())
}
