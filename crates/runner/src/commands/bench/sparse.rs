//! `coppice bench --sparse RUN_DIR`: a weight-pruned run's inference on burn's flex backend
//! (dense), on the sparse engine with its weights stored dense, and on the sparse engine with
//! CSR weights; with PyTorch's dense figure when its benchmark venv exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, anyhow};
use burn::prelude::Device;
use coppice_sparse::{Encoding, Model};

use crate::commands::eval::check_same_architecture;
use crate::config::Config;
use crate::inference::latency::{median, median_seconds};
use crate::inference::sparse::{normalization, sparse_model};
use crate::progress::Steps;
use crate::pytorch::safetensors_bytes;
use crate::rundir::dir::open_saved_run;
use crate::rundir::saved::data_record;
use crate::rundir::saved::load_model;

pub const BATCHES: [usize; 3] = [1, 64, 1000];

pub struct SparseBench {
    pub weights: usize,
    pub kept: usize,
    pub bytes: usize,
    pub dense_bytes: usize,
    /// The compressed file's size, when one was given.
    pub compressed_bytes: Option<usize>,
    pub rows: Vec<BatchTimes>,
    /// Per layer at batch 1 and at batch 1000, on one thread.
    pub layers: Vec<LayerTimes>,
}

/// Milliseconds per forward pass, median of alternating passes.
pub struct BatchTimes {
    pub batch: usize,
    pub flex: f64,
    pub engine_dense: f64,
    pub sparse: f64,
    /// The compressed file's model, decoded.
    pub compressed: Option<f64>,
    pub torch: Option<f64>,
}

pub struct LayerTimes {
    pub name: String,
    pub encoding: Encoding,
    /// Kept / all weights, or `None` for a layer without weights.
    pub density: Option<f64>,
    /// `[batch 1, batch 1000]`, milliseconds.
    pub engine_dense: [f64; 2],
    pub sparse: [f64; 2],
}

pub fn bench_sparse(run_dir: &Path, compressed: Option<&Path>, plain: bool) -> Result<SparseBench> {
    let _reading = open_saved_run(run_dir)?;
    let config = Config::load(&run_dir.join("config.toml"), &[])?;
    let net = load_model(run_dir, &Device::flex())?;
    let sparse = sparse_model(&net, Some(normalization(&data_record(run_dir, &config)?.1)))?;
    let dense = sparse.with_encoding(Encoding::Dense);
    let compressed = match compressed {
        Some(file) => {
            let bytes = std::fs::read(file)
                .map_err(|e| anyhow!("{}: cannot read ({e}); fix: check the path", file.display()))?;
            let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            check_same_architecture(&model, &sparse, file, run_dir)?;
            Some((model, bytes.len()))
        }
        None => None,
    };
    let architecture = serde_json::to_string_pretty(&net.architecture())?;
    let dense_file = safetensors_bytes(&net, &architecture, &[])?;
    let torch = torch_milliseconds(&dense_file, &architecture)?;
    let steps = Steps::start("bench --sparse", BATCHES.len() + 1, plain);
    let mut rows = Vec::new();
    for batch in BATCHES {
        let mut models = vec![&dense, &sparse];
        models.extend(compressed.as_ref().map(|(model, _)| model));
        let seconds = median_seconds(&net, &models, batch, repeats(batch))?;
        let ms = |s: f64| s * 1e3;
        let torch = torch.as_ref().and_then(|t| t.iter().find(|(b, _)| *b == batch).map(|(_, ms)| *ms));
        rows.push(BatchTimes {
            batch,
            flex: ms(seconds[0]),
            engine_dense: ms(seconds[1]),
            sparse: ms(seconds[2]),
            compressed: seconds.get(3).map(|s| ms(*s)),
            torch,
        });
        steps.show(&format!(
            "batch {batch}: sparse engine {:.3} ms, dense flex {:.3} ms",
            ms(seconds[2]),
            ms(seconds[0])
        ));
    }
    let per_layer = |model: &Model, batch: usize| layer_milliseconds(model, batch, repeats(batch));
    let (dense1, dense1000, sparse1, sparse1000) =
        (per_layer(&dense, 1)?, per_layer(&dense, 1000)?, per_layer(&sparse, 1)?, per_layer(&sparse, 1000)?);
    steps.show("per-layer times");
    let layers = sparse
        .layers()
        .enumerate()
        .map(|(l, layer)| LayerTimes {
            name: layer.name(),
            encoding: layer.weights().map_or(Encoding::Dense, |w| w.encoding()),
            density: layer.weights().map(|w| w.nonzero() as f64 / (w.rows() * w.cols()).max(1) as f64),
            engine_dense: [dense1[l], dense1000[l]],
            sparse: [sparse1[l], sparse1000[l]],
        })
        .collect();
    let weights = sparse.layers().filter_map(|l| l.weights()).map(|w| w.rows() * w.cols()).sum();
    let kept = sparse.layers().filter_map(|l| l.weights()).map(|w| w.nonzero()).sum();
    Ok(SparseBench {
        weights,
        kept,
        bytes: sparse.to_bytes().len(),
        dense_bytes: dense_file.len(),
        compressed_bytes: compressed.map(|(_, bytes)| bytes),
        rows,
        layers,
    })
}

