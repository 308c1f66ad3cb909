//! BatchNorm with the batch's own statistics, for training. burn's generic path swaps the batch
//! and channel axes into a copy for each reduction and makes a pass over the activation per
//! elementwise operation, forward and backward (a third of a ResNet step went there); here the
//! statistics take two passes over each channel, and one more pass normalizes, adds the residual
//! and applies ReLU. The backward pass reads the gradient once for its sums and once more to write
//! the input's gradient, recomputing what ReLU cut from the output instead of storing a mask.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{contiguous, sum, tensor, values, widest};
use crate::{NormGrads, NormStep, Wanted};

/// `[batch, channels, values per channel and sample]` of an input `[batch, channels, ...]`.
pub(super) fn geometry(x: &FlexTensor) -> Option<[usize; 3]> {
    let shape = x.layout().shape().as_slice();
    let (&batch, &channels) = (shape.first()?, shape.get(1)?);
    Some([batch, channels, shape[2..].iter().product()])
}

/// The planes of channel `c`, one per sample.
fn planes(x: &[f32], [batch, channels, inner]: [usize; 3], c: usize) -> impl Iterator<Item = &[f32]> + Clone {
    (0..batch).map(move |n| &x[(n * channels + c) * inner..][..inner])
}

/// Per channel, the mean and the biased variance. Each plane's own mean and squared deviations
/// come from two passes over it while it is in cache, and the planes combine in f64 as Chan et
/// al.'s parallel variance does: one pass over memory, without the cancellation of a variance
/// taken as the mean square less the squared mean.
fn statistics(x: &[f32], geometry: [usize; 3]) -> Vec<(f32, f32)> {
    let [_, channels, inner] = geometry;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            widest(
                #[inline(always)]
                || {
                    let (mut count, mut mean, mut squares) = (0.0f64, 0.0f64, 0.0f64);
                    for plane in planes(x, geometry, c).filter(|plane| !plane.is_empty()) {
                        let plane_mean = sum(plane) / inner as f32;
                        let plane_squares = squared_deviation(plane, plane_mean) as f64;
                        let (n, delta) = (inner as f64, plane_mean as f64 - mean);
                        let total = count + n;
                        mean += delta * n / total;
                        squares += plane_squares + delta * delta * count * n / total;
                        count = total;
                    }
                    (mean as f32, (squares / count.max(1.0)) as f32)
                },
            )
        })
        .collect()
}

#[inline(always)]
fn squared_deviation(values: &[f32], mean: f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(lane, v)| *lane += (v - mean) * (v - mean));
    }
    lanes.iter().sum::<f32>() + rest
}

/// As burn's ReLU: every value that is not above zero becomes zero (NaN stays NaN).
#[inline(always)]
fn relu_of(v: f32) -> f32 {
    if v <= 0.0 { 0.0 } else { v }
}

