//! `summary.json` and `report.md`: what a run reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::module::Module;
use coppice_data::Normalization;
use coppice_models::{Architecture, Network, Prunable, count_nonzero};
use coppice_prune::{QuantizeMethod, RoundRecord, ScratchBudget};
use coppice_train::Evaluation;
use serde::Serialize;

use super::dir::write_atomic;
use super::tables::{MetricsLog, stage};
use crate::config::Config;
use crate::data::Data;
use crate::inference::latency::DenseComparison;
use crate::inference::sparse::{CompressedFigures, SparseFigures};

/// `summary.json`: a contract for scripts. The top-level keys named in the README stay.
#[derive(Serialize)]
pub struct Summary {
    pub name: String,
    pub backend: String,
    /// The devices of data-parallel training, as the config names them; absent on one device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    pub seed: u64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_accuracy: Option<f64>,
    pub params_total: usize,
    pub params_nonzero: usize,
    pub flops: usize,
    pub wall_seconds: f64,
    pub epochs: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    /// The name of each label, in label order: what exports and `eval` name the outputs by.
    pub classes: Vec<String>,
    /// What the images were normalized with, per channel (measured, with `"auto"`).
    pub normalization: Normalization,
    pub architecture: Architecture,
    /// With `[prune]`: the fraction of prunable weights that are zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
    /// With `[prune]`: total parameters / non-zero parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_ratio: Option<f64>,
    /// With `[prune]`: the test accuracy before pruning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense_test_accuracy: Option<f64>,
    /// With `[prune]`: the test accuracy of the last round's pruned network before its
    /// retraining, what the criterion alone kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned_test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<usize>,
    /// With neuron pruning: the network before pruning, and measured inference latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseComparison>,
    /// With `[quantize]`: the bits of each layer and the accuracy before and after retraining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantize: Option<QuantizeSummary>,
    /// With `prune.scratch`: the pruned architecture trained from scratch, beside fine-tuning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchSummary>,
    /// With weight pruning: the sparse engine's file size and speedup over dense flex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse: Option<SparseFigures>,
    /// With `[quantize]`: the compressed file's size, and each layer's bytes stage by stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed: Option<CompressedFigures>,
    /// For `coppice finetune`: the run directory it continued from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The process's peak resident memory (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// What the device's allocator holds at the end, on backends that report it (the GPU ones);
    /// its pools keep what the run's peak needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_memory_bytes: Option<u64>,
}

/// summary.json's `quantize`.
#[derive(Serialize)]
pub struct QuantizeSummary {
    pub method: QuantizeMethod,
    /// By layer name.
    pub bits: BTreeMap<String, u32>,
    /// The quantized network on the test set before its retraining.
    pub test_accuracy_before_retraining: Option<f64>,
    /// After its retraining: the run's `test_accuracy`.
    pub test_accuracy: f64,
}

impl QuantizeSummary {
    /// The summary of the quantization stage's record; `None` for any other record.
    pub fn of(record: &RoundRecord) -> Option<QuantizeSummary> {
        let quantized = record.quantized.as_ref()?;
        Some(QuantizeSummary {
            method: quantized.method,
            bits: quantized.bits.clone(),
            test_accuracy_before_retraining: record.pruned.map(|e| e.accuracy),
            test_accuracy: record.test.accuracy,
        })
    }
}

/// summary.json's `scratch`: Liu et al.'s control against the fine-tuned network of the same run.
#[derive(Serialize)]
pub struct ScratchSummary {
    pub budget: ScratchBudget,
    pub epochs: usize,
    /// The pruned architecture at its fresh initialization.
    pub test_accuracy_at_initialization: Option<f64>,
    /// After training from scratch: the run's `test_accuracy`, and its saved model.
    pub test_accuracy: f64,
    /// The last pruning round's network, fine-tuned from the pruned weights.
    pub fine_tuned_test_accuracy: f64,
}

