//! The experiment config: one TOML file, every key documented in docs/config.md with its default.

use std::path::{Path, PathBuf};

use coppice_data::Augment;
use coppice_models::{Architecture, InputShape, ModelConfig, Preset};
use coppice_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::backend::BackendName;
use crate::devices::ParallelKind;
use coppice_prune::{PruneConfig, QuantizeConfig};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub backend: BackendName,
    /// Data-parallel training on these devices, e.g. `["cuda:0", "cuda:1"]`; empty: the
    /// backend's one device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Where the optimizer runs with several devices.
    #[serde(default, skip_serializing_if = "is_default")]
    pub parallel: ParallelKind,
    #[serde(default)]
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    /// Absent: train dense only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneConfig>,
    /// Absent: the pruned weights stay f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<QuantizeConfig>,
}

fn default_seed() -> u64 {
    42
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// MNIST-format IDX files; Fashion-MNIST uses the same format and file names.
    Mnist,
    /// The CIFAR-10 binary version (`data_batch_1.bin` ... `test_batch.bin`); not bundled.
    Cifar10,
    /// PNG and JPEG images in `train/<class>/` and `test/<class>/` (and optionally `valid/`).
    Folder,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Relative to the directory `coppice` runs in.
    pub dir: PathBuf,
    /// Fraction of the training file held out for validation.
    pub valid_fraction: f64,
    /// Use only this many training samples (after the split); 0 means all.
    pub train_limit: usize,
    /// Use only this many test samples; 0 means all.
    pub test_limit: usize,
    /// Pixels are scaled to [0, 1], then normalized as (x - mean) / std, per channel.
    pub mean: Statistic,
    pub std: Statistic,
    /// Folders only: 1 or 3; absent: 3 if any training image has colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Folders only: `[height, width]` every image is resized to; absent: the images' own size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<[usize; 2]>,
    /// Folders only: skip unreadable images with a warning instead of stopping.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip_bad_images: bool,
    /// Training images only, drawn anew each epoch.
    #[serde(skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Mnist,
            dir: PathBuf::from("datasets/mnist"),
            valid_fraction: 0.1,
            train_limit: 0,
            test_limit: 0,
            mean: Statistic::value(0.1307),
            std: Statistic::value(0.3081),
            channels: None,
            size: None,
            skip_bad_images: false,
            augment: Augment::default(),
        }
    }
}

/// The largest side `data.size` takes: beyond it one image's activations outgrow any network here.
const MAX_SIDE: usize = 4096;

impl DataConfig {
    fn validate_folder_keys(&self) -> Result<(), (String, String)> {
        let folder_only = [
            ("data.channels", self.channels.is_some()),
            ("data.size", self.size.is_some()),
            ("data.skip_bad_images", self.skip_bad_images),
        ];
        if self.dataset != DatasetKind::Folder
            && let Some((field, _)) = folder_only.iter().find(|(_, set)| *set)
        {
            return Err((
                (*field).into(),
                "applies to image folders only; fix: remove it, or set data.dataset = \"folder\"".into(),
            ));
        }
        if let Some(channels) = self.channels.filter(|c| !matches!(c, 1 | 3)) {
            return Err(("data.channels".into(), format!("{channels} must be 1 (grayscale) or 3 (RGB)")));
        }
        if let Some(size) = self.size.filter(|s| s.iter().any(|&side| side == 0 || side > MAX_SIDE)) {
            return Err((
                "data.size".into(),
                format!("{size:?} must be [height, width], each in 1..={MAX_SIDE}, e.g. [28, 28]"),
            ));
        }
        Ok(())
    }
}

/// A config error: which file, which field, what is wrong and how to fix it, on one line.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub problem: String,
}

impl Config {
    /// Defaults everywhere but the data directory, for commands that only need the data.
    pub fn for_data_dir(dir: PathBuf) -> Config {
        Config {
            name: "bench".into(),
            seed: default_seed(),
            backend: BackendName::default(),
            devices: Vec::new(),
            parallel: ParallelKind::default(),
            data: DataConfig { dir, ..DataConfig::default() },
            model: ModelConfig::preset(Preset::Mlp),
            train: TrainConfig::default(),
            prune: None,
            quantize: None,
        }
    }

