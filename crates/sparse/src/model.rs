//! The network and its forward pass: each tile of images goes through every node in turn, the
//! values held in the buffers that `Buffers::new` assigns.

use std::time::Duration;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::graph::{self, Buffers, Node};
use crate::kernels::{self, Simd, TileWidth, WIDE};
use crate::layer::Layer;
use crate::weights::{Encoding, Weights};

/// A network the engine runs: images `[batch, channels, height, width]` in, logits out.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// `[channels, height, width]` of one image.
    pub input: [usize; 3],
    /// What the images were normalized with in training: feed `(pixel - mean) / std`.
    pub normalization: Option<Normalization>,
    /// In topological order; the last node's output is the logits.
    pub nodes: Vec<Node>,
    /// The name of each output, when the training data named its classes; else empty.
    pub classes: Vec<String>,
}

/// One value for every channel, or one per channel; a file written before per-channel values
/// holds plain numbers, which read as one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    #[serde(with = "one_or_many")]
    pub mean: Vec<f32>,
    #[serde(with = "one_or_many")]
    pub std: Vec<f32>,
}

impl Normalization {
    pub fn per_channel(&self) -> bool {
        self.mean.len() > 1 || self.std.len() > 1
    }

    /// Mean and std of channel `c`.
    pub fn channel(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.mean), pick(&self.std))
    }
}

