//! `coppice export`: a saved run's weights for other tools.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use coppice_models::{LayerKind, Network, Prunable, float_params};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::config::Config;
use crate::integrity;
use crate::rundir::{open_saved_run, write_atomic};
use crate::saved::load_model;
use crate::sparse;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Bpk,
    Safetensors,
    /// The sparse engine's file (`coppice-sparse`).
    Sparse,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "bpk" => Ok(ExportFormat::Bpk),
            "safetensors" => Ok(ExportFormat::Safetensors),
            "sparse" => Ok(ExportFormat::Sparse),
            other => Err(format!("unknown format {other:?}; fix: use safetensors, sparse or bpk")),
        }
    }
}

/// Writes the run's weights (pruned zeros included) and `architecture.json` into `out`
/// (default `RUN_DIR/export`) and returns the weights file.
pub fn export(run_dir: &Path, format: ExportFormat, out: Option<PathBuf>) -> Result<PathBuf> {
    let _reading = open_saved_run(run_dir)?;
    let net = load_model(run_dir, &burn::prelude::Device::flex())?;
    let out = out.unwrap_or_else(|| run_dir.join("export"));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create; fix: pass a writable --out", out.display()))?;
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    write_atomic(&out.join("architecture.json"), architecture.as_bytes())?;
    let path = match format {
        ExportFormat::Bpk => {
            let path = out.join("model.bpk");
            write_atomic(&path, &integrity::read(run_dir, "model.bpk")?)?;
            path
        }
        ExportFormat::Safetensors => {
            let path = out.join("model.safetensors");
            write_atomic(&path, &safetensors_bytes(&net, &architecture)?)?;
            path
        }
        ExportFormat::Sparse => sparse::write_export(&net, &Config::load(&run_dir.join("config.toml"), &[])?, &out)?,
    };
    let name = path.file_name().and_then(|n| n.to_str()).expect("a file name of ours");
    integrity::record(&out, &["architecture.json", name])?;
    Ok(path)
}

/// The weights as a safetensors file, written by the `safetensors` crate. Tensors are laid out
/// as PyTorch keeps them, so a `state_dict` maps by name: Linear weights are transposed to
/// `[out, in]` (burn stores `[in, out]`), and BatchNorm's `gamma` / `beta` are named `weight` /
/// `bias`. The metadata holds the architecture.
pub fn safetensors_bytes(net: &Network, architecture: &str) -> Result<Vec<u8>> {
    let linear_weights: Vec<String> =
        net.prunable_layers().into_iter().filter(|l| l.kind == LayerKind::Linear).map(|l| l.weight_path).collect();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for p in float_params(net) {
        let values = p.values.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{}: {e:?}", p.path))?;
        let (shape, values) =
            if linear_weights.contains(&p.path) { transpose(&p.shape, &values) } else { (p.shape, values) };
        let name = p.path.replace(".gamma", ".weight").replace(".beta", ".bias");
        tensors.insert(name, (shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views = tensors
        .iter()
        .map(|(name, (shape, bytes))| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("architecture".to_string(), architecture.to_string()),
        ("producer".to_string(), "coppice".to_string()),
    ]);
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// A row-major `[rows, cols]` matrix as `[cols, rows]`.
pub fn transpose(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (shape[0], shape[1]);
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    (vec![cols, rows], out)
}

/// Names and shapes of a safetensors file, for the CLI's summary line.
pub fn describe(bytes: &[u8]) -> Result<String> {
    let file = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
    let mut names = file.names();
    names.sort_unstable();
    let described: Vec<String> =
        names.iter().filter_map(|name| Some(format!("{name} {:?}", file.tensor(name).ok()?.shape()))).collect();
    Ok(described.join(" "))
}
