//! `model.weights`: a network's starting weights from a file trained elsewhere, a safetensors file
//! or a PyTorch `state_dict` (`.pt`, `.pth`), read by burn-store's readers. Names are PyTorch's,
//! as `coppice export` writes them: `<layer>.weight` and `.bias`, Linear weights `[out, in]`,
//! BatchNorm's scale and shift as `weight` and `bias`. Like PyTorch's strict `load_state_dict`,
//! a file that does not fit is refused with every missing, unexpected and mis-shaped tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Result, anyhow};
use burn::module::Param;
use burn::prelude::*;
use burn::store::{ModuleStore, PytorchStore, SafetensorsStore};
use burn::tensor::{DType, TensorData};
use coppice_models::{LayerKind, Network, ParamEditor, Prunable, edit_params, float_params};

use crate::pytorch::{pytorch_name, transpose};
use crate::rundir::integrity;

/// A tensor of the file, as the network's layout wants it.
struct Imported {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// `net` with every parameter taken from `path`; `rename` maps the file's name prefixes to layer
/// names (`"features.0" = "conv1"`). Errors start with the file's path.
pub fn load_weights(net: Network, path: &Path, rename: &BTreeMap<String, String>) -> Result<Network> {
    let file = path.display();
    let tensors = read_tensors(path)?;
    let renamed: BTreeMap<String, &burn::store::burn_pack::Tensor> =
        tensors.iter().map(|(name, tensor)| (renamed(name, rename), tensor)).collect();
    let transposed: Vec<String> =
        net.prunable_layers().into_iter().filter(|l| l.kind == LayerKind::Linear).map(|l| l.weight_path).collect();
    let (mut missing, mut misshaped, mut imported) = (Vec::new(), Vec::new(), HashMap::new());
    let mut used = Vec::new();
    for param in float_params(&net) {
        let name = pytorch_name(&param.path);
        let transposes = transposed.contains(&param.path);
        let expected: Vec<usize> =
            if transposes { param.shape.iter().rev().copied().collect() } else { param.shape.clone() };
        let Some(tensor) = renamed.get(&name) else {
            missing.push(format!("{name} {expected:?}"));
            continue;
        };
        used.push(name.clone());
        let shape: Vec<usize> = tensor.shape.iter().copied().collect();
        if shape != expected {
            misshaped.push(format!("{name} (file {shape:?}, network {expected:?})"));
            continue;
        }
        let values = float_values(tensor).map_err(|e| anyhow!("{file}: {name}: {e}"))?;
        let values = if transposes { transpose(&shape, &values).1 } else { values };
        imported.insert(param.path, Imported { shape: param.shape, values });
    }
    // PyTorch's BatchNorm counts its batches; nothing here needs the count.
    let unexpected: Vec<String> = renamed
        .keys()
        .filter(|name| !used.contains(name) && !name.ends_with(".num_batches_tracked"))
        .cloned()
        .collect();
    if !(missing.is_empty() && misshaped.is_empty() && unexpected.is_empty()) {
        let list = |what: &str, names: &[String]| match names.len() {
            0 => None,
            n if n > 8 => Some(format!("{n} {what}: {}, ...", names[..8].join(", "))),
            n => Some(format!("{n} {what}: {}", names.join(", "))),
        };
        let parts: Vec<String> =
            [list("missing", &missing), list("unexpected", &unexpected), list("mis-shaped", &misshaped)]
                .into_iter()
                .flatten()
                .collect();
        return Err(anyhow!(
            "{file}: does not fit the network ({}); fix: names are `<layer>.weight` as the config names its layers (map others with model.rename = {{ \"features.0\" = \"conv1\" }}), shapes must match the config's sizes",
            parts.join("; ")
        ));
    }
    Ok(edit_params(net, &mut Replace { imported }))
}

/// Every tensor of the file, by name.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, burn::store::burn_pack::Tensor>> {
    let file = path.display();
    if !path.is_file() {
        return Err(anyhow!("{file}: not found; fix: model.weights names a .safetensors, .pt or .pth file"));
    }
    // An export (or a folder `coppice reseal` sealed) is checked against its sums; weights from
    // elsewhere (PyTorch's own files) come without any, as a dataset directory may.
    let sealed = path.parent().filter(|dir| dir.join(integrity::SUMS).is_file());
    if let (Some(dir), Some(name)) = (sealed, path.file_name().and_then(|n| n.to_str())) {
        integrity::read(dir, name)?;
    }
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let tensors = match extension {
        "safetensors" => SafetensorsStore::from_file(path)
            .map_indices_contiguous(false)
            .get_all_tensors()
            .cloned()
            .map_err(|e| anyhow!("{file}: not a readable safetensors file: {e}")),
        "pt" | "pth" | "bin" => PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .get_all_tensors()
            .cloned()
            .map_err(|e| anyhow!("{file}: not a readable PyTorch state_dict: {e}; fix: save it with torch.save(model.state_dict(), path)")),
        other => Err(anyhow!(
            "{file}: unknown weights format {other:?}; fix: a .safetensors file, or a PyTorch state_dict saved as .pt or .pth"
        )),
    }?;
    Ok(tensors)
}

/// `name` with the longest matching prefix of `rename` replaced.
fn renamed(name: &str, rename: &BTreeMap<String, String>) -> String {
    let best = rename
        .iter()
        .filter(|(from, _)| name == from.as_str() || name.starts_with(&format!("{from}.")))
        .max_by_key(|(from, _)| from.len());
    match best {
        Some((from, to)) => format!("{to}{}", &name[from.len()..]),
        None => name.to_string(),
    }
}