/// A plain number for one value, so that files of one value stay readable by version 2 readers.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f32),
        Many(Vec<f32>),
    }

    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        match values {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

/// Multiply-adds in a batch above which its tiles are spread over the cores (about half a
/// millisecond of work on one core; `coppice bench --sparse` found LeNet-300-100 at 95 % and
/// batch 64, 0.85 million, faster on one thread).
const PARALLEL_ABOVE: usize = 2_000_000;

impl Model {
    /// A chain: each layer reads the one before it. See [`Model::graph`] for what is checked.
    pub fn new(input: [usize; 3], normalization: Option<Normalization>, layers: Vec<Layer>) -> Result<Model, Error> {
        Model::graph(input, normalization, layers.into_iter().map(Node::chain).collect())
    }

    /// A network of `nodes` in topological order. Value 0 is the image and value `i >= 1` the
    /// output of node `i - 1`; a node's `from` names the values it reads, or is empty for the
    /// value just before its own. The last node's output is the logits.
    ///
    /// Checks that every weight matrix is whole, each node reads earlier values (an add two or
    /// more of one shape, every other layer exactly one) of the shape its layer takes, weighted
    /// layers' names are unique, and every size fits in memory arithmetic. Build models here (or
    /// with [`Model::new`], or load them): `forward` relies on these checks.
    pub fn graph(input: [usize; 3], normalization: Option<Normalization>, nodes: Vec<Node>) -> Result<Model, Error> {
        let model = Model { input, normalization, nodes, classes: Vec::new() };
        graph::check(model.input, &model.nodes)?;
        if let Some(n) = &model.normalization {
            let sized = |v: &[f32]| v.len() == 1 || v.len() == input[0];
            let fine = sized(&n.mean)
                && sized(&n.std)
                && n.mean.iter().all(|m| m.is_finite())
                && n.std.iter().all(|s| s.is_finite() && *s > 0.0);
            if !fine {
                let problem = format!(
                    "mean {:?} and std {:?} must be finite, std > 0, one value or one per channel ({})",
                    n.mean, n.std, input[0]
                );
                return Err(Error::Corrupt { tensor: "normalization".into(), problem });
            }
        }
        Ok(model)
    }

    /// Names the outputs; `classes` must be empty or hold one name per output.
    pub fn with_classes(mut self, classes: Vec<String>) -> Result<Model, Error> {
        if !classes.is_empty() && classes.len() != self.classes() {
            let problem = format!("{} class names for {} outputs", classes.len(), self.classes());
            return Err(Error::Corrupt { tensor: "metadata `classes`".into(), problem });
        }
        self.classes = classes;
        Ok(self)
    }

    /// The shape of every value: the input's, then each node's output.
    pub fn shapes(&self) -> Result<Vec<[usize; 3]>, Error> {
        graph::shapes(self.input, &self.nodes)
    }

    /// Every node's layer, in order.
    pub fn layers(&self) -> impl ExactSizeIterator<Item = &Layer> + DoubleEndedIterator + Clone {
        self.nodes.iter().map(|node| &node.layer)
    }

    pub fn pixels(&self) -> usize {
        self.input.iter().product()
    }

    pub fn classes(&self) -> usize {
        self.shapes().map(|s| s.last().expect("one shape per value").iter().product()).unwrap_or(0)
    }

    /// Multiply-adds of one image: each stored weight once per output pixel.
    fn multiply_adds(&self, shapes: &[[usize; 3]]) -> usize {
        let stored = |w: &Weights| match w {
            Weights::Csr(m) => m.values.len(),
            Weights::Dense(m) => m.values.len(),
        };
        self.layers()
            .zip(&shapes[1..])
            .map(|(layer, [_, h, w])| layer.weights().map_or(0, |weights| stored(weights).saturating_mul(h * w)))
            .fold(0, usize::saturating_add)
    }

    /// The same layers stored another way (the dense engine, for comparison).
    pub fn with_encoding(&self, encoding: Encoding) -> Model {
        let mut model = self.clone();
        for node in &mut model.nodes {
            if let Layer::Linear { weights, .. } | Layer::Conv { weights, .. } = &mut node.layer {
                *weights = weights.with_encoding(encoding);
            }
        }
        model
    }

    /// Applies the training's normalization to pixels scaled to [0, 1], in place.
    pub fn normalize(&self, pixels: &mut [f32]) {
        if let Some(n) = &self.normalization {
            let [channels, height, width] = self.input;
            for (i, p) in pixels.iter_mut().enumerate() {
                let (mean, std) = n.channel(i / (height * width) % channels);
                *p = (*p - mean) / std;
            }
        }
    }

    /// Logits `[batch, classes]` of normalized images `[batch, channels, height, width]`. Large
    /// batches are split across the cores.
    /// The kernels run the instructions `COPPICE_SIMD` names, or the widest the CPU has.
    pub fn forward(&self, images: &[f32], batch: usize) -> Result<Vec<f32>, Error> {
        self.run(images, batch, Simd::configured().map_err(Error::Simd)?, None)
    }

    /// [`Model::forward`] with the kernels compiled for `simd`, which the CPU must have
    /// ([`Simd::available`]): how tests compare every path on one machine.
    pub fn forward_on(&self, images: &[f32], batch: usize, simd: Simd) -> Result<Vec<f32>, Error> {
        self.run(images, batch, simd, None)
    }

    /// [`Model::forward`] on one thread, with the time spent in each node.
    pub fn forward_profiled(&self, images: &[f32], batch: usize) -> Result<(Vec<f32>, Vec<Duration>), Error> {
        let mut times = vec![Duration::ZERO; self.nodes.len()];
        let logits = self.run(images, batch, Simd::configured().map_err(Error::Simd)?, Some(&mut times))?;
        Ok((logits, times))
    }

    fn run(&self, images: &[f32], batch: usize, simd: Simd, times: Option<&mut [Duration]>) -> Result<Vec<f32>, Error> {
        if !simd.is_available() {
            // The kernels would run instructions the CPU does not have.
            return Err(Error::Simd(format!("this CPU lacks {simd}; fix: use one of {:?}", Simd::available())));
        }
        let shapes = self.shapes()?;
        let pixels = self.pixels();
        if Some(images.len()) != batch.checked_mul(pixels) {
            return Err(Error::Input(format!(
                "{} values for {batch} images of {:?} ({} values); fix: pass batch x channels x height x width values",
                images.len(),
                self.input,
                batch.checked_mul(pixels).map_or("more than memory holds".into(), |n| n.to_string())
            )));
        }
        let classes: usize = shapes.last().expect("one shape per value").iter().product();
        let width = match batch {
            0 => return Ok(Vec::new()),
            1 => TileWidth::One,
            2..WIDE => TileWidth::Narrow,
            _ => TileWidth::Wide,
        };
        let tile = width.images();
        let outputs = batch.checked_mul(classes).ok_or_else(|| {
            Error::Input(format!("{batch} images x {classes} outputs overflow; fix: pass fewer images at a time"))
        })?;
        let mut logits = vec![0.0; outputs];
        let plan = Plan { model: self, buffers: Buffers::new(&self.nodes, &shapes), shapes: &shapes, width, simd };
        let run_tile = |t: usize, out: &mut [f32], times: Option<&mut [Duration]>| {
            plan.with_scratch(|scratch| plan.tile(&images[t * tile * pixels..], out, scratch, times))
        };
        let tiles = batch.div_ceil(tile);
        match times {
            Some(times) => {
                for (t, out) in logits.chunks_mut(tile * classes).enumerate() {
                    run_tile(t, out, Some(&mut *times));
                }
            }
            // Waking the thread pool costs tens of microseconds: small work stays on this thread.
            None if tiles == 1 || self.multiply_adds(&shapes).saturating_mul(batch) < PARALLEL_ABOVE => {
                for (t, out) in logits.chunks_mut(tile * classes).enumerate() {
                    run_tile(t, out, None);
                }
            }
            None => logits.par_chunks_mut(tile * classes).enumerate().for_each(|(t, out)| run_tile(t, out, None)),
        }
        Ok(logits)
    }
}

/// Activation buffers, `[features][tile]` each, that values are placed in by `Model::buffers`.
#[derive(Default)]
struct Scratch {
    values: Vec<Vec<f32>>,
    /// A padded convolution's input.
    padded: Vec<f32>,
}

thread_local! {
    /// Kept from call to call: buffers this large come from fresh pages, and faulting them in
    /// again on every call costs as much as a small network's forward pass.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

struct Plan<'a> {
    model: &'a Model,
    shapes: &'a [[usize; 3]],
    buffers: Buffers,
    width: TileWidth,
    simd: Simd,
}

impl Plan<'_> {
    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let tile = self.width.images();
            if scratch.values.len() < self.buffers.sizes.len() {
                scratch.values.resize_with(self.buffers.sizes.len(), Vec::new);
            }
            for (buffer, &size) in scratch.values.iter_mut().zip(&self.buffers.sizes) {
                if buffer.len() < size * tile {
                    buffer.resize(size * tile, 0.0);
                }
            }
            f(&mut scratch)
        })
    }

    /// Runs the images at the start of `images` (as many as `out` has room for) and writes their
    /// logits into `out`.
    fn tile(&self, images: &[f32], out: &mut [f32], scratch: &mut Scratch, mut times: Option<&mut [Duration]>) {
        let tile = self.width.images();
        let pixels = self.model.pixels();
        let size = |value: usize| self.shapes[value].iter().product::<usize>() * tile;
        let classes = size(self.shapes.len() - 1) / tile;
        let count = out.len() / classes;
        let x = &mut scratch.values[self.buffers.of_value[0]][..pixels * tile];
        if count < tile {
            x.fill(0.0); // the columns past the batch's end
        }
        transpose_into(self.simd, images, pixels, count, tile, x);
        for (i, node) in self.model.nodes.iter().enumerate() {
            let start = times.as_ref().map(|_| std::time::Instant::now());
            // Taken out while the node runs, so that its inputs can be borrowed beside it; the
            // plan never puts an output in a buffer that one of its inputs holds.
            let mut y = std::mem::take(&mut scratch.values[self.buffers.of_value[i + 1]]);
            let value = |v: usize| &scratch.values[self.buffers.of_value[v]][..size(v)];
            let first = node.from.first().copied().unwrap_or(i);
            let (layer, input, y_len) = (&node.layer, self.shapes[first], size(i + 1));
            if node.from.len() <= 1 {
                kernels::layer(
                    layer,
                    input,
                    self.width,
                    self.simd,
                    &[value(first)],
                    &mut y[..y_len],
                    &mut scratch.padded,
                );
            } else {
                let xs: Vec<&[f32]> = node.from.iter().map(|&v| value(v)).collect();
                kernels::layer(layer, input, self.width, self.simd, &xs, &mut y[..y_len], &mut scratch.padded);
            }
            scratch.values[self.buffers.of_value[i + 1]] = y;
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times[i] += start.elapsed();
            }
        }
        let logits = &scratch.values[self.buffers.of_value[self.shapes.len() - 1]];
        for (i, out) in out.chunks_mut(classes).enumerate() {
            for (k, v) in out.iter_mut().enumerate() {
                *v = logits[k * tile + i];
            }
        }
    }
}

/// `images` (`count` rows of `pixels`) into `x` as `[pixel][tile]`, in 8 x 8 blocks: each block
/// reads eight runs and writes eight runs of eight values instead of one value per cache line.
fn transpose_into(simd: Simd, images: &[f32], pixels: usize, count: usize, tile: usize, x: &mut [f32]) {
    const B: usize = 8;
    let (full_pixels, full_images) = (pixels / B * B, if tile >= B { count / B * B } else { 0 });
    for p0 in (0..full_pixels).step_by(B) {
        for i0 in (0..full_images).step_by(B) {
            kernels::transpose8(simd, &images[i0 * pixels + p0..], pixels, &mut x[p0 * tile + i0..], tile);
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
