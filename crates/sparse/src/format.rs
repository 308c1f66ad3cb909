//! The file: a safetensors container (so any safetensors reader can list and load its arrays)
//! whose metadata says `format = coppice-sparse`, the format's `version` (2, or 3 when the
//! normalization has one value per channel; version 1 files, chains without strides or padded
//! pools, still load), the network as JSON under `model`, and optionally `classes`, a JSON list
//! of the outputs' names.
//!
//! Each weighted layer `NAME` stores `NAME.bias` (f32; a reader also takes f16) and either `NAME.values` (f32),
//! `NAME.columns` (u16, or u32 when a row has more than 65,536 inputs) and `NAME.row_offsets`
//! (u32, one more than rows) for CSR, or `NAME.weight` (f32, row-major) for dense. An affine
//! layer stores `NAME.scale` and `NAME.shift` (f32, one per channel).
//!
//! The `model` JSON holds `input` (`[channels, height, width]`), `normalization` (`{"mean",
//! "std"}`, each a number or (v3) a list of one per channel, or null) and `layers`, the nodes in order. Each is an object with an `op`:
//!
//! | `op` | fields |
//! |---|---|
//! | `linear` | `name`, `encoding` (`csr` or `dense`), `shape` `[outputs, inputs]`, `relu` |
//! | `conv` | `name`, `encoding`, `shape` `[filters, channels, kh, kw]`, `stride` (v2; v1 is 1), `padding`, `relu` |
//! | `max_pool`, `avg_pool` | `kernel`, `stride`, `padding` (v2; absent is 0) |
//! | `global_avg_pool`, `relu` | none |
//! | `affine` | `name`, `channels`, `relu` |
//! | `add` | `relu` |
//!
//! Every two-sided field is `[height, width]`. A node may also have `from` (v2): the values it
//! reads, where value 0 is the image and value `k` the output of node `k - 1`; absent, it reads
//! the value just before its own. The model's output is the last node's. A residual block:
//!
//! ```json
//! {"input": [3, 32, 32], "normalization": null, "layers": [
//!   {"op": "conv", "name": "conv1", "encoding": "csr", "shape": [16, 3, 3, 3],
//!    "stride": [2, 2], "padding": [1, 1], "relu": true},
//!   {"op": "conv", "name": "conv2", "encoding": "csr", "shape": [16, 16, 3, 3],
//!    "stride": [1, 1], "padding": [1, 1], "relu": false},
//!   {"op": "conv", "name": "shortcut", "encoding": "dense", "shape": [16, 3, 1, 1],
//!    "stride": [2, 2], "padding": [0, 0], "relu": false, "from": [0]},
//!   {"op": "add", "relu": true, "from": [2, 3]},
//!   {"op": "global_avg_pool"},
//!   {"op": "linear", "name": "fc", "encoding": "dense", "shape": [10, 16], "relu": false}
//! ]}
//! ```

use std::collections::HashMap;

use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::graph::Node;
use crate::layer::Layer;
use crate::model::{Model, Normalization};
use crate::weights::{Csr, Dense, Encoding, Weights};

pub const FORMAT: &str = "coppice-sparse";
pub const VERSION: u32 = 3;

/// `L` is a node as written ([`NodeHeader`]) or as read: a JSON object, so that `from` can be
/// taken out before the rest is read strictly (serde's `flatten` would let unknown fields pass).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header<L> {
    input: [usize; 3],
    normalization: Option<Normalization>,
    layers: Vec<L>,
}

#[derive(Serialize)]
struct NodeHeader<'a> {
    #[serde(flatten)]
    layer: LayerHeader,
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    from: &'a [usize],
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum LayerHeader {
    /// `shape` is `[outputs, inputs]`.
    Linear {
        name: String,
        encoding: Encoding,
        shape: [usize; 2],
        relu: bool,
    },
    /// `shape` is `[filters, channels, kernel height, kernel width]`.
    Conv {
        name: String,
        encoding: Encoding,
        shape: [usize; 4],
        #[serde(default = "unit_stride")]
        stride: [usize; 2],
        padding: [usize; 2],
        relu: bool,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        #[serde(default)]
        padding: [usize; 2],
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        #[serde(default)]
        padding: [usize; 2],
    },
    GlobalAvgPool {},
    Affine {
        name: String,
        channels: usize,
        relu: bool,
    },
    Add {
        relu: bool,
    },
    Relu {},
}

