//! coppice's sparse inference engine: loads a weight-pruned network exported with
//! `coppice export RUN_DIR --format sparse` and runs its forward pass, with the pruned weights
//! skipped instead of multiplied by zero. It needs neither burn nor autodiff.
//!
//! ```no_run
//! let model = coppice_sparse::Model::load("model.sparse.safetensors")?;
//! let mut image = vec![0.5_f32; model.pixels()]; // one image, pixels scaled to [0, 1]
//! model.normalize(&mut image);
//! let logits = model.forward(&image, 1)?;
//! # Ok::<(), coppice_sparse::Error>(())
//! ```

mod error;
mod format;
mod kernels;
mod model;
mod weights;

pub use error::Error;
pub use format::{FORMAT, VERSION};
pub use model::{Layer, Model, Normalization};
pub use weights::{CSR_BELOW_DENSITY, Csr, Dense, Encoding, Weights};
