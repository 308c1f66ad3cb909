//! Max pooling: each output keeps the position of its maximum within its input plane, and the
//! backward pass adds each output's gradient there. Planes run in parallel.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, DType};
use burn::prelude::Shape;
use rayon::prelude::*;

use super::{contiguous, dims, tensor, values};
use crate::PoolWindow;

/// Outputs along one axis: windows that fit inside the input.
fn outputs(size: usize, kernel: usize, stride: usize, dilation: usize) -> usize {
    size.checked_sub(dilation * (kernel - 1) + 1).map_or(0, |room| room / stride + 1)
}

/// The pooled tensor and, as i32 offsets within each input plane, where each maximum was.
pub(super) fn forward(x: FlexTensor, window: PoolWindow) -> (FlexTensor, FlexTensor) {
    let x = contiguous(x);
    let [batch, channels, height, width] = dims::<4>(&x);
    let PoolWindow { kernel: [kh, kw], stride: [sh, sw], dilation: [dh, dw] } = window;
    let (oh, ow) = (outputs(height, kh, sh, dh), outputs(width, kw, sw, dw));
    let (plane, pooled_plane) = (height * width, oh * ow);
    let mut output = vec![0.0f32; batch * channels * pooled_plane];
    let mut argmax = vec![0i32; output.len()];
    if pooled_plane > 0 {
        let planes = values(&x).par_chunks(plane).zip(output.par_chunks_mut(pooled_plane));
        planes.zip(argmax.par_chunks_mut(pooled_plane)).for_each(|((input, output), argmax)| {
            for y in 0..oh {
                for x in 0..ow {
                    let (mut best, mut at) = (f32::NEG_INFINITY, y * sh * width + x * sw);
                    for ky in 0..kh {
                        let row = (y * sh + ky * dh) * width;
                        for kx in 0..kw {
                            let i = row + x * sw + kx * dw;
                            let v = input[i];
                            // The first maximum wins; NaN wins over numbers, as in burn.
                            if v > best || (v.is_nan() && !best.is_nan()) {
                                (best, at) = (v, i);
                            }
                        }
                    }
                    output[y * ow + x] = best;
                    argmax[y * ow + x] = at as i32;
                }
            }
        });
    }
    let shape = Shape::new([batch, channels, oh, ow]);
    let argmax = FlexTensor::new(Bytes::from_elems(argmax), Layout::contiguous(shape.clone()), DType::I32);
    (tensor(output, shape), argmax)
}

/// The input gradient: each output's gradient added at its maximum.
pub(super) fn grads(x_dims: [usize; 4], output_grad: FlexTensor, argmax: FlexTensor) -> FlexTensor {
    let (output_grad, argmax) = (contiguous(output_grad), argmax.to_contiguous());
    let [batch, channels, height, width] = x_dims;
    let plane = height * width;
    let [_, _, oh, ow] = dims::<4>(&output_grad);
    let pooled_plane = oh * ow;
    let mut input = vec![0.0f32; batch * channels * plane];
    if pooled_plane > 0 && plane > 0 {
        let positions = argmax.as_slice::<i32>().expect("argmax is a contiguous i32 tensor");
        let planes = input.par_chunks_mut(plane).zip(values(&output_grad).par_chunks(pooled_plane));
        planes.zip(positions.par_chunks(pooled_plane)).for_each(|((input, grad), positions)| {
            grad.iter().zip(positions).for_each(|(g, at)| input[*at as usize] += *g);
        });
    }
    tensor(input, x_dims)
}
