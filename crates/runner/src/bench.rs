//! `coppice bench`: training throughput, the project's speed baseline.

use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::data::dataloader::batcher::Batcher;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use coppice_data::{ImageBatch, ImageItem, ImageSet};
use coppice_models::{Architecture, Classifier, LeNet5Config, MlpConfig};

use crate::backend::BackendName;
use crate::experiment::Data;

pub struct BenchOptions {
    pub backends: Vec<BackendName>,
    pub models: Vec<String>,
    pub batch_sizes: Vec<usize>,
    pub warmup_steps: usize,
    pub windows: usize,
    pub steps_per_window: usize,
}

pub struct BenchRow {
    pub backend: BackendName,
    pub model: String,
    pub batch_size: usize,
    /// Median over the windows.
    pub samples_per_second: f64,
    pub min: f64,
    pub max: f64,
}

pub fn architecture_named(name: &str) -> Result<Architecture> {
    match name {
        "lenet300" => Ok(Architecture::Mlp(MlpConfig::new())),
        "lenet5" => Ok(Architecture::Lenet5(LeNet5Config::new())),
        other => Err(anyhow!("unknown model {other:?} for --models; fix: use lenet300 and/or lenet5")),
    }
}

/// SGD with momentum on real MNIST batches, prepared before timing so that the figure is the
/// cost of forward, backward and optimizer step. The loss is read at the end of each window so
/// that lazy backends have finished the work being timed.
pub fn bench(data: &Data, options: &BenchOptions, mut report: impl FnMut(&BenchRow)) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for &backend in &options.backends {
        for model in &options.models {
            let architecture = architecture_named(model)?;
            for &batch_size in &options.batch_sizes {
                let row = bench_one(data, backend, model, &architecture, batch_size, options)?;
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn bench_one(
    data: &Data,
    backend: BackendName,
    model: &str,
    architecture: &Architecture,
    batch_size: usize,
    options: &BenchOptions,
) -> Result<BenchRow> {
    let device = backend.device().autodiff();
    device.seed(0);
    let batches = prepare_batches(&data.train, data, batch_size, &device);
    if batches.is_empty() {
        return Err(anyhow!("not enough training data for batch size {batch_size}"));
    }
    let mut net = architecture.init(&device);
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut cursor = 0;
    let mut run_steps = |steps: usize, net: &mut coppice_models::Network| -> f64 {
        let mut last = None;
        for _ in 0..steps {
            let batch = &batches[cursor % batches.len()];
            cursor += 1;
            let logits = net.forward(batch.images.clone());
            let loss = loss_fn.forward(logits, batch.targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &*net);
            *net = optim.step(0.01, net.clone(), grads);
            last = Some(loss);
        }
        last.map_or(0.0, |l| l.into_scalar::<f64>())
    };
    run_steps(options.warmup_steps, &mut net);
    let mut rates = Vec::with_capacity(options.windows);
    for _ in 0..options.windows {
        let start = Instant::now();
        run_steps(options.steps_per_window, &mut net);
        rates.push((options.steps_per_window * batch_size) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(BenchRow {
        backend,
        model: model.to_string(),
        batch_size,
        samples_per_second: rates[rates.len() / 2],
        min: rates[0],
        max: rates[rates.len() - 1],
    })
}

fn prepare_batches(set: &ImageSet, data: &Data, batch_size: usize, device: &Device) -> Vec<ImageBatch> {
    let per_image = set.pixels_per_image();
    let usable = (set.len() / batch_size).min(32);
    (0..usable)
        .map(|b| {
            let items = (b * batch_size..(b + 1) * batch_size)
                .map(|i| ImageItem {
                    pixels: set.images[i * per_image..(i + 1) * per_image].to_vec(),
                    label: set.labels[i],
                })
                .collect();
            data.batcher.batch(items, device)
        })
        .collect()
}
