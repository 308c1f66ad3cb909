/// Why a sparse model could not be loaded or run. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read ({source}); fix: check the path, e.g. RUN_DIR/export/model.sparse.safetensors")]
    Read { path: String, source: std::io::Error },
    #[error(
        "not a coppice sparse model: {0}; fix: write one with `coppice export RUN_DIR --format sparse` or `--format compressed` (a truncated copy needs to be copied again)"
    )]
    NotSparseModel(String),
    #[error(
        "sparse model format version {found}, this engine reads versions 1 to {supported}; fix: export the run again with this coppice"
    )]
    Version { found: String, supported: u32 },
    #[error(
        "{tensor}: {problem}; fix: export the run again with `coppice export RUN_DIR --format sparse` (or `--format compressed`)"
    )]
    Corrupt { tensor: String, problem: String },
    #[error(
        "{layer}: {problem}; fix: quantize the run with a [quantize] section (method = \"kmeans\") and run it again, or export it with `--format sparse`"
    )]
    NotQuantized { layer: String, problem: String },
    #[error("input: {0}")]
    Input(String),
    /// A vector instruction path (`COPPICE_SIMD`) that is not one, or that this CPU lacks.
    #[error("{0}")]
    Simd(String),
}
