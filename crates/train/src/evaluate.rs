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
    evaluate_into(net, dataset, batcher, batch_size, device, None)
}

/// How often each class was taken for each: `counts[truth * classes + predicted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    pub classes: usize,
    pub counts: Vec<u64>,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Confusion { classes, counts: vec![0; classes * classes] }
    }

    /// Samples of class `truth` taken for `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Samples of class `truth`, and how many of them were right.
    pub fn class_totals(&self, truth: usize) -> (u64, u64) {
        let row = &self.counts[truth * self.classes..(truth + 1) * self.classes];
        (row.iter().sum(), row[truth])
    }
}

/// [`evaluate`], also counting each (true, predicted) pair.
pub fn evaluate_confusion(
    net: &Network,
    dataset: ImageDataset,
    batcher: ImageBatcher,
    batch_size: usize,
    device: &Device,
) -> Result<(Evaluation, Confusion), TrainError> {
    let mut confusion = Confusion::new(dataset.set().classes);
    let evaluation = evaluate_into(net, dataset, batcher, batch_size, device, Some(&mut confusion))?;
    Ok((evaluation, confusion))
}

fn evaluate_into(
    net: &Network,
    dataset: ImageDataset,
    batcher: ImageBatcher,
    batch_size: usize,
    device: &Device,
    mut confusion: Option<&mut Confusion>,
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
        if let Some(confusion) = confusion.as_deref_mut() {
            let ints = |t: Tensor<1, Int>| {
                t.into_data().try_into_vec_as::<i64>().map_err(|e| TrainError::Data(format!("{e:?}")))
            };
            let (truth, guess) = (ints(batch.targets.clone())?, ints(predicted.clone())?);
            for (t, p) in truth.iter().zip(&guess) {
                let (t, p) = (*t as usize, *p as usize);
                if t < confusion.classes && p < confusion.classes {
                    confusion.counts[t * confusion.classes + p] += 1;
                }
            }
        }
        correct += predicted.equal(batch.targets).int().sum().into_scalar::<i64>();
        samples += n;
    }
    if samples == 0 {
        return Err(TrainError::Data("evaluation set is empty".into()));
    }
    Ok(Evaluation { loss: loss_sum / samples as f64, accuracy: correct as f64 / samples as f64, samples })
}
