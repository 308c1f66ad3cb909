//! Pruning: masks, criteria, allocation, schedules, strategies and prune-retrain rounds.
//!
//! Nothing here names a concrete model; strategies read the structure a model describes
//! through `coppice_models::Prunable` and address tensors by parameter path.

mod allocation;
mod criteria;
mod layerwise;
mod mask;
mod neuron;
mod report;
mod rounds;
mod schedule;
mod sensitivity;
mod surgery;
mod weight;

pub use allocation::{Allocation, LayerScores, allocate};
pub use criteria::WeightCriterion;
pub use layerwise::{Granularity, LayerAttempt, LayerWise, LayerwiseDone, layer_order, run_layerwise};
pub use mask::{MaskSet, values_of};
pub use neuron::{NeuronPruner, NeuronPruning, UnitCriterion};
pub use report::{LayerSparsity, SparsityReport, rounds_csv, sparsity_report};
pub use rounds::{Completed, RoundRecord, Rounds, RoundsOutcome, Strategy, run_rounds};
pub use schedule::{Schedule, agp_sparsity, iterative_target, per_round_fraction};
pub use sensitivity::{DEFAULT_LEVELS, SensitivityPoint, sensitivity, sensitivity_csv, tolerated_sparsity};
pub use surgery::{UnitCut, cut_units};
pub use weight::{WeightPruner, WeightPruning};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{0}")]
    Train(#[from] coppice_train::TrainError),
    #[error("{0}")]
    Invalid(String),
}
