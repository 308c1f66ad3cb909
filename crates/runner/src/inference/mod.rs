//! Inference outside training: timing networks in turns (`latency.rs`), and a burn network
//! converted for the sparse engine with its size and speed figures (`sparse.rs`). Nothing here
//! reads or writes a run directory; the commands and `summary.json` build on it.

pub(crate) mod latency;
pub(crate) mod sparse;