fn repeats(batch: usize) -> usize {
    match batch {
        1 => 401,
        2..=100 => 101,
        _ => 21,
    }
}

/// Median milliseconds per layer, one thread.
fn layer_milliseconds(model: &Model, batch: usize, repeats: usize) -> Result<Vec<f64>> {
    let images: Vec<f32> = (0..batch * model.pixels()).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let mut per_layer = vec![Vec::with_capacity(repeats); model.layers().len()];
    for _ in 0..repeats {
        let (_, times) = model.forward_profiled(&images, batch)?;
        for (all, t) in per_layer.iter_mut().zip(times) {
            all.push(t.as_secs_f64() * 1e3);
        }
    }
    Ok(per_layer.into_iter().map(median).collect())
}

/// The PyTorch benchmark's venv (`shared/bench/README.md`): `$TMPDIR/torch-venv`.
fn torch_python() -> Option<PathBuf> {
    let dir = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    Some(dir.join("torch-venv/bin/python")).filter(|p| p.is_file())
}

/// PyTorch's dense forward pass of the same weights, `(batch, ms)`, when its venv exists.
fn torch_milliseconds(dense_file: &[u8], architecture: &str) -> Result<Option<Vec<(usize, f64)>>> {
    let Some(python) = torch_python() else { return Ok(None) };
    let dir = std::env::temp_dir().join(format!("coppice-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("model.safetensors"), dense_file)?;
    std::fs::write(dir.join("architecture.json"), architecture)?;
    std::fs::write(dir.join("torch-infer.py"), include_str!("../../../../../scripts/torch-infer.py"))?;
    let batches: Vec<String> = BATCHES.iter().map(usize::to_string).collect();
    let output = Command::new(python).arg(dir.join("torch-infer.py")).arg(&dir).arg(batches.join(",")).output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    if !output.status.success() {
        eprintln!(
            "PyTorch's figure left out: {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
        return Ok(None);
    }
    let times: Vec<(usize, f64)> = serde_json::from_slice(&output.stdout)?;
    Ok(Some(times))
}

pub fn print(run_dir: &Path, b: &SparseBench) {
    println!(
        "{}: {} of {} weights kept ({:.1} % sparse); sparse file {} bytes, dense safetensors {} bytes ({:.1}x smaller)",
        run_dir.display(),
        b.kept,
        b.weights,
        100.0 * (1.0 - b.kept as f64 / b.weights.max(1) as f64),
        b.bytes,
        b.dense_bytes,
        b.dense_bytes as f64 / b.bytes.max(1) as f64
    );
    if let Some(bytes) = b.compressed_bytes {
        println!(
            "compressed file {bytes} bytes ({:.1}x smaller than dense), decoded once into the engine's weights",
            b.dense_bytes as f64 / bytes.max(1) as f64
        );
    }
    println!("ms per forward pass, median of alternating passes (engine dense: the engine with every weight stored)");
    println!(
        "batch  flex dense  engine dense     sparse  compressed  sparse samples/s  vs flex  vs engine dense  pytorch dense"
    );
    for r in &b.rows {
        let torch = r.torch.map_or("-".to_string(), |t| format!("{t:.3}"));
        let compressed = r.compressed.map_or("-".to_string(), |t| format!("{t:.3}"));
        println!(
            "{:>5}  {:>10.3}  {:>12.3}  {:>9.3}  {compressed:>10}  {:>16.0}  {:>6.1}x  {:>14.1}x  {torch:>13}",
            r.batch,
            r.flex,
            r.engine_dense,
            r.sparse,
            r.batch as f64 / (r.sparse / 1e3),
            r.flex / r.sparse,
            r.engine_dense / r.sparse
        );
    }
    println!("per layer, one thread, ms at batch 1 | batch 1000");
    println!("layer            stored  kept     engine dense   sparse  gain  |  engine dense    sparse  gain");
    for l in &b.layers {
        let kept = l.density.map_or("-".to_string(), |d| format!("{:.1}%", d * 100.0));
        let stored = if l.density.is_some() { format!("{:?}", l.encoding).to_lowercase() } else { "-".into() };
        println!(
            "{:<16} {stored:>6}  {kept:>6}  {:>14.4}  {:>7.4}  {:>4.1}x  |  {:>12.3}  {:>8.3}  {:>4.1}x",
            l.name,
            l.engine_dense[0],
            l.sparse[0],
            l.engine_dense[0] / l.sparse[0],
            l.engine_dense[1],
            l.sparse[1],
            l.engine_dense[1] / l.sparse[1]
        );
    }
}
