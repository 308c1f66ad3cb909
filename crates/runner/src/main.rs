//! The `coppice` command line.

mod alloc;
mod backend;
mod child;
mod cli;
mod commands;
mod config;
mod confusion;
mod data;
mod devices;
mod experiment;
mod import;
mod inference;
mod plot;
mod progress;
mod pytorch;
mod rundir;
mod sweepdir;

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Parser;

use crate::cli::{Cli, Command, parse_backend, parse_backends, parse_optimizer};
use crate::commands::{bench, compare, eval, export, finetune, report, run, sensitivity, sweep, tradeoff};
use crate::config::Config;

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
    // Before any work: the kernels themselves cannot report a path the CPU lacks.
    coppice_simd::Simd::configured().map_err(|e| anyhow!(e))?;
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
        Command::Sweep { config, emit, collect, jobs, run } => {
            let (backend, out, overrides, plain) = run.for_children();
            parse_backend(backend.clone())?;
            match (collect, config, emit) {
                (Some(dir), _, _) => println!("{}", sweep::collect::collect(&dir)?.display()),
                (None, Some(config), Some(emit)) => {
                    sweep::emit::emit(&config, &overrides, &out, backend.as_deref(), emit.parse()?)?;
                }
                (None, Some(config), None) => {
                    let dir = sweep::sweep(&config, &overrides, &out, (jobs, plain), backend.as_deref())?;
                    println!("{}", dir.display());
                }
                (None, None, _) => unreachable!("clap requires a config unless --collect is given"),
            }
        }
        Command::Report { run_dirs, out } => {
            let sweeps = run_dirs.iter().filter(|d| sweepdir::is_sweep_dir(d)).count();
            let dir = match sweeps {
                0 => report::report(&run_dirs, &out)?,
                n if n == run_dirs.len() => tradeoff::report(&run_dirs, &out)?,
                _ => {
                    return Err(anyhow!(
                        "report: {sweeps} of the {} directories given are sweeps; fix: pass run directories or sweep directories, not both",
                        run_dirs.len()
                    ));
                }
            };
            println!("{}", dir.display());
        }
        Command::Reseal { dir } => {
            // A run being written would race the new sums; an export directory has no lock.
            let _writing = match dir.join("config.toml").is_file() {
                true => Some(rundir::lock::lock(&dir, rundir::lock::Access::Write)?),
                false => None,
            };
            for (sealed, names) in rundir::integrity::reseal(&dir)? {
                println!("{}: recorded the sums of {}", sealed.display(), names.join(", "));
            }
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
            let e = eval::eval_sparse(&run_dir, file.as_ref())?;
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
            let classes = eval::eval(&run_dir, parse_backend(backend)?)?;
            let result = classes.evaluation;
            let right = (result.accuracy * result.samples as f64).round();
            println!(
                "{}: test accuracy {:.2}% ({right} of {} samples; loss {:.4})",
                run_dir.display(),
                result.accuracy * 100.0,
                result.samples,
                result.loss
            );
            print!("{}", confusion::table(&classes.confusion, &classes.class_names));
            if let Some(csv) = classes.csv {
                println!("wrote {} and confusion.svg beside it", csv.display());
            }
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
            loader,
            augment,
            plain,
            sparse,
            compressed,
        } => {
            if let Some(run_dir) = sparse {
                let bench = bench::sparse::bench_sparse(&run_dir, compressed.as_deref(), plain)?;
                bench::sparse::print(&run_dir, &bench);
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
                loader: loader || augment,
                augment: if augment { coppice_data::Augment { crop: 4, flip: true } } else { Default::default() },
            };
            bench::print_header(&options);
            bench::bench(&loaded, &options, bench::row_line)?;
        }
    }
    Ok(())
}
