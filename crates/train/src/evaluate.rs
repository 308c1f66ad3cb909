use burn::data::dataloader::DataLoaderBuilder;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use coppice_data::{ImageBatcher, ImageDataset};
use coppice_models::{Classifier, Network};
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// Loss and accuracy over a whole dataset, weighted by sample so the last short batch counts
/// for what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub loss: f64,
    /// A fraction in [0, 1].
    pub accuracy: f64,
    pub samples: usize,
}

/// An evaluation batch holds at most the whole split: burn's loader reserves room for a full
/// batch up front, so a batch size far above the split would ask for memory it never uses.
pub(crate) fn evaluation_batch(batch_size: usize, samples: usize) -> usize {
    batch_size.min(samples).max(1)
}

pub fn evaluate(
    net: &Network,
    dataset: ImageDataset,
    batcher: ImageBatcher,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    let net = net.clone().valid();
    let batch_size = evaluation_batch(batch_size, dataset.set().len());
    let loader = DataLoaderBuilder::new(batcher).batch_size(batch_size).set_device(device.clone()).build(dataset);
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut correct, mut samples) = (0.0f64, 0i64, 0usize);
    for batch in loader.iter() {
        let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
        let n = batch.targets.dims()[0];
        let logits = net.forward(batch.images);
        let loss = loss_fn.forward(logits.clone(), batch.targets.clone());
        loss_sum += loss.into_scalar::<f64>() * n as f64;
        let predicted = logits.argmax(1).reshape([n]);
        correct += predicted.equal(batch.targets).int().sum().into_scalar::<i64>();
        samples += n;
    }
    if samples == 0 {
        return Err(TrainError::Data("evaluation set is empty".into()));
    }
    Ok(Evaluation { loss: loss_sum / samples as f64, accuracy: correct as f64 / samples as f64, samples })
}
