//! Fully connected layers: one gemm into a buffer that already holds the bias, and ReLU in place.
//! The backward pass zeroes the output gradient where ReLU cut (in place when it may), then takes
//! the three gradients from it with two gemms and a column sum.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use super::{Mat, contiguous, dims, matmul, matmul_then, tensor, values, values_mut, writable};
use crate::{LayerGrads, Wanted};

pub(super) fn forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, relu: bool) -> FlexTensor {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), bias.map(contiguous));
    let ([batch, inputs], [_, outputs]) = (dims::<2>(&x), dims::<2>(&weight));
    let bias = bias.as_ref().map(values);
    let mut output = vec![0.0; batch * outputs];
    let (lhs, rhs) = (Mat::row_major(values(&x), inputs), Mat::row_major(values(&weight), outputs));
    // Bias and ReLU in one pass over each band of rows, right after its product.
    let finish = |band: &mut [f32]| match (bias, relu) {
        (Some(bias), true) => band.chunks_exact_mut(outputs).for_each(|row| {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v = relu_of(*v + *b));
        }),
        (Some(bias), false) => band.chunks_exact_mut(outputs).for_each(|row| {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += *b);
        }),
        (None, true) => band.iter_mut().for_each(|v| *v = relu_of(*v)),
        (None, false) => {}
    };
    matmul_then(&mut output, outputs, [batch, outputs, inputs], lhs, rhs, false, true, finish);
    tensor(output, [batch, outputs])
}

/// As burn's ReLU: every value that is not above zero becomes zero (NaN stays NaN).
#[inline(always)]
fn relu_of(v: f32) -> f32 {
    if v <= 0.0 { 0.0 } else { v }
}

pub(super) fn grads(
    x: FlexTensor,
    weight: FlexTensor,
    output: FlexTensor,
    output_grad: FlexTensor,
    relu: bool,
    wanted: Wanted,
) -> LayerGrads<Flex> {
    let ([batch, inputs], [_, outputs]) = (dims::<2>(&x), dims::<2>(&weight));
    let grad = if relu {
        let mut grad = writable(output_grad);
        let output = contiguous(output);
        let kept = values_mut(&mut grad).iter_mut().zip(values(&output));
        kept.for_each(|(g, o)| *g = if *o <= 0.0 { 0.0 } else { *g });
        grad
    } else {
        contiguous(output_grad)
    };
    let grad = values(&grad);
    let bias = wanted.bias.then(|| {
        let mut sums = vec![0.0; outputs];
        for row in grad.chunks(outputs) {
            sums.iter_mut().zip(row).for_each(|(sum, g)| *sum += *g);
        }
        tensor(sums, [outputs])
    });
    let weight_grad = wanted.weight.then(|| {
        let x = contiguous(x);
        let mut result = vec![0.0; inputs * outputs];
        let x_t = Mat::row_major(values(&x), inputs).transposed();
        matmul(&mut result, outputs, [inputs, outputs, batch], x_t, Mat::row_major(grad, outputs), false, true);
        tensor(result, [inputs, outputs])
    });
    let input = wanted.input.then(|| {
        let weight = contiguous(weight);
        let mut result = vec![0.0; batch * inputs];
        let weight_t = Mat::row_major(values(&weight), outputs).transposed();
        matmul(&mut result, inputs, [batch, inputs, outputs], Mat::row_major(grad, outputs), weight_t, false, true);
        tensor(result, [batch, inputs])
    });
    (input, weight_grad, bias)
}
