//! The network as a list of layers, and its forward pass.

use std::time::Duration;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::kernels::{self, TileWidth};
use crate::weights::{Encoding, Weights};

/// A network the engine runs: images `[batch, channels, height, width]` in, logits out.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// `[channels, height, width]` of one image.
    pub input: [usize; 3],
    /// What the images were normalized with in training: feed `(pixel - mean) / std`.
    pub normalization: Option<Normalization>,
    pub layers: Vec<Layer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

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
    /// Stride 1, zero padding; BatchNorm is folded into `weights` and `bias` by the exporter.
    Conv {
        name: String,
        weights: Weights,
        bias: Vec<f32>,
        kernel: [usize; 2],
        padding: [usize; 2],
        relu: bool,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
}

impl Layer {
    pub fn name(&self) -> String {
        match self {
            Layer::Linear { name, .. } | Layer::Conv { name, .. } => name.clone(),
            Layer::MaxPool { kernel, .. } => format!("max-pool {}x{}", kernel[0], kernel[1]),
        }
    }

    pub fn weights(&self) -> Option<&Weights> {
        match self {
            Layer::Linear { weights, .. } | Layer::Conv { weights, .. } => Some(weights),
            Layer::MaxPool { .. } => None,
        }
    }

    /// The `[channels, height, width]` this layer makes of `input`, or why it cannot read it.
    pub fn output(&self, input: [usize; 3]) -> Result<[usize; 3], String> {
        let [c, h, w] = input;
        match self {
            Layer::Linear { weights, bias, .. } => {
                if weights.cols() != c * h * w {
                    return Err(format!("reads {} inputs, but gets {c}x{h}x{w} = {}", weights.cols(), c * h * w));
                }
                check_bias(bias, weights.rows())?;
                Ok([weights.rows(), 1, 1])
            }
            Layer::Conv { weights, bias, kernel, padding, .. } => {
                let [kh, kw] = *kernel;
                if kh == 0 || kw == 0 || weights.cols() != c * kh * kw {
                    return Err(format!(
                        "a {kh}x{kw} kernel over {c} channels reads {} weights per filter, but has {}",
                        c * kh * kw,
                        weights.cols()
                    ));
                }
                check_bias(bias, weights.rows())?;
                let (ph, pw) = (h + 2 * padding[0], w + 2 * padding[1]);
                if ph < kh || pw < kw {
                    return Err(format!("a {kh}x{kw} kernel does not fit a padded {ph}x{pw} input"));
                }
                Ok([weights.rows(), ph + 1 - kh, pw + 1 - kw])
            }
            Layer::MaxPool { kernel, stride } => {
                if kernel.contains(&0) || stride.contains(&0) || h < kernel[0] || w < kernel[1] {
                    return Err(format!("a {kernel:?} window with stride {stride:?} does not fit {h}x{w}"));
                }
                Ok([c, (h - kernel[0]) / stride[0] + 1, (w - kernel[1]) / stride[1] + 1])
            }
        }
    }
}

fn check_bias(bias: &[f32], rows: usize) -> Result<(), String> {
    if bias.len() != rows {
        return Err(format!("has {rows} units but {} biases", bias.len()));
    }
    Ok(())
}

/// Multiply-adds in a batch above which its tiles are spread over the cores (about half a
/// millisecond of work on one core; `coppice bench --sparse` found LeNet-300-100 at 95 % and
/// batch 64, 0.85 million, faster on one thread).
const PARALLEL_ABOVE: usize = 2_000_000;

/// Widest tile first: a batch is cut into tiles of this many images, and each tile goes through
/// the whole network while its activations stay in cache.
const WIDE: usize = 32;