fn unit_stride() -> [usize; 2] {
    [1, 1]
}

/// Writes a layer's weight matrix and bias as arrays (given the layer's name).
pub(crate) type WeightsWriter<'a> = &'a mut dyn FnMut(&str, &Weights, &[f32], &mut Vec<Array>) -> Result<(), Error>;

/// One array of the file: its name, type, shape and little-endian bytes.
pub(crate) type Array = (String, Dtype, Vec<usize>, Vec<u8>);

pub(crate) fn f32_array(name: String, values: &[f32]) -> Array {
    (name, Dtype::F32, vec![values.len()], values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// The values as f16 where every one of them is a half-precision number (as quantization
/// leaves codebooks and biases), otherwise as f32: the array reads back exactly either way.
pub(crate) fn compact_array(name: String, values: &[f32]) -> Array {
    let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
    if halves.iter().zip(values).all(|(h, v)| h.to_f32().to_bits() == v.to_bits()) {
        (name, Dtype::F16, vec![values.len()], halves.iter().flat_map(|h| h.to_le_bytes()).collect())
    } else {
        f32_array(name, values)
    }
}

impl Model {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Version 2 readers read every file without per-channel values.
        let version = if self.normalization.as_ref().is_some_and(Normalization::per_channel) { VERSION } else { 2 };
        self.serialize(FORMAT, version, Vec::new(), &mut |name, weights, bias, arrays| {
            arrays.push(f32_array(format!("{name}.bias"), bias));
            sparse_arrays(name, weights, arrays);
            Ok(())
        })
        .expect("writing the sparse arrays cannot fail")
    }

    /// The file of `format`: the network's header, and each weighted layer's bias with the
    /// arrays `weights` writes for its matrix; `metadata` adds entries.
    pub(crate) fn serialize(
        &self,
        format: &str,
        version: u32,
        metadata: Vec<(String, String)>,
        weights_arrays: WeightsWriter,
    ) -> Result<Vec<u8>, Error> {
        let mut tensors: Vec<Array> = Vec::new();
        let mut layers = Vec::new();
        for node in &self.nodes {
            let (header, weighted) = match &node.layer {
                Layer::Linear { name, weights, bias, relu } => {
                    let shape = [weights.rows(), weights.cols()];
                    let encoding = weights.encoding();
                    (
                        LayerHeader::Linear { name: name.clone(), encoding, shape, relu: *relu },
                        Some((name, weights, bias)),
                    )
                }
                Layer::Conv { name, weights, bias, kernel, stride, padding, relu } => {
                    let shape = [weights.rows(), weights.cols() / (kernel[0] * kernel[1]), kernel[0], kernel[1]];
                    let encoding = weights.encoding();
                    let (name_, stride, padding, relu) = (name.clone(), *stride, *padding, *relu);
                    let header = LayerHeader::Conv { name: name_, encoding, shape, stride, padding, relu };
                    (header, Some((name, weights, bias)))
                }
                Layer::MaxPool { kernel, stride, padding } => {
                    (LayerHeader::MaxPool { kernel: *kernel, stride: *stride, padding: *padding }, None)
                }
                Layer::AvgPool { kernel, stride, padding } => {
                    (LayerHeader::AvgPool { kernel: *kernel, stride: *stride, padding: *padding }, None)
                }
                Layer::GlobalAvgPool => (LayerHeader::GlobalAvgPool {}, None),
                Layer::Affine { name, scale, shift, relu } => {
                    tensors.push(f32_array(format!("{name}.scale"), scale));
                    tensors.push(f32_array(format!("{name}.shift"), shift));
                    (LayerHeader::Affine { name: name.clone(), channels: scale.len(), relu: *relu }, None)
                }
                Layer::Add { relu } => (LayerHeader::Add { relu: *relu }, None),
                Layer::Relu => (LayerHeader::Relu {}, None),
            };
            layers.push(NodeHeader { layer: header, from: &node.from });
            let Some((name, weights, bias)) = weighted else { continue };
            weights_arrays(name, weights, bias, &mut tensors)?;
        }
        let header = Header { input: self.input, normalization: self.normalization.clone(), layers };
        let mut entries = HashMap::from([
            ("format".to_string(), format.to_string()),
            ("version".to_string(), version.to_string()),
            ("model".to_string(), serde_json::to_string(&header).expect("plain data serializes")),
        ]);
        if !self.classes.is_empty() {
            entries.insert("classes".into(), serde_json::to_string(&self.classes).expect("strings serialize"));
        }
        entries.extend(metadata);
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                (name.as_str(), TensorView::new(*dtype, shape.clone(), bytes).expect("sizes match by construction"))
            })
            .collect();
        Ok(safetensors::serialize(views, Some(entries)).expect("names are unique (Model::new checks) and sizes match"))
    }
}

