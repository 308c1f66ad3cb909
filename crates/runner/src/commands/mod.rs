//! One module per command of the command line, which `main.rs` dispatches to. A command builds
//! on the shared modules (`experiment`, `rundir`, `inference`, ...), never on another command.

pub(crate) mod bench;
pub(crate) mod compare;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod finetune;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod sensitivity;
pub(crate) mod sweep;
pub(crate) mod tradeoff;
