//! Pruning: one engine for every method. A method is a [`Strategy`] (`strategy/`), built from
//! its config ([`PruneConfig::init`]) out of criteria (`criteria.rs`), an allocation
//! (`allocation.rs`) and a schedule (`schedule.rs`); [`run_rounds`] (`rounds.rs`) drives every
//! method the same way. Masks, physical removal of units, sparsity reports and sensitivity
//! analysis are the parts the methods share.
//!
//! Nothing here names a concrete model; strategies read the structure a model describes
//! through `coppice_models::Prunable` and address tensors by parameter path.

mod allocation;
mod config;
mod criteria;
mod mask;
mod quantize;
mod records;
mod report;
mod rounds;
mod schedule;
mod scratch;
mod sensitivity;
mod strategy;
mod surgery;
mod targets;

pub use allocation::{Allocation, LayerScores, WeightLayout, allocate};
pub use config::{
    AllocationKind, Problem, PruneConfig, PruneContext, Pruning, RewindKind, ScheduleKind, StrategyKind, TargetSource,
};
pub use criteria::Criterion;
pub use mask::{MaskSet, values_of};
pub use quantize::{LayerCodebook, QuantizeConfig, QuantizeMethod, Quantized, WeightSharing, kmeans_codebook, nearest};
pub use records::{History, LayerAttempt, RoundRecord};
pub use report::{LayerSparsity, SparsityReport, sparsity_report};
pub use rounds::{Completed, Rewind, RoundObserver, Rounds, RoundsOutcome, run_rounds};
pub use schedule::{Schedule, agp_sparsity, iterative_target, per_round_fraction};
pub use scratch::{Scratch, ScratchBudget, ScratchRecord};
pub use sensitivity::{DEFAULT_LEVELS, SensitivityPoint, check_levels, sensitivity};
pub use strategy::layerwise::{Granularity, LayerWise, LayerWisePruner, layer_order};
pub use strategy::neuron::{NeuronPruner, NeuronPruning};
pub use strategy::weight::{WeightPruner, WeightPruning};
pub use strategy::{Retraining, Strategy};
pub use surgery::{UnitCut, cut_units};
pub use targets::{sensitivity_targets, tolerated_sparsity};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{0}")]
    Train(#[from] coppice_train::TrainError),
    #[error("{0}")]
    Invalid(String),
    /// What a [`RoundObserver`] could not do with a record (write it out, say).
    #[error(transparent)]
    Observer(Box<dyn std::error::Error + Send + Sync>),
}
