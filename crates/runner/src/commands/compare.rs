//! `coppice compare`: one config on several backends from the same initial weights, side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::prelude::*;
use coppice_data::Table;
use coppice_models::{Classifier, Network};

use crate::backend::BackendName;
use crate::child::{Place, spawn_run};
use crate::config::Config;
use crate::data::Data;
use crate::inference::latency::inference_seconds;
use crate::progress::Steps;
use crate::rundir::dir::{create_dir_durable, create_run_dir, write_atomic};
use crate::rundir::saved::{load_model, save_model};

pub struct CompareRow {
    pub backend: BackendName,
    /// Training samples per second over the run's epochs, validation passes included.
    pub train_samples_per_second: f64,
    /// Forward passes at the config's eval batch size, median of repeats.
    pub inference_samples_per_second: f64,
    pub epoch_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub device_memory_bytes: Option<u64>,
    pub test_accuracy: f64,
    /// The largest |logit - reference logit| over the test set, every backend running the
    /// reference backend's trained weights.
    pub max_logit_difference: f64,
}

/// Trains the config once per backend, each in a child process (so that its peak memory is its
/// own) and each from the same initial weights; then runs the first backend's trained network on
/// every backend over the test set and compares the logits.
pub fn compare(
    config_path: &Path,
    overrides: &[String],
    backends: &[BackendName],
    (out, plain): (&Path, bool),
) -> Result<(PathBuf, Vec<CompareRow>)> {
    if backends.is_empty() {
        return Err(anyhow!("--backends: name at least one backend, e.g. --backends flex,ndarray"));
    }
    let config = Config::load(config_path, overrides)?;
    // Every backend opens here first, so that a missing one fails before any training.
    let devices = backends.iter().map(|b| b.device()).collect::<Result<Vec<_>>>()?;
    let data = Data::load(&config)?;
    let compare_dir = create_run_dir(out, &format!("{}-compare", config.name))?;
    println!("compare {} on {} -> {}", config.name, names(backends), compare_dir.display());

    let initial_dir = compare_dir.join("initial");
    create_dir_durable(&initial_dir).with_context(|| format!("{}: cannot create", initial_dir.display()))?;
    let seeded = Device::flex();
    seeded.seed(config.seed);
    let architecture = config
        .architecture(data.input(), data.classes())
        .map_err(|(field, problem)| anyhow!("{}: {field}: {problem}", config_path.display()))?;
    save_model(
        &architecture.init(&seeded).map_err(|e| anyhow!("{}: model: {e}", config_path.display()))?,
        &initial_dir,
    )?;

    let exe = std::env::current_exe().context("cannot find the coppice binary")?;
    let mut settings = overrides.to_vec();
    settings.push(format!("model.init={}", toml_string(&initial_dir)));
    let mut trained = Vec::new();
    let steps = Steps::start("compare", backends.len(), plain);
    for backend in backends {
        let child = spawn_run(
            &exe,
            config_path,
            Place::Under(compare_dir.join(backend.as_str())),
            &settings,
            Some(backend.as_str()),
        )?;
        let (run_dir, summary) = child.finish().with_context(|| format!("backend {backend}"))?;
        steps.step(&format!(
            "{backend}: test accuracy {:.2}%",
            summary["test_accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0
        ));
        trained.push((run_dir, summary));
    }

    let reference_dir = &trained[0].0;
    // The first backend's logits, once it has run: every backend is held against them.
    let mut reference: Option<Vec<f32>> = None;
    let mut rows = Vec::new();
    for ((backend, device), (run_dir, summary)) in backends.iter().zip(&devices).zip(&trained) {
        let net = load_model(reference_dir, device)?;
        let values = logits(&net, &data.test_batches(config.train.eval_batch_size, device));
        let reference = reference.get_or_insert_with(|| values.clone());
        let max_logit_difference =
            values.iter().zip(reference.iter()).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        let batch = config.train.eval_batch_size;
        let inference = inference_seconds(&[&net], data.input(), batch, device)[0];
        let epoch_seconds = mean_epoch_seconds(run_dir)?;
        let number = |key: &str| summary[key].as_f64();
        rows.push(CompareRow {
            backend: *backend,
            train_samples_per_second: number("train_samples").unwrap_or(f64::NAN) / epoch_seconds,
            inference_samples_per_second: batch as f64 / inference,
            epoch_seconds,
            peak_rss_bytes: summary["peak_rss_bytes"].as_u64(),
            device_memory_bytes: summary["device_memory_bytes"].as_u64(),
            test_accuracy: number("test_accuracy").unwrap_or(f64::NAN),
            max_logit_difference,
        });
    }
    write_atomic(&compare_dir.join("compare.csv"), compare_csv(&rows).as_bytes())?;
    Ok((compare_dir, rows))
}

fn names(backends: &[BackendName]) -> String {
    backends.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", ")
}

/// A path as a TOML string for `--set`.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// The logits of every test sample, flattened, on the host.
fn logits(net: &Network, batches: &[coppice_data::ImageBatch]) -> Vec<f32> {
    batches
        .iter()
        .flat_map(|b| net.forward(b.images.clone()).into_data().try_into_vec_as::<f32>().expect("logits are f32"))
        .collect()
}

/// The mean wall time of the run's training epochs (round 0 of `metrics.csv`).
fn mean_epoch_seconds(run_dir: &Path) -> Result<f64> {
    let path = run_dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let table = Table::from_csv(&text).with_context(|| format!("{}: not CSV", path.display()))?;
    let seconds: Vec<f64> = table
        .rows
        .iter()
        .filter(|row| table.number(row, "round") == Some(0.0))
        .filter(|row| table.column("split").and_then(|i| row.get(i)).is_some_and(|s| s == "train"))
        .filter_map(|row| table.number(row, "seconds"))
        .collect();
    if seconds.is_empty() {
        return Err(anyhow!("{}: no training epochs recorded", path.display()));
    }
    Ok(seconds.iter().sum::<f64>() / seconds.len() as f64)
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.0}", b as f64 / 1e6))
}

pub fn compare_csv(rows: &[CompareRow]) -> String {
    let mut table = Table::new([
        "backend",
        "train_samples_per_second",
        "inference_samples_per_second",
        "epoch_seconds",
        "peak_rss_mb",
        "device_memory_mb",
        "test_accuracy",
        "max_logit_difference",
    ]);
    for r in rows {
        table.push([
            r.backend.to_string(),
            format!("{:.1}", r.train_samples_per_second),
            format!("{:.1}", r.inference_samples_per_second),
            format!("{:.3}", r.epoch_seconds),
            megabytes(r.peak_rss_bytes),
            megabytes(r.device_memory_bytes),
            format!("{:.6}", r.test_accuracy),
            format!("{:e}", r.max_logit_difference),
        ]);
    }
    table.to_csv()
}

/// The table `coppice compare` prints, as markdown so that it pastes into a README.
pub fn compare_table(rows: &[CompareRow]) -> String {
    let mut table = String::from(
        "| backend | train samples/s | inference samples/s | epoch s | peak RSS MB | device MB | test accuracy | max logit diff |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} % | {:.1e} |",
            r.backend,
            r.train_samples_per_second,
            r.inference_samples_per_second,
            r.epoch_seconds,
            megabytes(r.peak_rss_bytes),
            megabytes(r.device_memory_bytes),
            r.test_accuracy * 100.0,
            r.max_logit_difference
        );
    }
    table
}
