//! Measured inference time: a pruned network against its dense one.

use std::time::Instant;

use burn::module::Module;
use burn::prelude::{Device, Tensor};
use coppice_models::{Classifier, InputShape, Network, Prunable};

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
/// warm-up. The networks take turns, so that both see the same machine; the logits are read back
/// so that lazy backends have done the work.
pub fn inference_seconds(nets: &[&Network], input: InputShape, batch: usize, device: &Device) -> Vec<f64> {
    let images = Tensor::<4>::random(
        [batch, input.channels, input.height, input.width],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let nets: Vec<Network> = nets.iter().map(|n| (*n).clone().valid()).collect();
    let time = |net: &Network| {
        let _ = device.sync();
        let start = Instant::now();
        let _ = net.forward(images.clone()).into_data();
        let _ = device.sync();
        start.elapsed().as_secs_f64()
    };
    for net in &nets {
        for _ in 0..3 {
            time(net);
        }
    }
    let repeats = if batch >= 100 { 21 } else { 201 };
    let mut times = vec![Vec::with_capacity(repeats); nets.len()];
    for _ in 0..repeats {
        for (net, t) in nets.iter().zip(times.iter_mut()) {
            t.push(time(net));
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}
