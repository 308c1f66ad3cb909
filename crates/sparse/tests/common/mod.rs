#![allow(dead_code)] // each test file uses its own part of this module
//! Small random networks and a plain reference forward pass, one image at a time in the
//! textbook `[channel][row][column]` layout, shapes worked out here rather than asked of the
//! engine.

use coppice_sparse::{Encoding, Layer, Model, Weights};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `len` values of which about `keep` (a fraction) are non-zero.
    pub fn sparse(&mut self, len: usize, keep: f32) -> Vec<f32> {
        (0..len).map(|_| if (self.next() + 1.0) / 2.0 < keep { self.next() } else { 0.0 }).collect()
    }
}

pub fn linear(rng: &mut Rng, name: &str, outputs: usize, inputs: usize, keep: f32, relu: bool) -> Layer {
    let weights = Weights::from_dense(outputs, inputs, rng.sparse(outputs * inputs, keep), Encoding::Csr);
    Layer::Linear { name: name.into(), weights, bias: rng.sparse(outputs, 1.0), relu }
}

pub fn conv(
    rng: &mut Rng,
    name: &str,
    filters: usize,
    channels: usize,
    kernel: usize,
    padding: usize,
    keep: f32,
) -> Layer {
    strided_conv(rng, name, [filters, channels], [kernel, kernel], [1, 1], [padding, padding], keep, true)
}

/// `shape` is `[filters, channels]`.
#[allow(clippy::too_many_arguments)]
pub fn strided_conv(
    rng: &mut Rng,
    name: &str,
    [filters, channels]: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    keep: f32,
    relu: bool,
) -> Layer {
    let cols = channels * kernel[0] * kernel[1];
    let weights = Weights::from_dense(filters, cols, rng.sparse(filters * cols, keep), Encoding::Csr);
    Layer::Conv { name: name.into(), weights, bias: rng.sparse(filters, 1.0), kernel, stride, padding, relu }
}

pub fn affine(rng: &mut Rng, name: &str, channels: usize, relu: bool) -> Layer {
    let (scale, shift) = (rng.sparse(channels, 1.0), rng.sparse(channels, 1.0));
    Layer::Affine { name: name.into(), scale, shift, relu }
}

/// Every layer kind: padded and unpadded convs, a pool with stride unlike its window, linear
/// layers with and without ReLU; some rows pruned empty.
pub fn every_kind(seed: u64, keep: f32) -> Model {
    let mut rng = Rng::new(seed);
    let mut conv2 = conv(&mut rng, "conv2", 5, 4, 3, 0, keep);
    if let Layer::Conv { weights, .. } = &mut conv2 {
        // Filter 1 loses every weight: its plane is its bias alone.
        let mut dense = weights.to_dense();
        dense[9..18].fill(0.0);
        dense[36..72].fill(0.0);
        *weights = Weights::from_dense(5, 36, dense, Encoding::Csr);
    }
    let layers = vec![
        conv(&mut rng, "conv1", 4, 2, 3, 1, keep),
        Layer::MaxPool { kernel: [2, 2], stride: [2, 2], padding: [0, 0] },
        conv2,
        Layer::MaxPool { kernel: [3, 3], stride: [1, 1], padding: [0, 0] },
        linear(&mut rng, "fc1", 7, 10, keep, true), // 5 channels x 1 x 2
        linear(&mut rng, "fc2", 3, 7, keep, false),
    ];
    Model::new([2, 11, 13], None, layers).expect("the shapes chain")
}

pub fn images(seed: u64, model: &Model, batch: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..batch * model.pixels()).map(|_| rng.next()).collect()
}

/// The forward pass as the textbook writes it, from the dense weights: every value of the graph
/// kept, each node reading the values it names.
pub fn reference(model: &Model, images: &[f32], batch: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for image in images.chunks(model.pixels()).take(batch) {
        let mut values = vec![(image.to_vec(), model.input)];
        for (i, node) in model.nodes.iter().enumerate() {
            let reads: Vec<usize> = if node.from.is_empty() { vec![i] } else { node.from.clone() };
            let inputs: Vec<&[f32]> = reads.iter().map(|&v| values[v].0.as_slice()).collect();
            let next = reference_layer(&node.layer, values[reads[0]].1, &inputs);
            values.push(next);
        }
        out.extend(values.pop().unwrap().0);
    }
    out
}

