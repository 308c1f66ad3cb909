//! What one node of the network computes, and the shape rules that `Model::graph` checks.

use crate::weights::Weights;

#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// `y = W x + b`, then ReLU when `relu`. Flattening a `[c, h, w]` activation is free: it is
    /// already laid out in that order.
    Linear {
        name: String,
        weights: Weights,
        bias: Vec<f32>,
        relu: bool,
    },
    /// Zero padding; output side `(side + 2 padding - kernel) / stride + 1`. BatchNorm is folded
    /// into `weights` and `bias` by the exporter where a conv precedes it.
    Conv {
        name: String,
        weights: Weights,
        bias: Vec<f32>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        relu: bool,
    },
    /// PyTorch's `MaxPool2d`: padded cells are -inf, floor mode, padding at most half the window.
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// PyTorch's `AvgPool2d` defaults: padded zeros count in the divisor `kernel[0] * kernel[1]`
    /// (`count_include_pad`), floor mode, padding at most half the window.
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// The mean of each channel: `[c, h, w]` to `[c, 1, 1]`.
    GlobalAvgPool,
    /// `y = x * scale[c] + shift[c]` per channel, then ReLU when `relu`: a BatchNorm that no conv
    /// before it could absorb (after an add, say).
    Affine {
        name: String,
        scale: Vec<f32>,
        shift: Vec<f32>,
        relu: bool,
    },
    /// The elementwise sum of two or more values of one shape (a residual connection), then ReLU
    /// when `relu`.
    Add {
        relu: bool,
    },
    Relu,
}

impl Layer {
    /// The name a weighted layer's tensors carry in the file; a description for the others.
    pub fn name(&self) -> String {
        match self {
            Layer::Linear { name, .. } | Layer::Conv { name, .. } | Layer::Affine { name, .. } => name.clone(),
            Layer::MaxPool { kernel, .. } => format!("max-pool {}x{}", kernel[0], kernel[1]),
            Layer::AvgPool { kernel, .. } => format!("avg-pool {}x{}", kernel[0], kernel[1]),
            Layer::GlobalAvgPool => "global-avg-pool".into(),
            Layer::Add { .. } => "add".into(),
            Layer::Relu => "relu".into(),
        }
    }

    /// Whether the layer owns tensors in the file, stored under its name.
    pub fn is_named(&self) -> bool {
        matches!(self, Layer::Linear { .. } | Layer::Conv { .. } | Layer::Affine { .. })
    }

    pub fn weights(&self) -> Option<&Weights> {
        match self {
            Layer::Linear { weights, .. } | Layer::Conv { weights, .. } => Some(weights),
            _ => None,
        }
    }

    /// The `[channels, height, width]` this layer makes of `input`, or why it cannot read it.
    /// An add's inputs all have the shape `input` (`Model::graph` checks that).
    pub fn output(&self, input: [usize; 3]) -> Result<[usize; 3], String> {
        let [c, h, w] = input;
        let features = product(&input).ok_or_else(|| format!("{c}x{h}x{w} values overflow"))?;
        match self {
            Layer::Linear { weights, bias, .. } => {
                if weights.cols() != features {
                    return Err(format!("reads {} inputs, but gets {c}x{h}x{w} = {features}", weights.cols()));
                }
                check_len(bias, weights.rows(), "units", "biases")?;
                Ok([weights.rows(), 1, 1])
            }
            Layer::Conv { weights, bias, kernel, stride, padding, .. } => {
                let [kh, kw] = *kernel;
                let reads =
                    product(&[c, kh, kw]).ok_or_else(|| format!("a {kh}x{kw} kernel over {c} channels overflows"))?;
                if kh == 0 || kw == 0 || weights.cols() != reads {
                    return Err(format!(
                        "a {kh}x{kw} kernel over {c} channels reads {reads} weights per filter, but has {}",
                        weights.cols()
                    ));
                }
                check_len(bias, weights.rows(), "units", "biases")?;
                let [out_h, out_w] = window_output([h, w], *kernel, *stride, *padding)?;
                // The kernels address the padded input with u32 offsets.
                if padded_len(input, *padding).is_none_or(|n| n > u32::MAX as usize) {
                    return Err(format!("a {c}x{h}x{w} input padded by {padding:?} exceeds 2^32 values"));
                }
                Ok([weights.rows(), out_h, out_w])
            }
            Layer::MaxPool { kernel, stride, padding } | Layer::AvgPool { kernel, stride, padding } => {
                if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
                    return Err(format!("padding {padding:?} exceeds half the {kernel:?} window"));
                }
                let [out_h, out_w] = window_output([h, w], *kernel, *stride, *padding)?;
                Ok([c, out_h, out_w])
            }
            Layer::GlobalAvgPool => Ok([c, 1, 1]),
            Layer::Affine { scale, shift, .. } => {
                check_len(scale, c, "channels", "scales")?;
                check_len(shift, c, "channels", "shifts")?;
                Ok(input)
            }
            Layer::Add { .. } | Layer::Relu => Ok(input),
        }
    }
}

/// The product of `sides`, unless it overflows.
pub(crate) fn product(sides: &[usize]) -> Option<usize> {
    sides.iter().try_fold(1usize, |n, &s| n.checked_mul(s))
}

/// Values of `[c, h, w]` once `padding` is added on every side.
pub(crate) fn padded_len([c, h, w]: [usize; 3], [ph, pw]: [usize; 2]) -> Option<usize> {
    let side = |n: usize, p: usize| p.checked_mul(2)?.checked_add(n);
    product(&[c, side(h, ph)?, side(w, pw)?])
}

/// Output `[height, width]` of a window sliding over `[h, w]`, floor mode.
fn window_output(
    [h, w]: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<[usize; 2], String> {
    if kernel.contains(&0) || stride.contains(&0) {
        return Err(format!("window {kernel:?} and stride {stride:?} must be positive"));
    }
    let side = |n: usize, i: usize| {
        let padded = padding[i].checked_mul(2).and_then(|p| p.checked_add(n));
        let padded = padded.ok_or_else(|| format!("padding {padding:?} overflows"))?;
        padded
            .checked_sub(kernel[i])
            .map(|room| room / stride[i] + 1)
            .ok_or_else(|| format!("a {kernel:?} window does not fit a {h}x{w} input padded by {padding:?}"))
    };
    Ok([side(h, 0)?, side(w, 1)?])
}

fn check_len(values: &[f32], expected: usize, of: &str, what: &str) -> Result<(), String> {
    if values.len() != expected {
        return Err(format!("has {expected} {of} but {} {what}", values.len()));
    }
    Ok(())
}