    /// Reads `path`, applies `--set key=value` overrides, and checks every range.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let error = |field: &str, problem: String| ConfigError { file: file.clone(), field: field.into(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| {
            error(
                "(file)",
                format!("cannot read the config: {e}; fix: check the path, e.g. configs/lenet300-mnist.toml"),
            )
        })?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            let at = line.map_or(String::new(), |l| format!(" at line {l}"));
            error("(syntax)", format!("invalid TOML{at}: {}", e.message().trim()))
        })?;
        for assignment in overrides {
            apply_override(&mut table, assignment).map_err(|problem| error("--set", problem))?;
        }
        let raw = toml::Value::Table(table.clone());
        let config: Config = serde_path_to_error::deserialize(table).map_err(|e| {
            let field = e.path().to_string();
            let problem = e.inner().message().trim().replace('\n', " ");
            // A list where one value belongs is a sweep, whatever serde says of it (an enum's
            // message names no sequence).
            let list = field.split('.').try_fold(&raw, |v, k| v.get(k));
            let fix = if problem.contains("unknown field") {
                "; fix: remove or rename the key (docs/config.md lists every key)"
            } else if problem.contains("missing field") {
                "; fix: add the key (docs/config.md lists every key)"
            } else if problem.contains("invalid type: sequence") || list.is_some_and(toml::Value::is_array) {
                "; fix: a list of values is a sweep: run it with `coppice sweep`"
            } else {
                ""
            };
            error(if field == "." { "(top level)" } else { &field }, format!("{problem}{fix}"))
        })?;
        config.validate().map_err(|(field, problem)| error(&field, problem))?;
        Ok(config)
    }

    /// Range checks that serde's types cannot express. Returns the field and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err((
                "name".into(),
                format!("{:?} is not usable in a directory name; fix: use letters, digits and dashes", self.name),
            ));
        }
        let data = &self.data;
        if !(data.valid_fraction > 0.0 && data.valid_fraction < 1.0) {
            return Err(("data.valid_fraction".into(), format!("{} must be in (0, 1), e.g. 0.1", data.valid_fraction)));
        }
        if let Statistic::Values(mean) = &data.mean
            && !mean.iter().all(|m| m.is_finite())
        {
            return Err((
                "data.mean".into(),
                format!("{mean:?} must be finite numbers, e.g. 0.1307 for MNIST, or \"auto\""),
            ));
        }
        if let Statistic::Values(std) = &data.std
            && !std.iter().all(|s| s.is_finite() && *s > 0.0)
        {
            return Err((
                "data.std".into(),
                format!("{std:?} must be finite and > 0, e.g. 0.3081 for MNIST, or \"auto\""),
            ));
        }
        data.validate_folder_keys()?;
        self.train.validate().map_err(|e| (e.field.to_string(), format!("{} {}", e.value, e.reason)))?;
        if let Some(prune) = &self.prune {
            prune.validate()?;
        }
        if let Some(quantize) = &self.quantize {
            quantize.validate(self.prune.as_ref().is_some_and(|p| !p.removes_units()))?;
            if self.prune.as_ref().is_some_and(|p| p.include_bias) {
                return Err((
                    "quantize.method".into(),
                    "quantization codes weights and keeps biases f32, so pruned biases would grow back; fix: prune.include_bias = false".into(),
                ));
            }
        }
        crate::devices::check(&self.devices, self.backend, self.train.batch_size)?;
        self.model.check_keys()
    }

    /// The architecture this config builds for inputs of `input` with `classes` outputs.
    pub fn architecture(&self, input: InputShape, classes: usize) -> Result<Architecture, (String, String)> {
        self.model.architecture(input, classes)
    }
}

/// `train.lr=0.1` sets `[train] lr = 0.1`; a value that is not valid TOML is taken as a string.
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| format!("{assignment:?} is not key=value; fix: e.g. --set train.lr=0.01"))?;
    let key = key.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {}", raw.trim())) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.trim().into())),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{key:?} is not a valid key; fix: e.g. --set train.lr=0.01"));
    }
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut current = table;
    for part in parents {
        let entry = current.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("{part} in {key:?} is a value, not a section"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

mod statistic;
pub use statistic::Statistic;

#[cfg(test)]
mod tests;