pub(super) fn forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    residual: Option<FlexTensor>,
    relu: bool,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().clone();
    let [x, gamma, beta] = [x, gamma, beta].map(contiguous);
    let residual = residual.map(contiguous);
    let geometry @ [_, channels, inner] = geometry(&x).expect("the caller checked the rank");
    let x = values(&x);
    let stats = statistics(x, geometry);
    let scale: Vec<f32> = stats
        .iter()
        .zip(values(&gamma))
        .map(|((_, variance), g)| (*g as f64 / (*variance as f64 + epsilon).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = stats.iter().zip(values(&beta)).zip(&scale).map(|(((mean, _), b), s)| b - mean * s).collect();
    let residual = residual.as_ref().map(values);
    let mut output = vec![0.0; x.len()];
    let sample = channels * inner;
    if sample > 0 {
        output.par_chunks_mut(sample).enumerate().for_each(|(n, out)| {
            widest(
                #[inline(always)]
                || normalize_sample(n, out, (x, residual), (&scale, &shift), inner, relu),
            )
        });
    }
    let (mean, variance): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    (tensor(output, shape), tensor(mean, [channels]), tensor(variance, [channels]))
}

/// One sample's output: `x * scale + shift` per channel, plus the residual, then ReLU.
#[inline(always)]
fn normalize_sample(
    n: usize,
    out: &mut [f32],
    (x, residual): (&[f32], Option<&[f32]>),
    (scale, shift): (&[f32], &[f32]),
    inner: usize,
    relu: bool,
) {
    let sample = out.len();
    for (c, plane) in out.chunks_mut(inner).enumerate() {
        let at = n * sample + c * inner;
        let (input, (s, b)) = (&x[at..at + inner], (scale[c], shift[c]));
        match residual {
            Some(r) => plane.iter_mut().zip(input).zip(&r[at..at + inner]).for_each(|((o, v), r)| *o = v * s + b + r),
            None => plane.iter_mut().zip(input).for_each(|(o, v)| *o = v * s + b),
        }
        if relu {
            plane.iter_mut().for_each(|o| *o = relu_of(*o));
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn grads(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    output: FlexTensor,
    output_grad: FlexTensor,
    step: NormStep,
    wanted: Wanted,
) -> NormGrads<Flex> {
    let shape = x.layout().shape().clone();
    let [x, gamma, mean, variance, output_grad] = [x, gamma, mean, variance, output_grad].map(contiguous);
    let output = step.relu.then(|| contiguous(output));
    let [batch, channels, inner] = geometry(&x).expect("the caller checked the rank");
    let (x, dy, output) = (values(&x), values(&output_grad), output.as_ref().map(values));
    let (mean, gamma) = (values(&mean), values(&gamma));
    let inv_std: Vec<f64> = values(&variance).iter().map(|v| 1.0 / (*v as f64 + step.epsilon).sqrt()).collect();
    let output_plane = |at: usize| output.map(|y| &y[at..at + inner]);
    // Per channel, the sums of the gradient that reached the norm (where ReLU let it through) and
    // of its product with the centred input.
    let sums: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            widest(
                #[inline(always)]
                || {
                    let (mut g_sum, mut gx_sum) = (0.0f64, 0.0f64);
                    for n in 0..batch {
                        let at = (n * channels + c) * inner;
                        let (g, gx) = plane_sums(&dy[at..at + inner], output_plane(at), &x[at..at + inner], mean[c]);
                        g_sum += g as f64;
                        gx_sum += gx as f64;
                    }
                    (g_sum, gx_sum)
                },
            )
        })
        .collect();
    let count = (batch * inner).max(1) as f64;
    let sample = channels * inner;
    let input_grad = wanted.input.then(|| {
        // dx = gamma / std * (g - mean(g) - x̂ · mean(g · x̂)), as a * g + b * (x - mean) + c.
        let coefficients: Vec<(f32, f32, f32)> = (0..channels)
            .map(|c| {
                let (g_sum, gx_sum) = sums[c];
                let a = gamma[c] as f64 * inv_std[c];
                let b = -a * inv_std[c] * inv_std[c] * gx_sum / count;
                (a as f32, b as f32, (-a * g_sum / count) as f32)
            })
            .collect();
        let mut grad = vec![0.0; x.len()];
        if sample > 0 {
            grad.par_chunks_mut(sample).enumerate().for_each(|(n, out)| {
                widest(
                    #[inline(always)]
                    || {
                        for (c, plane) in out.chunks_mut(inner).enumerate() {
                            let at = n * sample + c * inner;
                            let (dy, input) = (&dy[at..at + inner], &x[at..at + inner]);
                            input_grad_plane(plane, dy, output_plane(at), input, mean[c], coefficients[c]);
                        }
                    },
                )
            });
        }
        tensor(grad, shape.clone())
    });
    let gamma_grad = wanted
        .weight
        .then(|| tensor(sums.iter().zip(&inv_std).map(|((_, gx), s)| (gx * s) as f32).collect(), [channels]));
    let beta_grad = wanted.bias.then(|| tensor(sums.iter().map(|(g, _)| *g as f32).collect(), [channels]));
    let residual_grad = step.residual.then(|| match output {
        Some(y) => tensor(relu_mask(y, dy), shape.clone()),
        None => output_grad.clone(),
    });
    (input_grad, gamma_grad, beta_grad, residual_grad)
}

/// One plane of the input's gradient, `a * g + b * (x - mean) + k`, `g` the gradient that
/// reached the norm.
#[inline(always)]
fn input_grad_plane(
    out: &mut [f32],
    dy: &[f32],
    output: Option<&[f32]>,
    x: &[f32],
    mean: f32,
    (a, b, k): (f32, f32, f32),
) {
    match output {
        Some(y) => out
            .iter_mut()
            .zip(dy)
            .zip(y)
            .zip(x)
            .for_each(|(((o, g), y), v)| *o = a * masked(*g, *y) + b * (v - mean) + k),
        None => out.iter_mut().zip(dy).zip(x).for_each(|((o, g), v)| *o = a * g + b * (v - mean) + k),
    }
}

/// The gradient that reached a norm followed by ReLU: zero where the output was cut.
#[inline(always)]
fn masked(grad: f32, output: f32) -> f32 {
    if output <= 0.0 { 0.0 } else { grad }
}

fn relu_mask(output: &[f32], grad: &[f32]) -> Vec<f32> {
    output.iter().zip(grad).map(|(y, g)| masked(*g, *y)).collect()
}

/// `Σ g` and `Σ g · (x - mean)` over one plane, `g` being `dy` masked by the output's sign when
/// there is one; eight lanes each, so that the loop vectorizes.
#[inline(always)]
fn plane_sums(dy: &[f32], output: Option<&[f32]>, x: &[f32], mean: f32) -> (f32, f32) {
    let (mut g_lanes, mut gx_lanes) = ([0.0f32; 8], [0.0f32; 8]);
    let full = dy.len() / 8 * 8;
    for start in (0..full).step_by(8) {
        for k in 0..8 {
            let i = start + k;
            let g = output.map_or(dy[i], |y| masked(dy[i], y[i]));
            g_lanes[k] += g;
            gx_lanes[k] += g * (x[i] - mean);
        }
    }
    let (mut g_sum, mut gx_sum) = (g_lanes.iter().sum::<f32>(), gx_lanes.iter().sum::<f32>());
    for i in full..dy.len() {
        let g = output.map_or(dy[i], |y| masked(dy[i], y[i]));
        g_sum += g;
        gx_sum += g * (x[i] - mean);
    }
    (g_sum, gx_sum)
}