impl Model {
    /// Checks that every weight matrix is whole and each layer reads what the one before it
    /// makes. Build models here (or load them): `forward` relies on these checks.
    pub fn new(input: [usize; 3], normalization: Option<Normalization>, layers: Vec<Layer>) -> Result<Model, Error> {
        let model = Model { input, normalization, layers };
        for layer in &model.layers {
            if let Some(Err((array, problem))) = layer.weights().map(Weights::check) {
                return Err(Error::Corrupt { tensor: format!("{}.{array}", layer.name()), problem });
            }
        }
        model.shapes()?;
        let mut names: Vec<String> = model.layers.iter().filter(|l| l.weights().is_some()).map(Layer::name).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Corrupt { tensor: twice[0].clone(), problem: "names two layers".into() });
        }
        if let Some(n) = normalization.filter(|n| !(n.mean.is_finite() && n.std.is_finite() && n.std > 0.0)) {
            let problem = format!("mean {} and std {} must be finite, std > 0", n.mean, n.std);
            return Err(Error::Corrupt { tensor: "normalization".into(), problem });
        }
        Ok(model)
    }

    /// The input shape followed by every layer's output shape.
    pub fn shapes(&self) -> Result<Vec<[usize; 3]>, Error> {
        let mut shapes = vec![self.input];
        if self.input.contains(&0) {
            return Err(Error::Corrupt {
                tensor: "input".into(),
                problem: format!("{:?} has an empty side", self.input),
            });
        }
        for layer in &self.layers {
            let next = layer
                .output(*shapes.last().expect("starts with the input"))
                .map_err(|problem| Error::Corrupt { tensor: layer.name(), problem })?;
            if next.contains(&0) {
                let problem = format!("makes an empty output {next:?}");
                return Err(Error::Corrupt { tensor: layer.name(), problem });
            }
            shapes.push(next);
        }
        if self.layers.is_empty() {
            return Err(Error::Corrupt { tensor: "layers".into(), problem: "the network has no layers".into() });
        }
        Ok(shapes)
    }

    pub fn pixels(&self) -> usize {
        self.input.iter().product()
    }

    pub fn classes(&self) -> usize {
        self.shapes().map(|s| s.last().expect("one shape per layer and the input").iter().product()).unwrap_or(0)
    }

    /// Multiply-adds of one image: each stored weight once per output pixel.
    fn multiply_adds(&self, shapes: &[[usize; 3]]) -> usize {
        let stored = |w: &Weights| match w {
            Weights::Csr(m) => m.values.len(),
            Weights::Dense(m) => m.values.len(),
        };
        self.layers
            .iter()
            .zip(&shapes[1..])
            .map(|(layer, [_, h, w])| layer.weights().map_or(0, |weights| stored(weights) * h * w))
            .sum()
    }

    /// The same layers stored another way (the dense engine, for comparison).
    pub fn with_encoding(&self, encoding: Encoding) -> Model {
        let mut model = self.clone();
        for layer in &mut model.layers {
            if let Layer::Linear { weights, .. } | Layer::Conv { weights, .. } = layer {
                *weights = weights.with_encoding(encoding);
            }
        }
        model
    }

    /// Applies the training's normalization to pixels scaled to [0, 1], in place.
    pub fn normalize(&self, pixels: &mut [f32]) {
        if let Some(n) = self.normalization {
            pixels.iter_mut().for_each(|p| *p = (*p - n.mean) / n.std);
        }
    }

    /// Logits `[batch, classes]` of normalized images `[batch, channels, height, width]`. Large
    /// batches are split across the cores.
    pub fn forward(&self, images: &[f32], batch: usize) -> Result<Vec<f32>, Error> {
        self.run(images, batch, None)
    }

    /// [`Model::forward`] on one thread, with the time spent in each layer.
    pub fn forward_profiled(&self, images: &[f32], batch: usize) -> Result<(Vec<f32>, Vec<Duration>), Error> {
        let mut times = vec![Duration::ZERO; self.layers.len()];
        let logits = self.run(images, batch, Some(&mut times))?;
        Ok((logits, times))
    }

    fn run(&self, images: &[f32], batch: usize, times: Option<&mut [Duration]>) -> Result<Vec<f32>, Error> {
        let pixels = self.pixels();
        if images.len() != batch * pixels {
            return Err(Error::Input(format!(
                "{} values for {batch} images of {:?} ({} values); fix: pass batch x channels x height x width values",
                images.len(),
                self.input,
                batch * pixels
            )));
        }
        let shapes = self.shapes()?;
        let classes: usize = shapes.last().expect("one shape per layer and the input").iter().product();
        let largest = shapes.iter().map(|s| s.iter().product::<usize>()).max().unwrap_or(0);
        let width = match batch {
            0 => return Ok(Vec::new()),
            1 => TileWidth::One,
            2..WIDE => TileWidth::Narrow,
            _ => TileWidth::Wide,
        };
        let tile = width.images();
        let mut logits = vec![0.0; batch * classes];
        let plan = Plan { model: self, shapes: &shapes, width };
        let scratch = largest * tile;
        let run_tile = |t: usize, out: &mut [f32], times: Option<&mut [Duration]>| {
            with_scratch(scratch, |buffers| plan.tile(&images[t * tile * pixels..], out, buffers, times))
        };
        let tiles = batch.div_ceil(tile);
        match times {
            Some(times) => {
                for (t, out) in logits.chunks_mut(tile * classes).enumerate() {
                    run_tile(t, out, Some(&mut *times));
                }
            }
            // Waking the thread pool costs tens of microseconds: small work stays on this thread.
            None if tiles == 1 || self.multiply_adds(&shapes) * batch < PARALLEL_ABOVE => {
                for (t, out) in logits.chunks_mut(tile * classes).enumerate() {
                    run_tile(t, out, None);
                }
            }
            None => logits.par_chunks_mut(tile * classes).enumerate().for_each(|(t, out)| run_tile(t, out, None)),
        }
        Ok(logits)
    }
}

