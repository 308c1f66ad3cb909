//! Measured inference time: a pruned network against its dense one (summary.json's `dense`),
//! and the timing in turns that the sparse engine's figures, `bench --sparse`, `compare` and
//! the report over sweeps share.

use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::module::Module;
use burn::prelude::{Device, Tensor};
use coppice_models::{Classifier, InputShape, Network, Prunable};
use coppice_sparse::Model;
use serde::Serialize;

/// summary.json's `dense`, with neuron pruning: the network before pruning against the pruned
/// one.
#[derive(Serialize)]
pub struct DenseComparison {
    /// Units (neurons or filters) per layer, dense and pruned.
    pub units: Vec<LayerUnits>,
    pub params: usize,
    pub flops: usize,
    /// Dense FLOPs / pruned FLOPs.
    pub theoretical_speedup: f64,
    pub latency: Vec<Latency>,
}

#[derive(Serialize)]
pub struct LayerUnits {
    pub layer: String,
    pub dense: usize,
    pub pruned: usize,
}

#[derive(Serialize)]
pub struct Latency {
    pub batch: usize,
    pub dense_ms: f64,
    pub pruned_ms: f64,
    /// Dense time / pruned time, measured in one process.
    pub speedup: f64,
    pub pruned_samples_per_second: f64,
}

pub fn compare_with_dense(
    dense: &Network,
    pruned: &Network,
    input: InputShape,
    device: &burn::prelude::Device,
) -> DenseComparison {
    let flops = |net: &Network| net.layer_costs().iter().map(|c| c.flops).sum::<usize>();
    let latency = [1, 256, 1000]
        .into_iter()
        .map(|batch| {
            // A run's own figures, beside its training: a ResNet's pass over 1,000 images takes
            // half a second, and 21 of them for each network were a tenth of a pruning run.
            let images = random_images(input, batch, device);
            let mut timers = [dense, pruned].map(|net| network_timer(net, images.clone()));
            let seconds = medians_within(&mut timers, repeats(batch), 4.0).unwrap_or_default();
            let (dense_s, pruned_s) = (seconds[0], seconds[1]);
            Latency {
                batch,
                dense_ms: dense_s * 1e3,
                pruned_ms: pruned_s * 1e3,
                speedup: dense_s / pruned_s,
                pruned_samples_per_second: batch as f64 / pruned_s,
            }
        })
        .collect();
    let units = dense
        .unit_groups()
        .into_iter()
        .zip(pruned.unit_groups())
        .map(|(d, p)| LayerUnits { layer: d.layer, dense: d.units, pruned: p.units })
        .collect();
    DenseComparison {
        units,
        params: dense.num_params(),
        flops: flops(dense),
        theoretical_speedup: flops(dense) as f64 / flops(pruned).max(1) as f64,
        latency,
    }
}

/// Median seconds of one inference pass of `batch` random images for each network, after
/// warm-up. The networks take turns, so that both see the same machine.
pub fn inference_seconds(nets: &[&Network], input: InputShape, batch: usize, device: &Device) -> Vec<f64> {
    let images = random_images(input, batch, device);
    let mut timers: Vec<Timer> = nets.iter().map(|net| network_timer(net, images.clone())).collect();
    // Networks on a burn backend cannot fail to run.
    medians_in_turns(&mut timers, repeats(batch)).unwrap_or_default()
}

/// One timed pass of something that runs images, in seconds.
pub type Timer<'a> = Box<dyn FnMut() -> Result<f64> + 'a>;

/// Enough passes for a stable median: many when each is short.
pub fn repeats(batch: usize) -> usize {
    if batch >= 100 { 21 } else { 201 }
}

/// A batch of normally distributed images on `device`.
pub fn random_images(input: InputShape, batch: usize, device: &Device) -> Tensor<4> {
    Tensor::<4>::random(
        [batch, input.channels, input.height, input.width],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    )
}

/// `net`'s inference pass over `images` on its backend. The logits are read back and the device
/// synchronized, so that lazy backends have done the work.
pub fn network_timer<'a>(net: &Network, images: Tensor<4>) -> Timer<'a> {
    let net = net.clone().valid();
    let device = images.device();
    Box::new(move || {
        let _ = device.sync();
        let start = Instant::now();
        let _ = net.forward(images.clone()).into_data();
        let _ = device.sync();
        Ok(start.elapsed().as_secs_f64())
    })
}

/// The sparse engine's pass of `model` over `batch` images.
pub fn engine_timer<'a>(model: &'a Model, images: Vec<f32>, batch: usize) -> Timer<'a> {
    Box::new(move || {
        let start = Instant::now();
        model.forward(&images, batch)?;
        Ok(start.elapsed().as_secs_f64())
    })
}

/// Median seconds of one forward pass over the same `batch` random images: first `net` on its
/// backend, then each engine model, in turns.
pub fn median_seconds(net: &Network, models: &[&Model], batch: usize, repeats: usize) -> Result<Vec<f64>> {
    let device = net.devices().into_iter().next().unwrap_or_default();
    let [channels, height, width] = models.first().ok_or_else(|| anyhow!("no engine model to time"))?.input;
    let images = random_images(InputShape { channels, height, width }, batch, &device);
    let values = images.to_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))?;
    let mut timers = vec![network_timer(net, images)];
    timers.extend(models.iter().map(|model| engine_timer(model, values.clone(), batch)));
    medians_in_turns(&mut timers, repeats)
}

/// The median of `repeats` passes of each timer, after three warm-up passes each. They take
/// turns, so that all see the same machine, whatever else runs on it meanwhile.
pub fn medians_in_turns(timers: &mut [Timer], repeats: usize) -> Result<Vec<f64>> {
    medians_within(timers, repeats, f64::INFINITY)
}

/// Turns that [`medians_within`] takes at least, whatever its budget.
const MIN_TURNS: usize = 7;

/// [`medians_in_turns`], stopping after [`MIN_TURNS`] once the turns have taken `budget` seconds.
fn medians_within(timers: &mut [Timer], repeats: usize, budget: f64) -> Result<Vec<f64>> {
    for timer in timers.iter_mut() {
        for _ in 0..3 {
            timer()?;
        }
    }
    let mut times = vec![Vec::with_capacity(repeats); timers.len()];
    let mut spent = 0.0;
    for turn in 0..repeats {
        if turn >= MIN_TURNS && spent > budget {
            break;
        }
        for (timer, t) in timers.iter_mut().zip(times.iter_mut()) {
            let seconds = timer()?;
            spent += seconds;
            t.push(seconds);
        }
    }
    Ok(times.into_iter().map(median).collect())
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