impl ScratchSummary {
    /// The summary of a run's records whose last is the control's; `None` otherwise.
    pub fn of(rounds: &[RoundRecord]) -> Option<ScratchSummary> {
        let [.., fine_tuned, record] = rounds else { return None };
        let scratch = record.scratch.as_ref()?;
        Some(ScratchSummary {
            budget: scratch.budget,
            epochs: scratch.epochs,
            test_accuracy_at_initialization: record.pruned.map(|e| e.accuracy),
            test_accuracy: record.test.accuracy,
            fine_tuned_test_accuracy: fine_tuned.test.accuracy,
        })
    }
}

/// The path of the first null in `json`, where serde_json wrote a non-finite float.
pub fn null_key(json: &serde_json::Value, path: &str) -> Option<String> {
    let child = |key: &dyn std::fmt::Display| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match json {
        serde_json::Value::Null => Some(path.to_string()),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| null_key(v, &child(k))),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| null_key(v, &child(&i))),
        _ => None,
    }
}

impl Summary {
    /// The keys every run has; pruning and fine-tuning add theirs.
    pub fn basic(
        config: &Config,
        net: &Network,
        test: &Evaluation,
        metrics: &MetricsLog,
        data: &Data,
        device: &burn::prelude::Device,
        started: Instant,
    ) -> Summary {
        Summary {
            name: config.name.clone(),
            backend: config.backend.to_string(),
            devices: config.devices.clone(),
            seed: config.seed,
            test_accuracy: test.accuracy,
            test_loss: test.loss,
            valid_accuracy: metrics.rows.last().and_then(|(_, e)| e.valid_accuracy),
            params_total: net.num_params(),
            params_nonzero: count_nonzero(net),
            flops: net.layer_costs().iter().map(|c| c.flops).sum(),
            wall_seconds: started.elapsed().as_secs_f64(),
            epochs: metrics.rows.len(),
            train_samples: data.train.len(),
            test_samples: test.samples,
            classes: data.class_names.clone(),
            normalization: data.batcher.norm.clone(),
            architecture: net.architecture(),
            sparsity: None,
            compression_ratio: None,
            dense_test_accuracy: None,
            pruned_test_accuracy: None,
            rounds: None,
            dense: None,
            quantize: None,
            scratch: None,
            sparse: None,
            compressed: None,
            parent: None,
            peak_rss_bytes: peak_rss_bytes(),
            device_memory_bytes: device.memory_pool_usage().map(|u| u.bytes_reserved),
        }
    }

    /// Writes `summary.json`, which promises a number wherever the README names one: a
    /// value that JSON can only write as null (NaN, infinity) is an error instead.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_value(self)?;
        if let Some(key) = null_key(&json, "") {
            return Err(anyhow!(
                "{}: {key} is not a finite number, so the network's weights or outputs are not finite; \
                 fix: train with a lower train.lr",
                run_dir.display()
            ));
        }
        write_atomic(&run_dir.join("summary.json"), serde_json::to_string_pretty(&json)?.as_bytes())
    }

    pub fn print(&self) {
        println!(
            "test accuracy {:.2}% (loss {:.4}) on {} samples; {} parameters, {} non-zero; {:.1}s",
            self.test_accuracy * 100.0,
            self.test_loss,
            self.test_samples,
            self.params_total,
            self.params_nonzero,
            self.wall_seconds
        );
        if let Some(s) = &self.sparse {
            println!(
                "sparse engine: {} bytes against {} dense ({:.1}x smaller); {:.1}x faster than dense flex at batch 1, {:.1}x at batch 1000",
                s.bytes,
                s.dense_bytes,
                s.dense_bytes as f64 / s.bytes.max(1) as f64,
                s.speedup_batch1,
                s.speedup_batch1000
            );
        }
    }
}

