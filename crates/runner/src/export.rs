//! `coppice export`: a saved run's weights for other tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use coppice_models::{LayerKind, Network, Prunable, float_params};
use serde_json::json;

use crate::integrity;
use crate::rundir::{open_saved_run, write_atomic};
use crate::saved::load_model;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Bpk,
    Safetensors,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "bpk" => Ok(ExportFormat::Bpk),
            "safetensors" => Ok(ExportFormat::Safetensors),
            other => Err(format!("unknown format {other:?}; fix: use safetensors or bpk")),
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
    };
    let name = path.file_name().and_then(|n| n.to_str()).expect("a file name of ours");
    integrity::record(&out, &["architecture.json", name])?;
    Ok(path)
}

/// The safetensors format, written directly (an 8-byte header length, a JSON header, raw
/// little-endian data). Tensors are laid out as PyTorch keeps them, so a `state_dict` maps by
/// name: Linear weights are transposed to `[out, in]` (burn stores `[in, out]`), and BatchNorm's
/// `gamma` / `beta` are named `weight` / `bias`.
pub fn safetensors_bytes(net: &Network, architecture: &str) -> Result<Vec<u8>> {
    let linear_weights: Vec<String> =
        net.prunable_layers().into_iter().filter(|l| l.kind == LayerKind::Linear).map(|l| l.weight_path).collect();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for p in float_params(net) {
        let values = p.values.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{}: {e:?}", p.path))?;
        let (shape, values) =
            if linear_weights.contains(&p.path) { transpose(&p.shape, &values) } else { (p.shape, values) };
        let name = p.path.replace(".gamma", ".weight").replace(".beta", ".bias");
        tensors.insert(name, (shape, values));
    }
    let mut header = serde_json::Map::new();
    header
        .insert("__metadata__".into(), json!({ "format": "pt", "architecture": architecture, "producer": "coppice" }));
    let mut offset = 0usize;
    for (name, (shape, values)) in &tensors {
        let end = offset + values.len() * 4;
        header.insert(name.clone(), json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut header_text = serde_json::Value::Object(header).to_string();
    // The data that follows is 8-byte aligned when the header length is.
    while !header_text.len().is_multiple_of(8) {
        header_text.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header_text.len() + offset);
    bytes.extend_from_slice(&(header_text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header_text.as_bytes());
    for (_, values) in tensors.values() {
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(bytes)
}

fn transpose(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (shape[0], shape[1]);
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    (vec![cols, rows], out)
}

/// Names and shapes of a safetensors file, for the CLI's summary line and the tests.
pub fn describe(bytes: &[u8]) -> Result<String> {
    let len = u64::from_le_bytes(bytes.get(..8).ok_or_else(|| anyhow!("not a safetensors file"))?.try_into()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8 + len).ok_or_else(|| anyhow!("truncated header"))?)?;
    let mut text = String::new();
    if let Some(map) = header.as_object() {
        for (name, info) in map.iter().filter(|(k, _)| *k != "__metadata__") {
            let _ = write!(text, "{name} {} ", info["shape"]);
        }
    }
    Ok(text.trim_end().to_string())
}
