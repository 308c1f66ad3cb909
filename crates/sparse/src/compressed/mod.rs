//! The compressed file, Deep Compression's (Han, Mao & Dally 2016): the sparse file's container
//! and header (`format = coppice-compressed`, `version` 2; version 1 stored the bias and codebook
//! as f32 only, and still loads), with each weighted layer's matrix
//! as a codebook and Huffman-coded index and gap streams instead of f32 CSR (`layer.rs`).
//! The metadata entry `coding` is a JSON object giving, for each weighted layer, its
//! [`LayerCoding`]. The layer `NAME` stores:
//!
//! | array | type | holds |
//! |---|---|---|
//! | `NAME.bias` | f16 or f32 | the bias: f16 where every value is a half-precision number |
//! | `NAME.codebook` | f16 or f32 | the shared values; index `i >= 1` is `codebook[i - 1]`, index 0 a zero |
//! | `NAME.index_lengths` | u8 | the Huffman code length of each index (0: unused), two to a byte where all are under 16 |
//! | `NAME.indices` | u8 | the coded indices, most significant bit first |
//! | `NAME.gap_lengths` | u8 | the code length of each gap, `2^gap_bits` of them, stored alike |
//! | `NAME.gaps` | u8 | the coded gaps |
//!
//! Reading decodes every layer once into the weights the sparse engine runs (CSR or dense, as
//! the header's `encoding` says), so a compressed model runs as fast as the sparse file's.

mod huffman;
mod layer;

use std::collections::{BTreeMap, HashMap};

use safetensors::{Dtype, SafeTensors};

pub use layer::{CodedLayer, LayerCoding, LayerSize};

use crate::Error;
use crate::format::{Array, Reader, compact_array, read_model};
use crate::model::Model;
use crate::weights::{Encoding, Weights};

pub const COMPRESSED_FORMAT: &str = "coppice-compressed";
pub const COMPRESSED_VERSION: u32 = 2;

/// Each weighted layer's coding, by name: the metadata entry `coding`.
type Coding = BTreeMap<String, LayerCoding>;

impl Model {
    /// The compressed file of this model, and what each stage leaves of each weighted layer.
    /// Every layer must hold fewer than 65,536 distinct weights: a quantized network's.
    pub fn to_compressed_bytes(&self) -> Result<(Vec<u8>, Vec<LayerSize>), Error> {
        let mut coding = Coding::new();
        let mut sizes = Vec::new();
        // The header is written after the layers, so the coding it holds is gathered first.
        for layer in self.layers() {
            let (crate::Layer::Linear { name, weights, .. } | crate::Layer::Conv { name, weights, .. }) = layer else {
                continue;
            };
            let (coded, size) = CodedLayer::encode(name, weights)
                .map_err(|problem| Error::NotQuantized { layer: name.clone(), problem })?;
            coding.insert(name.clone(), coded.coding);
            sizes.push(size);
        }
        let metadata = vec![("coding".to_string(), serde_json::to_string(&coding).expect("plain data serializes"))];
        let bytes =
            self.serialize(COMPRESSED_FORMAT, COMPRESSED_VERSION, metadata, &mut |name, weights, bias, arrays| {
                let (coded, _) = CodedLayer::encode(name, weights)
                    .map_err(|problem| Error::NotQuantized { layer: name.to_string(), problem })?;
                arrays.push(compact_array(format!("{name}.bias"), bias));
                arrays.push(compact_array(format!("{name}.codebook"), &coded.codebook));
                let u8s = |suffix: &str, bytes: Vec<u8>| -> Array {
                    (format!("{name}.{suffix}"), Dtype::U8, vec![bytes.len()], bytes)
                };
                arrays.push(u8s("index_lengths", coded.index_lengths));
                arrays.push(u8s("indices", coded.indices));
                arrays.push(u8s("gap_lengths", coded.gap_lengths));
                arrays.push(u8s("gaps", coded.gaps));
                Ok(())
            })?;
        Ok((bytes, sizes))
    }
}

/// The compressed file's network, of `version` as its metadata says.
pub(crate) fn read(file: &SafeTensors, metadata: &HashMap<String, String>, version: &str) -> Result<Model, Error> {
    if !(1..=COMPRESSED_VERSION).any(|v| v.to_string() == version) {
        return Err(Error::Version { found: version.to_string(), supported: COMPRESSED_VERSION });
    }
    let text = metadata
        .get("coding")
        .ok_or_else(|| Error::Corrupt { tensor: "metadata `coding`".into(), problem: "is missing".into() })?;
    let coding: Coding = serde_json::from_str(text)
        .map_err(|e| Error::Corrupt { tensor: "metadata `coding`".into(), problem: e.to_string() })?;
    read_model(
        file,
        metadata,
        Some(&|reader, name, encoding, rows, cols| read_coded(reader, &coding, name, encoding, rows, cols)),
    )
}

/// The weights of the layer `name` from its coded arrays.
fn read_coded(
    reader: &Reader,
    coding: &Coding,
    name: &str,
    encoding: Encoding,
    rows: usize,
    cols: usize,
) -> Result<Weights, Error> {
    let corrupt = |array: &str, problem: String| Error::Corrupt { tensor: format!("{name}.{array}"), problem };
    let layer_coding = *coding.get(name).ok_or_else(|| Error::Corrupt {
        tensor: "metadata `coding`".to_string(),
        problem: format!("has no entry for layer {name}"),
    })?;
    let u8s = |suffix: &str| -> Result<Vec<u8>, Error> {
        Ok(reader.tensor(&format!("{name}.{suffix}"), &[Dtype::U8], None)?.data().to_vec())
    };
    let codebook_len =
        reader.tensor(&format!("{name}.codebook"), &[Dtype::F32, Dtype::F16], None)?.shape().iter().product();
    let coded = CodedLayer {
        coding: layer_coding,
        codebook: reader.f32s(&format!("{name}.codebook"), codebook_len)?,
        index_lengths: u8s("index_lengths")?,
        indices: u8s("indices")?,
        gap_lengths: u8s("gap_lengths")?,
        gaps: u8s("gaps")?,
    };
    coded.decode(rows, cols, encoding).map_err(|(array, problem)| match array {
        "coding" => Error::Corrupt { tensor: format!("metadata `coding` of {name}"), problem },
        array => corrupt(array, problem),
    })
}