/// The high-water mark of this process's resident memory, from `/proc/self/status` (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `report.md`: what a person reads first.
pub fn report_md(config: &Config, summary: &Summary, rounds: &[RoundRecord]) -> String {
    let mut md = format!("# {}\n\n", config.name);
    let dense = summary.dense_test_accuracy.unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "Test accuracy {:.2} % after pruning (dense {:.2} %); {:.2} % of prunable weights are zero; compression {:.2}x ({} of {} parameters non-zero). Backend {}, seed {}.\n",
        summary.test_accuracy * 100.0,
        dense * 100.0,
        summary.sparsity.unwrap_or(0.0) * 100.0,
        summary.compression_ratio.unwrap_or(1.0),
        summary.params_nonzero,
        summary.params_total,
        summary.backend,
        summary.seed
    );
    // Neuron pruning leaves no zeros to count; its "Units" table below says what changed.
    if let Some(last) = rounds.last().filter(|_| summary.dense.is_none()) {
        md.push_str(
            "## Layers\n\n| layer | weights | non-zero | left | sparsity |\n| --- | ---: | ---: | ---: | ---: |\n",
        );
        for l in &last.sparsity.layers {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} % | {:.2} % |",
                l.name,
                l.weights,
                l.weights - l.zeros,
                (1.0 - l.sparsity) * 100.0,
                l.sparsity * 100.0
            );
        }
        let s = &last.sparsity;
        let speedup = s.flops_dense as f64 / s.flops_effective.max(1) as f64;
        let _ = writeln!(
            md,
            "\nFLOPs {} dense, {} effective: theoretical speedup {speedup:.2}x.\n",
            s.flops_dense, s.flops_effective
        );
    }
    if let Some(dense) = &summary.dense {
        md.push_str("## Units\n\n| layer | dense | pruned | left |\n| --- | ---: | ---: | ---: |\n");
        for u in &dense.units {
            let left = u.pruned as f64 / u.dense.max(1) as f64 * 100.0;
            let _ = writeln!(md, "| {} | {} | {} | {left:.1} % |", u.layer, u.dense, u.pruned);
        }
        md.push('\n');
        let _ = writeln!(
            md,
            "## Size and speed\n\nParameters {} -> {}; FLOPs {} -> {}: theoretical speedup {:.2}x.\n\n| batch | dense ms | pruned ms | measured speedup | pruned samples/s |\n| ---: | ---: | ---: | ---: | ---: |",
            dense.params, summary.params_total, dense.flops, summary.flops, dense.theoretical_speedup
        );
        for l in &dense.latency {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.2}x | {:.0} |",
                l.batch, l.dense_ms, l.pruned_ms, l.speedup, l.pruned_samples_per_second
            );
        }
        md.push('\n');
    }
    if let Some(q) = &summary.quantize {
        let bits: Vec<String> = q.bits.iter().map(|(layer, bits)| format!("{layer} {bits}")).collect();
        let _ = writeln!(
            md,
            "## Quantization\n\n{:?}, bits per layer: {}. Test accuracy {} before retraining, {:.2} % after.\n",
            q.method,
            bits.join(", "),
            q.test_accuracy_before_retraining.map_or("-".into(), |a| format!("{:.2} %", a * 100.0)),
            q.test_accuracy * 100.0
        );
    }
    if let Some(s) = &summary.scratch {
        let name = match s.budget {
            ScratchBudget::Epochs => "Scratch-E",
            ScratchBudget::Compute => "Scratch-B",
        };
        let _ = writeln!(
            md,
            "## Trained from scratch\n\n{name}: the pruned architecture trained from fresh weights for {} epochs, test accuracy {} at initialization, {:.2} % trained, against {:.2} % fine-tuned from the pruned weights (the last pruning round). The saved model and the accuracy above are the scratch-trained network's.\n",
            s.epochs,
            s.test_accuracy_at_initialization.map_or("-".into(), |a| format!("{:.2} %", a * 100.0)),
            s.test_accuracy * 100.0,
            s.fine_tuned_test_accuracy * 100.0
        );
    }
    if let Some(c) = &summary.compressed {
        md.push_str("## Deep Compression\n\n```text\n");
        md.push_str(&c.table());
        md.push_str("```\n\n");
    }
    md.push_str("## Rounds\n\n| round | stage | sparsity | compression | test accuracy | test loss | seconds |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rounds {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} % | {:.2}x | {:.2} % | {:.4} | {:.1} |",
            r.round,
            stage(r),
            r.sparsity.sparsity * 100.0,
            r.sparsity.compression_ratio,
            r.test.accuracy * 100.0,
            r.test.loss,
            r.seconds
        );
    }
    md
}
