//! Measured inference time: a pruned network against its dense one.

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::{Device, Tensor};
use coppice_models::{Classifier, InputShape, Network, Prunable};
use coppice_sparse::Model;

use crate::summary::{DenseComparison, Latency, LayerUnits};

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
            let seconds = inference_seconds(&[dense, pruned], input, batch, device);
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

/// The median of `repeats` passes of each timer, after three warm-up passes each. They take
/// turns, so that all see the same machine, whatever else runs on it meanwhile.
pub fn medians_in_turns(timers: &mut [Timer], repeats: usize) -> Result<Vec<f64>> {
    for timer in timers.iter_mut() {
        for _ in 0..3 {
            timer()?;
        }
    }
    let mut times = vec![Vec::with_capacity(repeats); timers.len()];
    for _ in 0..repeats {
        for (timer, t) in timers.iter_mut().zip(times.iter_mut()) {
            t.push(timer()?);
        }
    }
    Ok(times.into_iter().map(median).collect())
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
