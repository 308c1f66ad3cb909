//! `coppice export`: a saved run's weights for other tools.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use coppice_models::Network;
use safetensors::SafeTensors;

use crate::config::Config;
use crate::inference::sparse::{compressed_figures, normalization, sparse_model};
use crate::pytorch::{data_metadata, safetensors_bytes};
use crate::rundir::dir::{create_dir_durable, open_saved_run, write_atomic};
use crate::rundir::integrity;
use crate::rundir::saved::{data_record, load_model};
use coppice_data::Normalization;

pub const SPARSE_FILE: &str = "model.sparse.safetensors";
pub const COMPRESSED_FILE: &str = "model.compressed.safetensors";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Bpk,
    Safetensors,
    /// The sparse engine's file (`coppice-sparse`).
    Sparse,
    /// Deep Compression's: codebooks and Huffman-coded indices and gaps (a quantized run's).
    Compressed,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "bpk" => Ok(ExportFormat::Bpk),
            "safetensors" => Ok(ExportFormat::Safetensors),
            "sparse" => Ok(ExportFormat::Sparse),
            "compressed" => Ok(ExportFormat::Compressed),
            other => Err(format!("unknown format {other:?}; fix: use safetensors, sparse, compressed or bpk")),
        }
    }
}

/// Writes the run's weights (pruned zeros included) and `architecture.json` into `out`
/// (default `RUN_DIR/export`) and returns the weights file.
pub fn export(run_dir: &Path, format: ExportFormat, out: Option<PathBuf>) -> Result<PathBuf> {
    let _reading = open_saved_run(run_dir)?;
    let net = load_model(run_dir, &burn::prelude::Device::flex())?;
    let (classes, norm) = data_record(run_dir, &Config::load(&run_dir.join("config.toml"), &[])?)?;
    let out = out.unwrap_or_else(|| run_dir.join("export"));
    create_dir_durable(&out)
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
            write_atomic(&path, &safetensors_bytes(&net, &architecture, &data_metadata(&classes, &norm)?)?)?;
            path
        }
        ExportFormat::Sparse => write_sparse(&net, classes, &norm, &out)?,
        ExportFormat::Compressed => {
            let config = Config::load(&run_dir.join("config.toml"), &[])?;
            if config.quantize.is_none() {
                return Err(anyhow!(
                    "{}: its config has no [quantize], so its weights are f32 and a codebook per layer would hold them all; fix: export it with `--format sparse`, or run the config again with a [quantize] section",
                    run_dir.display()
                ));
            }
            let (bytes, figures) =
                compressed_figures(&net, &norm, &classes).with_context(|| format!("{}", run_dir.display()))?;
            let path = out.join(COMPRESSED_FILE);
            write_atomic(&path, &bytes).with_context(|| format!("{}: cannot write", path.display()))?;
            print!("{}", figures.table());
            path
        }
    };
    let name = path.file_name().and_then(|n| n.to_str()).expect("a file name of ours");
    integrity::record(&out, &["architecture.json", name])?;
    Ok(path)
}

/// The sparse engine's file of the network.
fn write_sparse(net: &Network, classes: Vec<String>, norm: &Normalization, out: &Path) -> Result<PathBuf> {
    let path = out.join(SPARSE_FILE);
    let model = sparse_model(net, Some(normalization(norm)))?.with_classes(classes)?;
    write_atomic(&path, &model.to_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
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
