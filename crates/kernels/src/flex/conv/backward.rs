//! The backward pass of a convolution: the weight gradient multiplies the output gradient with
//! the patches of a block of samples at once; the input gradient multiplies the transposed
//! weight with each sample's output gradient and adds the columns back into the image (col2im).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::patches::{col2im, im2col};
use super::{Geometry, samples_per_block, shift, with_scratch};
use crate::flex::{Mat, contiguous, dims, matmul, tensor, values};
use crate::{LayerGrads, Wanted};

pub(in crate::flex) fn grads(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
    wanted: Wanted,
) -> LayerGrads<Flex> {
    let (x, weight, output_grad) = (contiguous(x), contiguous(weight), contiguous(output_grad));
    let (x_dims, weight_dims) = (dims::<4>(&x), dims::<4>(&weight));
    let g = Geometry::new(x_dims, weight_dims, options);
    let (batch, out_channels) = (x_dims[0], weight_dims[0]);
    let grad = values(&output_grad);
    let bias = wanted.bias.then(|| tensor(bias_grad(grad, out_channels, g.positions()), [out_channels]));
    let weight_grad =
        wanted.weight.then(|| tensor(weight_grad(&g, values(&x), grad, batch, out_channels), weight_dims));
    let input = wanted.input.then(|| {
        let weight = values(&weight);
        let grad = if shift::pays(&g) {
            shift::input_grad(&g, weight, grad, batch, out_channels)
        } else {
            input_grad(&g, weight, grad, batch, out_channels)
        };
        tensor(grad, x_dims)
    });
    (input, weight_grad, bias)
}

/// Sums of the output gradient per channel.
fn bias_grad(grad: &[f32], channels: usize, positions: usize) -> Vec<f32> {
    let mut sums = vec![0.0; channels];
    if positions > 0 {
        for sample in grad.chunks(channels * positions) {
            sums.iter_mut().zip(sample.chunks(positions)).for_each(|(sum, plane)| *sum += crate::flex::sum(plane));
        }
    }
    sums
}

/// `Σ over samples of grad[sample] · patches[sample]ᵀ`, block by block. Each block computes the
/// transpose, `patches · gradᵀ` (`[rows, out]`): gemm runs that shape twice as fast as the other
/// (measured on LeNet-5's second convolution), and one transpose of the sum costs little.
fn weight_grad(g: &Geometry, x: &[f32], grad: &[f32], batch: usize, out_channels: usize) -> Vec<f32> {
    let (positions, rows, image) = (g.positions(), g.rows(), g.image());
    let per_block = samples_per_block(g, batch);
    let starts: Vec<usize> = (0..batch).step_by(per_block).collect();
    let split = starts.len() == 1;
    let partials: Vec<Vec<f32>> = starts
        .par_iter()
        .map(|&start| {
            let samples = per_block.min(batch - start);
            let width = samples * positions;
            // The block's patches, and its output gradient as one matrix `[out, samples ·
            // positions]`, both written whole before they are read.
            with_scratch((rows + out_channels) * width, |scratch| {
                let (cols, grads) = scratch.split_at_mut(rows * width);
                for s in 0..samples {
                    let sample = start + s;
                    im2col(g, &x[sample * image..(sample + 1) * image], cols, width, s * positions);
                    let planes = grad[sample * out_channels * positions..].chunks(positions).take(out_channels);
                    for (channel, plane) in planes.enumerate() {
                        grads[channel * width + s * positions..][..positions].copy_from_slice(plane);
                    }
                }
                let mut partial = vec![0.0; rows * out_channels];
                let (lhs, rhs) = (Mat::row_major(cols, width), Mat::row_major(grads, width).transposed());
                matmul(&mut partial, out_channels, [rows, out_channels, width], lhs, rhs, false, split);
                partial
            })
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut total = partials.next().unwrap_or_else(|| vec![0.0; rows * out_channels]);
    for partial in partials {
        total.iter_mut().zip(&partial).for_each(|(t, p)| *t += *p);
    }
    let mut weight = vec![0.0; out_channels * rows];
    for (row, sums) in total.chunks_exact(out_channels.max(1)).enumerate() {
        sums.iter().enumerate().for_each(|(channel, sum)| weight[channel * rows + row] = *sum);
    }
    weight
}

/// col2im of `weightᵀ · grad[sample]`, sample by sample.
fn input_grad(g: &Geometry, weight: &[f32], grad: &[f32], batch: usize, out_channels: usize) -> Vec<f32> {
    let (positions, rows, image) = (g.positions(), g.rows(), g.image());
    let mut input = vec![0.0; batch * image];
    if image == 0 {
        return input;
    }
    let split = batch == 1;
    input.par_chunks_mut(image).enumerate().for_each(|(sample, input)| {
        with_scratch(rows * positions, |cols| {
            let weight_t = Mat::row_major(weight, rows).transposed();
            let sample_grad = Mat::row_major(&grad[sample * out_channels * positions..], positions);
            matmul(cols, positions, [rows, positions, out_channels], weight_t, sample_grad, false, split);
            col2im(g, cols, positions, 0, input);
        })
    });
    input
}
