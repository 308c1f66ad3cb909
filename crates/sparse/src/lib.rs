//! coppice's sparse inference engine: loads a weight-pruned network exported with
//! `coppice export RUN_DIR --format sparse` (or a quantized one's `--format compressed`, decoded
//! once into the same weights) and runs its forward pass, with the pruned weights skipped
//! instead of multiplied by zero. It needs neither burn nor autodiff.
//!
//! A network is a [`Model`]: a list of [`Node`]s in topological order, each a [`Layer`] reading
//! earlier values (value 0 is the image, value `i` the output of node `i - 1`), so chains
//! ([`Model::new`]) and residual networks ([`Model::graph`]) alike. Linear and convolution layers
//! hold [`Weights`], CSR or dense; pools, per-channel affine maps (an unfolded BatchNorm), adds
//! and ReLUs have none. A batch runs in tiles of 1, 8 or 32 images, each tile through every node
//! while its activations stay in cache, on the widest vector instructions the CPU has.
//!
//! ```no_run
//! let model = coppice_sparse::Model::load("model.sparse.safetensors")?;
//! let mut image = vec![0.5_f32; model.pixels()]; // one image, pixels scaled to [0, 1]
//! model.normalize(&mut image);
//! let logits = model.forward(&image, 1)?;
//! # Ok::<(), coppice_sparse::Error>(())
//! ```

mod compressed;
mod error;
mod format;
mod graph;
mod kernels;
mod layer;
mod load;
mod model;
mod weights;

pub use compressed::{COMPRESSED_FORMAT, COMPRESSED_VERSION, CodedLayer, LayerCoding, LayerSize};
pub use coppice_simd::Simd;
pub use error::Error;
pub use format::{FORMAT, VERSION};
pub use graph::Node;
pub use layer::Layer;
pub use model::{Model, Normalization};
pub use weights::{CSR_BELOW_DENSITY, Csr, Dense, Encoding, Weights};
