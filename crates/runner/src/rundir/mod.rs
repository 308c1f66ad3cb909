//! A run directory and what coppice keeps in it: the directory itself (`dir.rs`: created,
//! claimed, opened to read, written atomically), its lock, the sums its files are checked
//! against (`integrity.rs`), the memory check before a run starts (`resources.rs`), the trained
//! model (`saved.rs`), the checkpoints a resume reads, the CSV tables, and `summary.json` with
//! `report.md`.

pub(crate) mod checkpoint;
pub(crate) mod dir;
pub(crate) mod integrity;
pub(crate) mod lock;
pub(crate) mod resources;
pub(crate) mod saved;
pub(crate) mod summary;
pub(crate) mod tables;