fn float_values(tensor: &burn::store::burn_pack::Tensor) -> Result<Vec<f32>, String> {
    if !matches!(tensor.dtype, DType::F64 | DType::F32 | DType::F16 | DType::BF16) {
        return Err(format!("holds {:?} values, the network wants floats", tensor.dtype));
    }
    let bytes = tensor.to_bytes().map_err(|e| format!("cannot be read: {e}"))?;
    let shape: Vec<usize> = tensor.shape.iter().copied().collect();
    let data = TensorData::from_bytes(bytes, shape, tensor.dtype).convert::<f32>();
    let values = data.try_to_vec::<f32>().map_err(|e| format!("cannot be read: {e:?}"))?;
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(format!("holds {bad}; fix: export weights of a network that trained without diverging"));
    }
    Ok(values)
}

struct Replace {
    imported: HashMap<String, Imported>,
}

impl ParamEditor for Replace {
    fn edit<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(Imported { shape, values }) = self.imported.remove(path) else { return param };
        let shape: [usize; D] = shape.try_into().expect("the parameter's own rank");
        coppice_models::edit_param(param, |old| Tensor::from_data(TensorData::new(values, shape), &old.device()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::Device;
    use coppice_models::{Architecture, Classifier};

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    /// The tiny network `scripts/make-torch-fixture.py` trained a little in PyTorch: conv
    /// (no bias), BatchNorm with running statistics, ReLU, max-pool, flatten, linear.
    fn tiny(device: &Device) -> Network {
        let text = std::fs::read_to_string(fixture("tiny-architecture.json")).unwrap();
        serde_json::from_str::<Architecture>(&text).unwrap().init(device).unwrap()
    }

    /// The fixture's input and PyTorch's logits for it, in eval mode.
    fn pytorch_logits(net: &Network, device: &Device) -> (Vec<f32>, Vec<f32>) {
        let text = std::fs::read_to_string(fixture("tiny.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let floats = |key: &str| -> Vec<f32> {
            json[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
        };
        let input = Tensor::<4>::from_data(TensorData::new(floats("input"), [2, 1, 6, 6]), device);
        let ours = net.forward(input).into_data().try_to_vec::<f32>().unwrap();
        (ours, floats("logits"))
    }

    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn pytorch_state_dicts_give_pytorchs_logits() {
        let device = Device::flex();
        for file in ["tiny.pt", "tiny.safetensors"] {
            let net = load_weights(tiny(&device), &fixture(file), &BTreeMap::new()).unwrap();
            let (ours, theirs) = pytorch_logits(&net, &device);
            assert!(max_difference(&ours, &theirs) < 1e-5, "{file}: {ours:?} against {theirs:?}");
        }
        // The random init is far from PyTorch's weights: the comparison can fail.
        let (random, theirs) = pytorch_logits(&tiny(&device), &device);
        assert!(max_difference(&random, &theirs) > 1e-2);
    }

    #[test]
    fn a_name_map_reads_other_conventions() {
        let device = Device::flex();
        let sequential = fixture("tiny-sequential.pt");
        let error = load_weights(tiny(&device), &sequential, &BTreeMap::new()).unwrap_err().to_string();
        assert!(error.contains("missing") && error.contains("conv1.weight"), "{error}");
        assert!(error.contains("unexpected") && error.contains("features.0.weight"), "{error}");
        let rename: BTreeMap<String, String> = [("features.0", "conv1"), ("features.1", "bn1"), ("classifier.1", "fc")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into();
        let net = load_weights(tiny(&device), &sequential, &rename).unwrap();
        let (ours, theirs) = pytorch_logits(&net, &device);
        assert!(max_difference(&ours, &theirs) < 1e-5);
    }

    #[test]
    fn a_file_of_another_shape_lists_every_mismatch() {
        let device = Device::flex();
        let text = std::fs::read_to_string(fixture("tiny-architecture.json")).unwrap();
        let wider = text.replace("\"filters\": 3", "\"filters\": 5");
        let net = serde_json::from_str::<Architecture>(&wider).unwrap().init(&device).unwrap();
        let error = load_weights(net, &fixture("tiny.pt"), &BTreeMap::new()).unwrap_err().to_string();
        assert!(error.contains("tiny.pt"), "names the file: {error}");
        assert!(
            error.contains("mis-shaped") && error.contains("conv1.weight (file [3, 1, 3, 3], network [5, 1, 3, 3])"),
            "{error}"
        );
        assert!(error.contains("bn1.running_mean") && error.contains("fc.weight"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        let missing = load_weights(tiny(&device), &fixture("none.pt"), &BTreeMap::new()).unwrap_err().to_string();
        assert!(missing.contains("none.pt") && missing.contains("not found"), "{missing}");
        let truncated = std::env::temp_dir().join(format!("coppice-truncated-{}.pt", std::process::id()));
        std::fs::write(&truncated, &std::fs::read(fixture("tiny.pt")).unwrap()[..1000]).unwrap();
        let error = load_weights(tiny(&device), &truncated, &BTreeMap::new()).unwrap_err().to_string();
        assert!(error.contains("not a readable PyTorch state_dict"), "{error}");
        std::fs::remove_file(truncated).ok();
    }

    #[test]
    fn weights_beside_sums_are_checked_against_them() {
        let device = Device::flex();
        let dir = std::env::temp_dir().join(format!("coppice-sealed-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.safetensors");
        std::fs::copy(fixture("tiny.safetensors"), &file).unwrap();
        integrity::record(&dir, &["model.safetensors"]).unwrap();
        assert!(load_weights(tiny(&device), &file, &BTreeMap::new()).is_ok());
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let error = load_weights(tiny(&device), &file, &BTreeMap::new()).unwrap_err().to_string();
        assert!(error.contains("model.safetensors") && error.contains("sha256"), "{error}");
        std::fs::remove_dir_all(dir).ok();
    }
}
