//! The file: a safetensors container (so any safetensors reader can list and load its arrays)
//! whose metadata says `format = coppice-sparse`, the format's version, and the network's
//! layers as JSON. Each weighted layer `NAME` stores `NAME.bias` (f32) and either
//! `NAME.values` (f32), `NAME.columns` (u16, or u32 when a row has more than 65,536 inputs) and
//! `NAME.row_offsets` (u32, one more than rows) for CSR, or `NAME.weight` (f32) for dense.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::{Layer, Model, Normalization};
use crate::weights::{Csr, Dense, Encoding, Weights};

pub const FORMAT: &str = "coppice-sparse";
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    input: [usize; 3],
    normalization: Option<Normalization>,
    layers: Vec<LayerHeader>,
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
        padding: [usize; 2],
        relu: bool,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
}

impl Model {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let f32s = |name: String, values: &[f32]| {
            (name, Dtype::F32, vec![values.len()], values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        let mut layers = Vec::new();
        for layer in &self.layers {
            let (name, weights, bias) = match layer {
                Layer::MaxPool { kernel, stride } => {
                    layers.push(LayerHeader::MaxPool { kernel: *kernel, stride: *stride });
                    continue;
                }
                Layer::Linear { name, weights, bias, relu } => {
                    let shape = [weights.rows(), weights.cols()];
                    layers.push(LayerHeader::Linear {
                        name: name.clone(),
                        encoding: weights.encoding(),
                        shape,
                        relu: *relu,
                    });
                    (name, weights, bias)
                }
                Layer::Conv { name, weights, bias, kernel, padding, relu } => {
                    let shape = [weights.rows(), weights.cols() / (kernel[0] * kernel[1]), kernel[0], kernel[1]];
                    let encoding = weights.encoding();
                    layers.push(LayerHeader::Conv {
                        name: name.clone(),
                        encoding,
                        shape,
                        padding: *padding,
                        relu: *relu,
                    });
                    (name, weights, bias)
                }
            };
            tensors.push(f32s(format!("{name}.bias"), bias));
            match weights {
                Weights::Dense(m) => tensors.push(f32s(format!("{name}.weight"), &m.values)),
                Weights::Csr(m) => {
                    tensors.push(f32s(format!("{name}.values"), &m.values));
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
        let header = Header { input: self.input, normalization: self.normalization, layers };
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            ("model".to_string(), serde_json::to_string(&header).expect("plain data serializes")),
        ]);
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                (name.as_str(), TensorView::new(*dtype, shape.clone(), bytes).expect("sizes match by construction"))
            })
            .collect();
        safetensors::serialize(views, Some(metadata)).expect("names are unique (Model::new checks) and sizes match")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, Error> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| Error::NotSparseModel(format!("safetensors: {e}")))?;
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| Error::NotSparseModel(e.to_string()))?;
        let metadata = metadata.metadata().clone().unwrap_or_default();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::NotSparseModel(format!(
                "a safetensors file whose metadata lacks format = {FORMAT} (a dense export is model.safetensors)"
            )));
        }
        let version = metadata.get("version").cloned().unwrap_or_default();
        if version != VERSION.to_string() {
            return Err(Error::Version { found: version, supported: VERSION });
        }
        let header: Header = serde_json::from_str(metadata.get("model").map_or("", String::as_str))
            .map_err(|e| Error::Corrupt { tensor: "metadata `model`".into(), problem: e.to_string() })?;
        let reader = Reader { file: &file };
        let layers = header.layers.into_iter().map(|l| reader.layer(l)).collect::<Result<Vec<_>, _>>()?;
        Model::new(header.input, header.normalization, layers)
    }

    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Model, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        Model::from_bytes(&bytes)
    }
}

struct Reader<'a> {
    file: &'a SafeTensors<'a>,
}

impl Reader<'_> {
    fn layer(&self, header: LayerHeader) -> Result<Layer, Error> {
        Ok(match header {
            LayerHeader::MaxPool { kernel, stride } => Layer::MaxPool { kernel, stride },
            LayerHeader::Linear { name, encoding, shape: [rows, cols], relu } => {
                let weights = self.weights(&name, encoding, rows, cols)?;
                Layer::Linear { bias: self.f32s(&format!("{name}.bias"), rows)?, weights, name, relu }
            }
            LayerHeader::Conv { name, encoding, shape: [rows, channels, kh, kw], padding, relu } => {
                let weights = self.weights(&name, encoding, rows, channels * kh * kw)?;
                let bias = self.f32s(&format!("{name}.bias"), rows)?;
                Layer::Conv { name, weights, bias, kernel: [kh, kw], padding, relu }
            }
        })
    }

    fn weights(&self, name: &str, encoding: Encoding, rows: usize, cols: usize) -> Result<Weights, Error> {
        if encoding == Encoding::Dense {
            let values = self.f32s(&format!("{name}.weight"), rows * cols)?;
            return Ok(Weights::Dense(Dense { rows, cols, values }));
        }
        // The arrays' sizes are checked here; what they hold, by `Model::new` (`Weights::check`).
        let row_offsets = self.u32s(&format!("{name}.row_offsets"), Some(rows + 1))?;
        let entries = row_offsets[rows] as usize;
        let values = self.f32s(&format!("{name}.values"), entries)?;
        let columns = self.u32s(&format!("{name}.columns"), Some(entries))?;
        Ok(Weights::Csr(Csr { rows, cols, row_offsets, columns, values }))
    }

    fn tensor(&self, name: &str, dtypes: &[Dtype], len: Option<usize>) -> Result<TensorView<'_>, Error> {
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

    fn f32s(&self, name: &str, len: usize) -> Result<Vec<f32>, Error> {
        let view = self.tensor(name, &[Dtype::F32], Some(len))?;
        let values: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
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
