//! Training on burn-train with coppice's callbacks.
//!
//! burn-train 0.22 has no callback API; two of its hooks carry ours. `TrainStep::optimize` runs
//! synchronously after every optimizer step and may return a changed model, and an
//! `EarlyStoppingStrategy` runs synchronously at each epoch end after the metrics are flushed.

mod callback;
mod config;
mod error;
mod evaluate;
mod fit;
mod lr;
mod optim;
mod quiet;
mod shard;
pub mod stop;
mod trainee;

pub use callback::{Callback, Callbacks, EpochRecord};
pub use config::{LrScheduleKind, OptimizerKind, TrainConfig, TrainConfigError};
pub use error::TrainError;
pub use evaluate::{Confusion, Evaluation, evaluate, evaluate_confusion};
pub use fit::{DataParallel, OptimizerPlacement, Progress, TrainOutcome, TrainSetup, fit, fit_after, resumable_epochs};
pub use lr::lr_at;
pub use optim::{UpdateMasks, optimizer};
pub use stop::StopCause;
pub use trainee::{LossWatch, Trainee};