/// The sparse file's network, of `version` as its metadata says.
pub(crate) fn read_sparse(
    file: &SafeTensors,
    metadata: &HashMap<String, String>,
    version: &str,
) -> Result<Model, Error> {
    if !(1..=VERSION).any(|v| v.to_string() == version) {
        return Err(Error::Version { found: version.to_string(), supported: VERSION });
    }
    read_model(file, metadata, None)
}

/// Reads a layer's weight matrix from arrays of another file's own (the compressed file's),
/// given the layer's name, encoding, rows and columns.
pub(crate) type WeightsReader<'a> = &'a dyn Fn(&Reader, &str, Encoding, usize, usize) -> Result<Weights, Error>;

/// The network a file's `model` header describes, its weights read as the sparse file stores
/// them, or by `weights` where given.
pub(crate) fn read_model(
    file: &SafeTensors,
    metadata: &HashMap<String, String>,
    weights: Option<WeightsReader>,
) -> Result<Model, Error> {
    let corrupt = |problem: String| Error::Corrupt { tensor: "metadata `model`".into(), problem };
    let header: Header<Map<String, Value>> =
        serde_json::from_str(metadata.get("model").map_or("", String::as_str)).map_err(|e| corrupt(e.to_string()))?;
    let reader = Reader { file, weights };
    let mut nodes = Vec::with_capacity(header.layers.len());
    for (i, mut fields) in header.layers.into_iter().enumerate() {
        let from = match fields.remove("from") {
            Some(from) => Vec::<usize>::deserialize(from).map_err(|e| corrupt(format!("layer {i}: from: {e}")))?,
            None => Vec::new(),
        };
        let layer = LayerHeader::deserialize(Value::Object(fields)).map_err(|e| corrupt(format!("layer {i}: {e}")))?;
        nodes.push(Node { layer: reader.layer(layer)?, from });
    }
    let classes = match metadata.get("classes") {
        Some(json) => serde_json::from_str(json).map_err(|e| Error::Corrupt {
            tensor: "metadata `classes`".into(),
            problem: format!("not a list of names: {e}"),
        })?,
        None => Vec::new(),
    };
    Model::graph(header.input, header.normalization, nodes)?.with_classes(classes)
}

/// A layer's weight arrays in the sparse file.
fn sparse_arrays(name: &str, weights: &Weights, tensors: &mut Vec<Array>) {
    match weights {
        Weights::Dense(m) => tensors.push(f32_array(format!("{name}.weight"), &m.values)),
        Weights::Csr(m) => {
            tensors.push(f32_array(format!("{name}.values"), &m.values));
            let columns = if m.cols <= 1 << 16 {
                (Dtype::U16, m.columns.iter().flat_map(|&c| (c as u16).to_le_bytes()).collect())
            } else {
                (Dtype::U32, m.columns.iter().flat_map(|c| c.to_le_bytes()).collect())
            };
            tensors.push((format!("{name}.columns"), columns.0, vec![m.columns.len()], columns.1));
            let offsets = m.row_offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
            tensors.push((format!("{name}.row_offsets"), Dtype::U32, vec![m.row_offsets.len()], offsets));
        }
    }
}

pub(crate) struct Reader<'a> {
    file: &'a SafeTensors<'a>,
    weights: Option<WeightsReader<'a>>,
}

