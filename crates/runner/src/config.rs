//! The experiment config: one TOML file, every key documented in the README with its default.

use std::path::{Path, PathBuf};

use coppice_models::{Architecture, InputShape, LeNet5Config, MlpConfig, ResNetConfig, VggConfig};
use coppice_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::backend::BackendName;
use crate::devices::ParallelKind;
use coppice_prune::PruneConfig;

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
    /// Pixels are scaled to [0, 1], then normalized as (x - mean) / std.
    pub mean: f32,
    pub std: f32,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Mnist,
            dir: PathBuf::from("datasets/mnist"),
            valid_fraction: 0.1,
            train_limit: 0,
            test_limit: 0,
            mean: 0.1307,
            std: 0.3081,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Mlp,
    Lenet5,
    Vgg,
    Resnet,
}

/// `[model]`: `kind` picks the network; the other keys size it and default to the paper's sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// mlp: hidden layer widths (default [300, 100], LeNet-300-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
    /// lenet5: filters of the first and second conv (default 20, 50) and fc1 width (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv1: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv2: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc1: Option<usize>,
    /// vgg: conv channels per stage, each stage ending in a 2x2 max-pool (default
    /// [[32, 32], [64, 64], [128, 128]]), and the hidden fc width (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Vec<usize>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc: Option<usize>,
    /// resnet: 6n + 2 layers, n basic blocks per stage (default 20; He et al. use 20, 32, 56, 110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// A run directory whose weights (`model.bpk`, `architecture.json`) the network starts from
    /// instead of the seeded random init, and then trains: how `coppice compare` starts every
    /// backend from the same weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
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
            model: ModelConfig {
                kind: ModelKind::Mlp,
                hidden: None,
                conv1: None,
                conv2: None,
                fc1: None,
                stages: None,
                fc: None,
                depth: None,
                init: None,
            },
            train: TrainConfig::default(),
            prune: None,
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
        let config: Config = serde_path_to_error::deserialize(table).map_err(|e| {
            let field = e.path().to_string();
            let problem = e.inner().message().trim().replace('\n', " ");
            let fix = if problem.contains("unknown field") {
                "; fix: remove or rename the key (README, \"Config reference\", lists every key)"
            } else if problem.contains("missing field") {
                "; fix: add the key (README, \"Config reference\")"
            } else if problem.contains("invalid type: sequence") {
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
        if !data.mean.is_finite() {
            return Err(("data.mean".into(), format!("{} must be a finite number, e.g. 0.1307 for MNIST", data.mean)));
        }
        if !(data.std.is_finite() && data.std > 0.0) {
            return Err(("data.std".into(), format!("{} must be finite and > 0, e.g. 0.3081 for MNIST", data.std)));
        }
        self.train.validate().map_err(|e| (e.field.to_string(), format!("{} {}", e.value, e.reason)))?;
        if let Some(prune) = &self.prune {
            prune.validate()?;
        }
        crate::devices::check(self)?;
        self.model.check_keys()
    }

    /// The architecture this config builds for inputs of `input` with `classes` outputs.
    pub fn architecture(&self, input: InputShape, classes: usize) -> Result<Architecture, (String, String)> {
        let m = &self.model;
        let zero = |name: &str, values: &[usize]| {
            if values.contains(&0) {
                Err((format!("model.{name}"), "layer sizes must be at least 1".to_string()))
            } else {
                Ok(())
            }
        };
        Ok(match m.kind {
            ModelKind::Mlp => {
                let hidden = m.hidden.clone().unwrap_or_else(|| vec![300, 100]);
                zero("hidden", &hidden)?;
                Architecture::Mlp(MlpConfig { inputs: input.pixels(), hidden, classes })
            }
            ModelKind::Lenet5 => {
                let defaults = LeNet5Config::new();
                let config = LeNet5Config {
                    channels: input.channels,
                    height: input.height,
                    width: input.width,
                    conv1: m.conv1.unwrap_or(defaults.conv1),
                    conv2: m.conv2.unwrap_or(defaults.conv2),
                    fc1: m.fc1.unwrap_or(defaults.fc1),
                    classes,
                };
                zero("conv1", &[config.conv1, config.conv2, config.fc1])?;
                if config.feature_hw().is_none() {
                    return Err((
                        "model.kind".into(),
                        format!("lenet5 needs images of at least 16x16, the data has {}x{}", input.height, input.width),
                    ));
                }
                Architecture::Lenet5(config)
            }
            ModelKind::Vgg => {
                let defaults = VggConfig::new();
                let config = VggConfig {
                    channels: input.channels,
                    height: input.height,
                    width: input.width,
                    stages: m.stages.clone().unwrap_or(defaults.stages),
                    fc: m.fc.unwrap_or(defaults.fc),
                    classes,
                };
                if config.stages.iter().any(|s| s.is_empty() || s.contains(&0)) || config.fc == 0 {
                    return Err((
                        "model.stages".into(),
                        "every stage needs at least one conv and sizes of at least 1".into(),
                    ));
                }
                if config.feature_hw().is_none() {
                    return Err((
                        "model.stages".into(),
                        format!(
                            "{} pooling stages shrink {}x{} images to nothing; fix: use fewer stages",
                            config.stages.len(),
                            input.height,
                            input.width
                        ),
                    ));
                }
                Architecture::Vgg(config)
            }
            ModelKind::Resnet => {
                let depth = m.depth.unwrap_or(20);
                let config = ResNetConfig::new()
                    .with_channels(input.channels)
                    .with_height(input.height)
                    .with_width(input.width)
                    .with_classes(classes)
                    .with_depth(depth)
                    .ok_or_else(|| {
                        (
                            "model.depth".to_string(),
                            format!("{depth} is not 6n + 2 for n >= 1; fix: use 20, 32, 56 or 110"),
                        )
                    })?;
                if input.height < 4 || input.width < 4 {
                    return Err((
                        "model.kind".into(),
                        format!("resnet needs images of at least 4x4, the data has {}x{}", input.height, input.width),
                    ));
                }
                Architecture::Resnet(config)
            }
        })
    }
}

impl ModelConfig {
    fn check_keys(&self) -> Result<(), (String, String)> {
        let keys = [
            ("hidden", self.hidden.is_some(), ModelKind::Mlp),
            ("conv1", self.conv1.is_some(), ModelKind::Lenet5),
            ("conv2", self.conv2.is_some(), ModelKind::Lenet5),
            ("fc1", self.fc1.is_some(), ModelKind::Lenet5),
            ("stages", self.stages.is_some(), ModelKind::Vgg),
            ("fc", self.fc.is_some(), ModelKind::Vgg),
            ("depth", self.depth.is_some(), ModelKind::Resnet),
        ];
        let misplaced = keys.into_iter().find(|(_, set, kind)| *set && *kind != self.kind).map(|(key, _, _)| key);
        match misplaced {
            Some(key) => Err((
                format!("model.{key}"),
                format!("does not apply to kind = \"{}\"; fix: remove it", self.kind_name()),
            )),
            None => Ok(()),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            ModelKind::Mlp => "mlp",
            ModelKind::Lenet5 => "lenet5",
            ModelKind::Vgg => "vgg",
            ModelKind::Resnet => "resnet",
        }
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

#[cfg(test)]
mod tests;
