//! Every kernel as burn's own operations: what backends other than Flex run, and what Flex falls
//! back to outside its kernels' reach (other dtypes, grouped convolutions). The tests compare the
//! Flex kernels with these.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use burn::prelude::Shape;
use burn::tensor::ops::ConvOptions;

use crate::{AdamStep, LayerGrads, Norm, NormGrads, NormStep, SgdStep, Wanted};

pub fn conv2d_grads<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
    wanted: Wanted,
) -> LayerGrads<B> {
    let bias = wanted.bias.then(|| {
        let [batch, channels, height, width] = output_grad.shape().dims();
        let grad = B::float_swap_dims(output_grad.clone(), 0, 1);
        let grad = B::float_reshape(grad, Shape::new([channels, batch * height * width]));
        B::float_reshape(B::float_sum_dim(grad, 1), Shape::new([channels]))
    });
    let input =
        wanted.input.then(|| B::conv2d_x_backward(x.clone(), weight.clone(), output_grad.clone(), options.clone()));
    let weight = wanted.weight.then(|| B::conv2d_weight_backward(x, weight, output_grad, options));
    (input, weight, bias)
}

pub fn conv2d_batch_norm<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    norm: Norm<B>,
    residual: Option<FloatTensor<B>>,
    relu: bool,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    let output = B::conv2d(x, weight, None, options);
    let output = B::batch_norm(output, norm.gamma, norm.beta, norm.mean, norm.variance, norm.epsilon);
    let output = match residual {
        Some(residual) => B::float_add(output, residual),
        None => output,
    };
    if relu { B::relu(output) } else { output }
}

pub fn linear_forward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    relu: bool,
) -> FloatTensor<B> {
    let mut output = B::float_matmul(x, weight);
    if let Some(bias) = bias {
        let [outputs] = bias.shape().dims();
        output = B::float_add(output, B::float_reshape(bias, Shape::new([1, outputs])));
    }
    if relu { B::relu(output) } else { output }
}

pub fn linear_grads<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    relu: bool,
    wanted: Wanted,
) -> LayerGrads<B> {
    let grad = if relu { B::relu_backward(output, output_grad) } else { output_grad };
    let bias = wanted.bias.then(|| {
        let [_, outputs] = grad.shape().dims();
        B::float_reshape(B::float_sum_dim(grad.clone(), 0), Shape::new([outputs]))
    });
    let weight_grad = wanted.weight.then(|| B::float_matmul(B::float_transpose(x), grad.clone()));
    let input = wanted.input.then(|| B::float_matmul(grad, B::float_transpose(weight)));
    (input, weight_grad, bias)
}

/// The gradient plus the coupled L2 penalty, as burn's `WeightDecay` computes it.
fn decayed<B: Backend>(param: &FloatTensor<B>, grad: FloatTensor<B>, weight_decay: Option<f32>) -> FloatTensor<B> {
    match weight_decay {
        Some(penalty) => B::float_add(B::float_mul_scalar(param.clone(), penalty.into()), grad),
        None => grad,
    }
}

fn times<B: Backend>(tensor: FloatTensor<B>, mask: Option<&FloatTensor<B>>) -> FloatTensor<B> {
    match mask {
        Some(mask) => B::float_mul(tensor, mask.clone()),
        None => tensor,
    }
}

/// burn's `Sgd` with `Momentum` (dampening 0), the mask taking the place of its `1 − dampening`
/// factor, in the same order of operations.
pub fn sgd_update<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    velocity: Option<FloatTensor<B>>,
    mask: Option<FloatTensor<B>>,
    clear: Option<FloatTensor<B>>,
    step: SgdStep,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let mask = mask.as_ref();
    let grad = decayed::<B>(&param, grad, step.weight_decay);
    if step.momentum == 0.0 {
        let delta = B::float_mul_scalar(times::<B>(grad, mask), step.lr.into());
        return (B::float_sub(param, delta), None);
    }
    let velocity = match velocity {
        None => times::<B>(grad.clone(), mask),
        Some(previous) => {
            let entering = match mask {
                Some(mask) => B::float_mul(grad.clone(), mask.clone()),
                None => B::float_mul_scalar(grad.clone(), 1.0f32.into()),
            };
            let kept = B::float_mul_scalar(times::<B>(previous, clear.as_ref()), step.momentum.into());
            B::float_add(entering, kept)
        }
    };
    let direction = if step.nesterov {
        B::float_add(B::float_mul_scalar(velocity.clone(), step.momentum.into()), times::<B>(grad, mask))
    } else {
        velocity.clone()
    };
    let delta = B::float_mul_scalar(direction, step.lr.into());
    (B::float_sub(param, delta), Some(velocity))
}

/// burn's `Adam` (no AMSGrad), the mask folded into the factor `1 − β₁` of the first moment.
pub fn adam_update<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moments: Option<(FloatTensor<B>, FloatTensor<B>)>,
    mask: Option<FloatTensor<B>>,
    clear: Option<FloatTensor<B>>,
    step: AdamStep,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let grad = decayed::<B>(&param, grad, step.weight_decay);
    let entering = match &mask {
        Some(mask) => B::float_mul(grad.clone(), B::float_mul_scalar(mask.clone(), (1.0 - step.beta_1).into())),
        None => B::float_mul_scalar(grad.clone(), (1.0 - step.beta_1).into()),
    };
    let squared = B::float_mul_scalar(B::float_mul(grad.clone(), grad), (1.0 - step.beta_2).into());
    let (moment_1, moment_2) = match moments {
        Some((m1, m2)) => (
            B::float_add(B::float_mul_scalar(times::<B>(m1, clear.as_ref()), step.beta_1.into()), entering),
            B::float_add(B::float_mul_scalar(m2, step.beta_2.into()), squared),
        ),
        None => (entering, squared),
    };
    let bias_correction_2 = (1.0 - step.beta_2.powi(step.time)).sqrt();
    let factor = bias_correction_2 / (1.0 - step.beta_1.powi(step.time));
    let denominator = B::float_add_scalar(B::float_sqrt(moment_2.clone()), (step.epsilon * bias_correction_2).into());
    let direction = B::float_div(B::float_mul_scalar(moment_1.clone(), factor.into()), denominator);
    let param = B::float_sub(param, B::float_mul_scalar(direction, step.lr.into()));
    (param, moment_1, moment_2)
}

pub fn batch_norm_train<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    residual: Option<FloatTensor<B>>,
    relu: bool,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let normed = B::batch_norm_train(x, gamma, beta, epsilon);
    let output = match residual {
        Some(residual) => B::float_add(normed.output, residual),
        None => normed.output,
    };
    let output = if relu { B::relu(output) } else { output };
    (output, normed.mean, normed.variance)
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_grads<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    output: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    step: NormStep,
    wanted: Wanted,
) -> NormGrads<B> {
    let grad = if step.relu { B::relu_backward(output, output_grad) } else { output_grad };
    let residual = step.residual.then(|| grad.clone());
    let grads = B::batch_norm_train_backward(x, gamma, mean, variance, step.epsilon, grad);
    (
        wanted.input.then_some(grads.x_grad),
        wanted.weight.then_some(grads.gamma_grad),
        wanted.bias.then_some(grads.beta_grad),
        residual,
    )
}
