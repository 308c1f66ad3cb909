//! A network's weights as PyTorch lays them out, in a safetensors file: what `export --format
//! safetensors` writes, what `bench --sparse` hands PyTorch, and what summary.json's sparse
//! figures weigh the sparse file against. `import.rs` reads the same layout back.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow};
use coppice_models::{LayerKind, Network, Prunable, float_params};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// The weights as a safetensors file, written by the `safetensors` crate. Tensors are laid out
/// as PyTorch keeps them, so a `state_dict` maps by name: Linear weights are transposed to
/// `[out, in]` (burn stores `[in, out]`), and BatchNorm's `gamma` / `beta` are named `weight` /
/// `bias`. The metadata holds the architecture and `extra`'s keys (an export's class names and
/// normalization).
pub fn safetensors_bytes(net: &Network, architecture: &str, extra: &[(&str, String)]) -> Result<Vec<u8>> {
    let linear_weights: Vec<String> =
        net.prunable_layers().into_iter().filter(|l| l.kind == LayerKind::Linear).map(|l| l.weight_path).collect();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for p in float_params(net) {
        let values = p.values.into_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{}: {e:?}", p.path))?;
        let (shape, values) =
            if linear_weights.contains(&p.path) { transpose(&p.shape, &values) } else { (p.shape, values) };
        let name = pytorch_name(&p.path);
        tensors.insert(name, (shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views = tensors
        .iter()
        .map(|(name, (shape, bytes))| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("architecture".to_string(), architecture.to_string()),
        ("producer".to_string(), "coppice".to_string()),
    ]);
    metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// The metadata an export adds to the architecture: the outputs' names and the normalization.
pub fn data_metadata(classes: &[String], norm: &coppice_data::Normalization) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![("classes", serde_json::to_string(classes)?), ("normalization", serde_json::to_string(norm)?)])
}

/// PyTorch's name of a parameter: BatchNorm's `gamma` and `beta` are its `weight` and `bias`.
pub fn pytorch_name(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((module, "gamma")) => format!("{module}.weight"),
        Some((module, "beta")) => format!("{module}.bias"),
        _ => path.to_string(),
    }
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
