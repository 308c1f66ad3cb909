//! A run's trained network on disk: `model.bpk` and `architecture.json`, checked on read.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use coppice_models::{Architecture, Network};

use super::dir::write_atomic;
use super::{integrity, resources};
use crate::config::{Config, Statistic};
use crate::data::Data;
use coppice_data::Normalization;

/// Weights (`model.bpk`) and the sizes that rebuild the network (`architecture.json`), so a
/// pruned run loads without its original config.
pub fn save_model(net: &Network, run_dir: &Path) -> Result<()> {
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    write_atomic(&run_dir.join("architecture.json"), architecture.as_bytes())?;
    // Through memory and write_atomic rather than burn's save_file, whose rename is not flushed.
    let path = run_dir.join("model.bpk");
    let bytes = net
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow!("{}: cannot save the model: {e}", path.display()))?;
    write_atomic(&path, &bytes)?;
    integrity::record(run_dir, &["architecture.json", "model.bpk"])
}

/// Rebuilds a run's network from `architecture.json` and loads `model.bpk` into it.
pub fn load_model(run_dir: &Path, device: &burn::prelude::Device) -> Result<Network> {
    let arch_path = run_dir.join("architecture.json");
    if !arch_path.is_file() {
        return Err(anyhow!("{}: not found; fix: pass a run directory written by `coppice run`", arch_path.display()));
    }
    let text = integrity::read_text(run_dir, "architecture.json")?;
    if serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("kind").is_some()) {
        return Err(anyhow!(
            "{}: written by a coppice that kept networks as kinds, whose model.bpk names tensors otherwise; fix: run the run's config.toml again",
            arch_path.display()
        ));
    }
    let architecture: Architecture =
        serde_json::from_str(&text).with_context(|| format!("{}: not a coppice architecture", arch_path.display()))?;
    let model_path = run_dir.join("model.bpk");
    if !model_path.is_file() {
        return Err(anyhow!("{}: not found; fix: pass a run directory that finished training", model_path.display()));
    }
    // The checked bytes are the ones loaded, so nothing can change the file in between.
    let bytes = integrity::read(run_dir, "model.bpk")?;
    let restore = "fix: restore the file this run wrote (its sum is in SHA256SUMS)";
    let size = architecture.size().map_err(|e| anyhow!("{}: {e}; {restore}", arch_path.display()))?;
    resources::check_saved(size, bytes.len() as u128, crate::alloc::available_memory())
        .map_err(|e| anyhow!("{}: {e}; {restore}", arch_path.display()))?;
    let net = architecture.init(device).map_err(|e| anyhow!("{}: {e}; {restore}", arch_path.display()))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes));
    record.and_then(|record| net.try_load_record(record)).map_err(|e| {
        anyhow!(
            "{}: does not fit {}: {}; fix: keep model.bpk and architecture.json from the same run",
            model_path.display(),
            arch_path.display(),
            e.to_string().replace('\n', " ")
        )
    })
}

/// What a finished run recorded of its data in summary.json: the class names and the
/// normalization its images were trained with. A run written before they were recorded has no
/// names and its config's values (which could not be `"auto"` then).
pub fn data_record(run_dir: &Path, config: &Config) -> Result<(Vec<String>, Normalization)> {
    let path = run_dir.join("summary.json");
    let summary: serde_json::Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON; fix: restore the file the run wrote", path.display()))?,
        Err(_) => serde_json::Value::Null,
    };
    let classes = serde_json::from_value(summary["classes"].clone()).unwrap_or_default();
    if let Ok(norm) = serde_json::from_value::<Normalization>(summary["normalization"].clone()) {
        return Ok((classes, norm));
    }
    let (Statistic::Values(mean), Statistic::Values(std)) = (&config.data.mean, &config.data.std) else {
        return Err(anyhow!(
            "{}: has no normalization, and data.mean or data.std is \"auto\"; fix: pass a run directory that finished",
            path.display()
        ));
    };
    Ok((classes, Normalization { mean: mean.clone(), std: std.clone() }))
}

/// A saved model must take the data's images.
pub fn check_input(architecture: &Architecture, data: &Data, dir: &Path) -> Result<()> {
    let (model, data_input) = (architecture.input(), data.input());
    if model == data_input && architecture.classes() == data.classes() {
        return Ok(());
    }
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
