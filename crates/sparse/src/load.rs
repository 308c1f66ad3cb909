//! Loading a model from either file the engine reads: the sparse one (`format.rs`) or the
//! compressed one (`compressed/`), told apart by the metadata's `format`.

use safetensors::SafeTensors;

use crate::Error;
use crate::compressed::{self, COMPRESSED_FORMAT};
use crate::format::{FORMAT, read_sparse};
use crate::model::Model;

impl Model {
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, Error> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| Error::NotSparseModel(format!("safetensors: {e}")))?;
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| Error::NotSparseModel(e.to_string()))?;
        let metadata = metadata.metadata().clone().unwrap_or_default();
        let version = metadata.get("version").cloned().unwrap_or_default();
        match metadata.get("format").map(String::as_str) {
            Some(FORMAT) => read_sparse(&file, &metadata, &version),
            Some(COMPRESSED_FORMAT) => compressed::read(&file, &metadata, &version),
            _ => Err(Error::NotSparseModel(format!(
                "a safetensors file whose metadata lacks format = {FORMAT} or {COMPRESSED_FORMAT} (a dense export is model.safetensors)"
            ))),
        }
    }

    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Model, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        Model::from_bytes(&bytes)
    }
}
