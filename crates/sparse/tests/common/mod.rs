#![allow(dead_code)] // each test file uses its own part of this module
//! Small random networks and a plain reference forward pass, one image at a time in the
//! textbook `[channel][row][column]` layout.

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
    let cols = channels * kernel * kernel;
    let weights = Weights::from_dense(filters, cols, rng.sparse(filters * cols, keep), Encoding::Csr);
    Layer::Conv {
        name: name.into(),
        weights,
        bias: rng.sparse(filters, 1.0),
        kernel: [kernel, kernel],
        padding: [padding, padding],
        relu: true,
    }
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
        Layer::MaxPool { kernel: [2, 2], stride: [2, 2] },
        conv2,
        Layer::MaxPool { kernel: [3, 3], stride: [1, 1] },
        linear(&mut rng, "fc1", 7, 10, keep, true), // 5 channels x 1 x 2
        linear(&mut rng, "fc2", 3, 7, keep, false),
    ];
    Model::new([2, 11, 13], None, layers).expect("the shapes chain")
}

pub fn images(seed: u64, model: &Model, batch: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..batch * model.pixels()).map(|_| rng.next()).collect()
}

/// The forward pass as the textbook writes it, from the dense weights.
pub fn reference(model: &Model, images: &[f32], batch: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for image in images.chunks(model.pixels()).take(batch) {
        let mut x = image.to_vec();
        let mut shape = model.input;
        for layer in &model.layers {
            let next = layer.output(shape).expect("valid");
            x = reference_layer(layer, shape, next, &x);
            shape = next;
        }
        out.extend(x);
    }
    out
}

fn reference_layer(layer: &Layer, [c, h, w]: [usize; 3], [oc, oh, ow]: [usize; 3], x: &[f32]) -> Vec<f32> {
    let relu = |v: f32, on: bool| if on { v.max(0.0) } else { v };
    match layer {
        Layer::Linear { weights, bias, relu: on, .. } => {
            let dense = weights.to_dense();
            (0..oc)
                .map(|o| relu((0..x.len()).map(|k| dense[o * x.len() + k] * x[k]).sum::<f32>() + bias[o], *on))
                .collect()
        }
        Layer::Conv { weights, bias, kernel: [kh, kw], padding: [ph, pw], relu: on, .. } => {
            let dense = weights.to_dense();
            let mut y = vec![0.0; oc * oh * ow];
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0;
                        for ci in 0..c {
                            for i in 0..*kh {
                                for j in 0..*kw {
                                    let (iy, ix) = ((oy + i) as isize - *ph as isize, (ox + j) as isize - *pw as isize);
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let weight = dense[((o * c + ci) * kh + i) * kw + j];
                                    sum += weight * x[(ci * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                        y[(o * oh + oy) * ow + ox] = relu(sum + bias[o], *on);
                    }
                }
            }
            y
        }
        Layer::MaxPool { kernel: [kh, kw], stride: [sh, sw] } => {
            let mut y = vec![f32::NEG_INFINITY; c * oh * ow];
            for ci in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for i in 0..*kh {
                            for j in 0..*kw {
                                let v = x[(ci * h + oy * sh + i) * w + ox * sw + j];
                                let cell = &mut y[(ci * oh + oy) * ow + ox];
                                *cell = cell.max(v);
                            }
                        }
                    }
                }
            }
            y
        }
    }
}

pub fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