/// Two activation buffers, `[features][tile]` each, that layers read from and write to in turn.
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    /// A padded convolution's input.
    padded: Vec<f32>,
}

thread_local! {
    /// Kept from call to call: buffers this large come from fresh pages, and faulting them in
    /// again on every call costs as much as a small network's forward pass.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn with_scratch<R>(len: usize, f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.a.len() < len {
            scratch.a.resize(len, 0.0);
            scratch.b.resize(len, 0.0);
        }
        f(&mut scratch)
    })
}

struct Plan<'a> {
    model: &'a Model,
    shapes: &'a [[usize; 3]],
    width: TileWidth,
}

impl Plan<'_> {
    /// Runs the images at the start of `images` (as many as `out` has room for) and writes their
    /// logits into `out`.
    fn tile(&self, images: &[f32], out: &mut [f32], scratch: &mut Scratch, mut times: Option<&mut [Duration]>) {
        let tile = self.width.images();
        let pixels = self.model.pixels();
        let classes: usize = self.shapes.last().map_or(1, |s| s.iter().product());
        let count = out.len() / classes;
        let x = &mut scratch.a[..pixels * tile];
        if count < tile {
            x.fill(0.0); // the columns past the batch's end
        }
        transpose_into(images, pixels, count, tile, x);
        let (mut from, mut to) = (&mut scratch.a, &mut scratch.b);
        for (l, layer) in self.model.layers.iter().enumerate() {
            let start = times.as_ref().map(|_| std::time::Instant::now());
            let (input, output) = (self.shapes[l], self.shapes[l + 1]);
            let size = |s: [usize; 3]| s.iter().product::<usize>() * tile;
            kernels::layer(
                layer,
                input,
                self.width,
                &from[..size(input)],
                &mut to[..size(output)],
                &mut scratch.padded,
            );
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times[l] += start.elapsed();
            }
            std::mem::swap(&mut from, &mut to);
        }
        for (i, logits) in out.chunks_mut(classes).enumerate() {
            for (k, v) in logits.iter_mut().enumerate() {
                *v = from[k * tile + i];
            }
        }
    }
}

/// `images` (`count` rows of `pixels`) into `x` as `[pixel][tile]`, in 8 x 8 blocks: each block
/// reads eight runs and writes eight runs of eight values instead of one value per cache line.
fn transpose_into(images: &[f32], pixels: usize, count: usize, tile: usize, x: &mut [f32]) {
    const B: usize = 8;
    let (full_pixels, full_images) = (pixels / B * B, if tile >= B { count / B * B } else { 0 });
    for p0 in (0..full_pixels).step_by(B) {
        for i0 in (0..full_images).step_by(B) {
            kernels::transpose8(&images[i0 * pixels + p0..], pixels, &mut x[p0 * tile + i0..], tile);
        }
    }
    // What the blocks left: the last images, and the last pixels of every image.
    for (i, image) in images.chunks(pixels).take(count).enumerate() {
        let first = if i < full_images { full_pixels } else { 0 };
        for (p, &v) in image.iter().enumerate().skip(first) {
            x[p * tile + i] = v;
        }
    }
}
