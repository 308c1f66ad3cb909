//! Fully connected layers: one gemm into a buffer that already holds the bias, and ReLU in place.
//! The backward pass zeroes the output gradient where ReLU cut (in place when it may), then takes
//! the three gradients from it with two gemms and a column sum.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use super::{Mat, contiguous, dims, matmul, tensor, values, values_mut, writable};
use crate::{LayerGrads, Wanted};

pub(super) fn forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, relu: bool) -> FlexTensor {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), bias.map(contiguous));
    let ([batch, inputs], [_, outputs]) = (dims::<2>(&x), dims::<2>(&weight));
    let mut output = match &bias {
        Some(bias) => values(bias).repeat(batch),
        None => vec![0.0; batch * outputs],
    };
    let (lhs, rhs) = (Mat::row_major(values(&x), inputs), Mat::row_major(values(&weight), outputs));
    matmul(&mut output, outputs, [batch, outputs, inputs], lhs, rhs, bias.is_some(), true);
    if relu {
        // As burn's ReLU: every value that is not above zero becomes zero (NaN stays NaN).
        output.iter_mut().for_each(|v| *v = if *v <= 0.0 { 0.0 } else { *v });
    }
    tensor(output, [batch, outputs])
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