impl Reader<'_> {
    fn layer(&self, header: LayerHeader) -> Result<Layer, Error> {
        Ok(match header {
            LayerHeader::MaxPool { kernel, stride, padding } => Layer::MaxPool { kernel, stride, padding },
            LayerHeader::AvgPool { kernel, stride, padding } => Layer::AvgPool { kernel, stride, padding },
            LayerHeader::GlobalAvgPool {} => Layer::GlobalAvgPool,
            LayerHeader::Add { relu } => Layer::Add { relu },
            LayerHeader::Relu {} => Layer::Relu,
            LayerHeader::Linear { name, encoding, shape: [rows, cols], relu } => {
                let weights = self.weights(&name, encoding, rows, cols)?;
                Layer::Linear { bias: self.f32s(&format!("{name}.bias"), rows)?, weights, name, relu }
            }
            LayerHeader::Conv { name, encoding, shape: [rows, channels, kh, kw], stride, padding, relu } => {
                let cols = channels.checked_mul(kh).and_then(|n| n.checked_mul(kw)).ok_or_else(|| Error::Corrupt {
                    tensor: name.clone(),
                    problem: format!("shape [{rows}, {channels}, {kh}, {kw}] overflows"),
                })?;
                let weights = self.weights(&name, encoding, rows, cols)?;
                let bias = self.f32s(&format!("{name}.bias"), rows)?;
                Layer::Conv { name, weights, bias, kernel: [kh, kw], stride, padding, relu }
            }
            LayerHeader::Affine { name, channels, relu } => {
                let scale = self.f32s(&format!("{name}.scale"), channels)?;
                Layer::Affine { shift: self.f32s(&format!("{name}.shift"), channels)?, scale, name, relu }
            }
        })
    }

    fn weights(&self, name: &str, encoding: Encoding, rows: usize, cols: usize) -> Result<Weights, Error> {
        if let Some(read) = self.weights {
            return read(self, name, encoding, rows, cols);
        }
        let overflow = || Error::Corrupt { tensor: name.into(), problem: format!("{rows} x {cols} weights overflow") };
        if encoding == Encoding::Dense {
            let values = self.f32s(&format!("{name}.weight"), rows.checked_mul(cols).ok_or_else(overflow)?)?;
            return Ok(Weights::Dense(Dense { rows, cols, values }));
        }
        // The arrays' sizes are checked here; what they hold, by `Model::graph` (`Weights::check`).
        let row_offsets = self.u32s(&format!("{name}.row_offsets"), Some(rows.checked_add(1).ok_or_else(overflow)?))?;
        let entries = row_offsets[rows] as usize;
        let values = self.f32s(&format!("{name}.values"), entries)?;
        let columns = self.u32s(&format!("{name}.columns"), Some(entries))?;
        Ok(Weights::Csr(Csr { rows, cols, row_offsets, columns, values }))
    }

    pub(crate) fn tensor(&self, name: &str, dtypes: &[Dtype], len: Option<usize>) -> Result<TensorView<'_>, Error> {
        let corrupt = |problem: String| Error::Corrupt { tensor: name.to_string(), problem };
        let view = self.file.tensor(name).map_err(|_| corrupt("is missing".into()))?;
        if !dtypes.contains(&view.dtype()) {
            return Err(corrupt(format!("is {:?}, expected {dtypes:?}", view.dtype())));
        }
        let found: usize = view.shape().iter().product();
        if let Some(len) = len.filter(|&len| len != found) {
            return Err(corrupt(format!("has {found} values, the layer needs {len}")));
        }
        Ok(view)
    }

    /// A float array, stored as f32 or (the compressed file's codebooks and biases) f16.
    pub(crate) fn f32s(&self, name: &str, len: usize) -> Result<Vec<f32>, Error> {
        let view = self.tensor(name, &[Dtype::F32, Dtype::F16], Some(len))?;
        let values: Vec<f32> = match view.dtype() {
            Dtype::F16 => view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Corrupt { tensor: name.to_string(), problem: "holds NaN or infinity".into() });
        }
        Ok(values)
    }

    fn u32s(&self, name: &str, len: Option<usize>) -> Result<Vec<u32>, Error> {
        let view = self.tensor(name, &[Dtype::U16, Dtype::U32], len)?;
        Ok(match view.dtype() {
            Dtype::U16 => view.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect(),
            _ => view.data().chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
        })
    }
}
