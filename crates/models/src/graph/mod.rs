//! A network as data: named layers in the order they run, each reading the layer before it or
//! the layers it names, as Caffe's prototxt and ONNX write networks down. Every network coppice
//! builds is one of these, the presets included, so that one forward pass, one derivation of the
//! prunable structure and one file format serve them all.

mod check;
pub(crate) mod coupling;

use serde::{Deserialize, Serialize};

pub use check::GraphError;
pub(crate) use coupling::Coupling;

/// `[channels, height, width]` of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl InputShape {
    pub fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// The network that `architecture.json` holds and that a config's `[model]` expands to: the input
/// it takes and its layers. Widths are read back from the tensors, so a pruned network describes
/// its smaller self.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub input: InputShape,
    pub layers: Vec<Node>,
}

/// The name that stands for the image in a layer's `inputs`.
pub const IMAGE: &str = "input";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Also the prefix of the layer's tensors (`<name>.weight`); dots nest, as PyTorch's module
    /// paths do (`layer1.0.conv1`).
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
    /// The layers read, by name; empty: the layer before (the image for the first layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// What a layer computes. Sizes are `[height, width]`; padding is zeros on both sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Conv {
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        bias: bool,
    },
    Linear {
        units: usize,
        bias: bool,
    },
    /// Per channel of an image, or per feature of a flat input.
    BatchNorm {
        epsilon: f64,
        momentum: f64,
    },
    Relu,
    /// Floor mode; padding is -infinity.
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// Floor mode; padded zeros count in the mean (PyTorch's default).
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// The mean of each channel: `[c, h, w]` becomes `[c]`.
    GlobalAvgPool,
    Flatten,
    Dropout {
        prob: f64,
    },
    /// The sum of two or more inputs of one shape.
    Add,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::Linear { .. } => "linear",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::MaxPool { .. } => "max_pool",
            Op::AvgPool { .. } => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Dropout { .. } => "dropout",
            Op::Add => "add",
        }
    }

    /// A layer with weights that pruning reads and cuts.
    pub fn is_weighted(&self) -> bool {
        matches!(self, Op::Conv { .. } | Op::Linear { .. })
    }
}

/// What one layer outputs for one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Image { channels: usize, height: usize, width: usize },
    Flat(usize),
}

impl Shape {
    /// Channels of an image, features of a flat tensor: the axis pruning cuts.
    pub fn units(&self) -> usize {
        match *self {
            Shape::Image { channels, .. } => channels,
            Shape::Flat(n) => n,
        }
    }

    pub fn values(&self) -> usize {
        match *self {
            Shape::Image { channels, height, width } => channels.saturating_mul(height).saturating_mul(width),
            Shape::Flat(n) => n,
        }
    }

    pub fn pixels(&self) -> usize {
        match *self {
            Shape::Image { height, width, .. } => height * width,
            Shape::Flat(_) => 1,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Image { channels, height, width } => write!(f, "{channels}x{height}x{width}"),
            Shape::Flat(n) => write!(f, "{n} features"),
        }
    }
}

/// Where a layer's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Image,
    Layer(usize),
}

/// An architecture whose names, edges and shapes have been checked: what a network is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub architecture: Architecture,
    /// Per layer, the values it reads.
    pub reads: Vec<Vec<Source>>,
    /// Per layer, its output shape.
    pub shapes: Vec<Shape>,
}

impl Graph {
    pub fn input_shape(&self) -> Shape {
        let InputShape { channels, height, width } = self.architecture.input;
        Shape::Image { channels, height, width }
    }

    pub fn shape_of(&self, source: Source) -> Shape {
        match source {
            Source::Image => self.input_shape(),
            Source::Layer(i) => self.shapes[i],
        }
    }

    pub fn node(&self, layer: usize) -> &Node {
        &self.architecture.layers[layer]
    }

    pub fn len(&self) -> usize {
        self.architecture.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.architecture.layers.is_empty()
    }

    /// Per layer, the layers that read its output, in order.
    pub fn readers(&self) -> Vec<Vec<usize>> {
        let mut readers = vec![Vec::new(); self.len()];
        for (layer, reads) in self.reads.iter().enumerate() {
            for source in reads {
                if let Source::Layer(i) = source
                    && !readers[*i].contains(&layer)
                {
                    readers[*i].push(layer);
                }
            }
        }
        readers
    }
}

impl Architecture {
    /// Checks names, edges and shapes; every error names the layer, what does not fit, and the fix.
    pub fn resolve(&self) -> Result<Graph, GraphError> {
        check::resolve(self)
    }

    pub fn input(&self) -> InputShape {
        self.input
    }

    /// The width of the last layer's output: the class scores.
    pub fn classes(&self) -> usize {
        self.resolve().ok().and_then(|g| g.shapes.last().map(Shape::units)).unwrap_or(0)
    }
}