/// The side a window of `kernel` makes of `n`: PyTorch's floor mode.
fn side(n: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (n + 2 * padding - kernel) / stride + 1
}

fn reference_layer(layer: &Layer, [c, h, w]: [usize; 3], xs: &[&[f32]]) -> (Vec<f32>, [usize; 3]) {
    let relu = |v: f32, on: bool| if on { v.max(0.0) } else { v };
    let x = xs[0];
    // Input cell (ci, iy, ix) if it lies inside the image, None in the padding.
    let at = |ci: usize, iy: isize, ix: isize| {
        (iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize).then(|| x[(ci * h + iy as usize) * w + ix as usize])
    };
    match layer {
        Layer::Linear { weights, bias, relu: on, .. } => {
            let dense = weights.to_dense();
            let oc = bias.len();
            let y = (0..oc)
                .map(|o| relu((0..x.len()).map(|k| dense[o * x.len() + k] * x[k]).sum::<f32>() + bias[o], *on))
                .collect();
            (y, [oc, 1, 1])
        }
        Layer::Conv { weights, bias, kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw], relu: on, .. } => {
            let dense = weights.to_dense();
            let (oc, oh, ow) = (bias.len(), side(h, *kh, *sh, *ph), side(w, *kw, *sw, *pw));
            let mut y = vec![0.0; oc * oh * ow];
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0;
                        for ci in 0..c {
                            for i in 0..*kh {
                                for j in 0..*kw {
                                    let iy = (oy * sh + i) as isize - *ph as isize;
                                    let ix = (ox * sw + j) as isize - *pw as isize;
                                    if let Some(v) = at(ci, iy, ix) {
                                        sum += dense[((o * c + ci) * kh + i) * kw + j] * v;
                                    }
                                }
                            }
                        }
                        y[(o * oh + oy) * ow + ox] = relu(sum + bias[o], *on);
                    }
                }
            }
            (y, [oc, oh, ow])
        }
        Layer::MaxPool { kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw] }
        | Layer::AvgPool { kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw] } => {
            let max = matches!(layer, Layer::MaxPool { .. });
            let (oh, ow) = (side(h, *kh, *sh, *ph), side(w, *kw, *sw, *pw));
            let mut y = vec![0.0; c * oh * ow];
            for ci in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (mut largest, mut sum) = (f32::NEG_INFINITY, 0.0);
                        for i in 0..*kh {
                            for j in 0..*kw {
                                let iy = (oy * sh + i) as isize - *ph as isize;
                                let ix = (ox * sw + j) as isize - *pw as isize;
                                // Padding: -inf for the max, a zero that counts for the mean.
                                let v = at(ci, iy, ix);
                                largest = largest.max(v.unwrap_or(f32::NEG_INFINITY));
                                sum += v.unwrap_or(0.0);
                            }
                        }
                        y[(ci * oh + oy) * ow + ox] = if max { largest } else { sum / (kh * kw) as f32 };
                    }
                }
            }
            (y, [c, oh, ow])
        }
        Layer::GlobalAvgPool => {
            let y = x.chunks(h * w).map(|plane| plane.iter().sum::<f32>() / (h * w) as f32).collect();
            (y, [c, 1, 1])
        }
        Layer::Affine { scale, shift, relu: on, .. } => {
            let y = x.iter().enumerate().map(|(k, v)| relu(v * scale[k / (h * w)] + shift[k / (h * w)], *on)).collect();
            (y, [c, h, w])
        }
        Layer::Add { relu: on } => {
            let y = (0..x.len()).map(|k| relu(xs.iter().map(|x| x[k]).sum(), *on)).collect();
            (y, [c, h, w])
        }
        Layer::Relu => (x.iter().map(|v| v.max(0.0)).collect(), [c, h, w]),
    }
}

pub fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
